//! How an object's SQL database joins its storage: opened at the first statement from the
//! durable pages overlaid with those in flight, its transaction ended with the event's, its
//! savepoints with the storage transactions, its size counted in the object's quota, and
//! `delete-all` deleting it with the keys.

use super::sql::{ExecBudget, SqlDatabase, SqlError, SqlErrorCode, SqlResult, SqlRows};
use super::{ObjectStore, StoreError, StoreResult};
use crate::backend::{SQL_PAGE_SIZE, SqlWrites};
use crate::id::ObjectKey;
use crate::services::memory::{Held, MemoryBudget};
use bytes::Bytes;
use rusqlite::types::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The object's database as its instance holds it.
#[derive(Default)]
pub enum SqlSlot {
    /// Not opened yet (or closed by `delete-all`): opened by the next statement.
    #[default]
    Closed,
    Open(Box<OpenSql>),
    /// The class has no SQL (declared with `new_classes`).
    Disabled,
}

pub struct OpenSql {
    /// Behind a mutex only so that the object's store is `Sync` (its reads take `&self`
    /// across awaits); reached through `&mut` (`db()`), so never locked.
    db: std::sync::Mutex<SqlDatabase>,
    /// The database's memory, held against the host's budget (`max_memory`) while open.
    held: Option<Held>,
    /// Opened over a `delete-all` of this event (an empty database), made at this
    /// transaction depth (0: the event itself): when it is undone, so is that emptiness.
    opened_under_clear: Option<usize>,
}

impl OpenSql {
    fn db(&mut self) -> &mut SqlDatabase {
        self.db.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds what the database takes in memory now against the budget. Held even past
    /// the limit: the pages are there already; the budget's pressure then evicts idle
    /// objects and refuses new work (503) until there is room.
    fn account(&mut self, budget: &Option<Arc<MemoryBudget>>) {
        if let Some(budget) = budget {
            let bytes = self.db().memory_bytes();
            self.held = Some(Held::forced(budget.clone(), bytes));
        }
    }
}

impl SqlSlot {
    pub fn in_event(&self) -> bool {
        matches!(self, SqlSlot::Open(_))
    }

    /// Commits the event's SQL transaction; its pages, if it wrote any. On a failure the
    /// database is closed (the next statement reopens it from storage) and the event must
    /// commit nothing.
    pub(super) fn finish_event(&mut self, object: &ObjectKey) -> Result<Option<SqlWrites>, ()> {
        let SqlSlot::Open(open) = self else {
            return Ok(None);
        };
        open.opened_under_clear = None;
        match open.db().finish_event() {
            Ok(w) => Ok(w),
            Err(e) => {
                tracing::error!(object = ?object, error = %e.message, "the SQL transaction could not commit: the event's writes are dropped");
                *self = SqlSlot::Closed;
                Err(())
            }
        }
    }

    pub(super) fn discard_event(&mut self) {
        if let SqlSlot::Open(open) = self {
            if open.opened_under_clear.is_some() {
                *self = SqlSlot::Closed;
            } else {
                open.db().discard_event();
            }
        }
    }
}

/// The host's error for a guest whose store failed underneath SQL.
fn store_failed(e: StoreError) -> SqlError {
    let (code, message) = match e {
        StoreError::StorageFull(m) => (SqlErrorCode::StorageFull, m),
        StoreError::KeyTooLarge(m)
        | StoreError::ValueTooLarge(m)
        | StoreError::TooManyKeys(m)
        | StoreError::NoTransaction(m)
        | StoreError::InvalidArgument(m)
        | StoreError::Internal(m)
        | StoreError::Unavailable(m) => (SqlErrorCode::Internal, m),
    };
    SqlError::new(code, message)
}

impl ObjectStore {
    /// Counts open databases against the host's memory budget.
    pub fn set_memory_budget(&mut self, budget: Arc<MemoryBudget>) {
        self.memory = Some(budget);
    }

    /// Marks the class as having no SQL database.
    pub fn disable_sql(&mut self) {
        self.sql = SqlSlot::Disabled;
    }

    /// Whether this event (or an open transaction) deleted everything.
    fn cleared_in_event(&self) -> Option<usize> {
        if self.event.clear {
            return Some(0);
        }
        self.txns.iter().position(|t| t.clear).map(|i| i + 1)
    }

    async fn open_sql(&mut self) -> SqlResult<&mut OpenSql> {
        match &self.sql {
            SqlSlot::Open(_) => {}
            SqlSlot::Disabled => {
                return Err(SqlError::new(
                    SqlErrorCode::SqlDisabled,
                    "this class has no SQL database: it was declared with new_classes; declare \
                     it with new_sqlite_classes in the configuration's migrations to use SQL",
                ));
            }
            SqlSlot::Closed => {
                let cleared = self.cleared_in_event();
                let pages = match cleared {
                    Some(_) => Vec::new(),
                    None => self.stored_pages().await.map_err(store_failed)?,
                };
                let db = SqlDatabase::open(pages, &self.limits.sql)?;
                self.sql = SqlSlot::Open(Box::new(OpenSql {
                    db: std::sync::Mutex::new(db),
                    held: None,
                    opened_under_clear: cleared,
                }));
            }
        }
        match &mut self.sql {
            SqlSlot::Open(open) => Ok(open),
            _ => unreachable!("opened above"),
        }
    }

    /// The database's pages: durable ones overlaid with those in flight.
    async fn stored_pages(&self) -> StoreResult<Vec<Bytes>> {
        // In flight first: the committer drops pages from it only once the backend has them.
        let (cleared, inflight, count) = self.shared.sql_view();
        let mut pages: BTreeMap<u32, Bytes> = if cleared {
            BTreeMap::new()
        } else {
            self.storage
                .sql_pages(&self.shared.object)
                .await
                .map_err(|e| self.read_failed(e))?
                .into_iter()
                .collect()
        };
        pages.extend(inflight);
        if let Some(n) = count {
            pages.retain(|i, _| *i < n);
        }
        let mut dense = Vec::with_capacity(pages.len());
        for (n, (i, page)) in pages.into_iter().enumerate() {
            if i as usize != n || page.len() != SQL_PAGE_SIZE {
                return Err(StoreError::Internal(format!(
                    "the object's SQL database is corrupt: page {i} is missing or malformed"
                )));
            }
            dense.push(page);
        }
        Ok(dense)
    }

    /// The pages the database may grow to: its own limit, and what the object's quota
    /// leaves beside its keys and values.
    fn max_sql_pages(&self, pages_before: u32) -> u32 {
        let (committed, inflight) = {
            let inf = self.shared.lock();
            (inf.committed_bytes, inf.added_bytes)
        };
        let own = u64::from(pages_before) * SQL_PAGE_SIZE as u64;
        let others = (committed + inflight + self.pending_added_bytes()).saturating_sub(own);
        let room = self
            .limits
            .max_object_bytes
            .saturating_sub(others)
            .min(self.limits.sql.max_database_bytes);
        u32::try_from(room / SQL_PAGE_SIZE as u64).unwrap_or(u32::MAX)
    }

    /// Runs `query` (see `SqlDatabase::exec`), stopped at `deadline`, answering at most
    /// `max_result_bytes`.
    pub async fn sql_exec(
        &mut self,
        query: &str,
        params: &[Value],
        deadline: Option<Instant>,
        max_result_bytes: usize,
    ) -> SqlResult<SqlRows> {
        let depth = self.txns.len();
        let before = self.open_sql().await?.db().pages_before();
        let budget = ExecBudget {
            deadline,
            max_result_bytes,
            max_pages: self.max_sql_pages(before),
        };
        let SqlSlot::Open(open) = &mut self.sql else {
            unreachable!("opened above")
        };
        let result = open.db().exec(query, params, depth, &budget);
        open.account(&self.memory);
        if let Ok(rows) = &result {
            self.sql_statements += rows.statements;
        }
        result
    }

    /// Runs `query` for an operator: it may only read (a write is refused `not-authorized`).
    pub async fn sql_read(
        &mut self,
        query: &str,
        deadline: Option<Instant>,
        max_result_bytes: usize,
    ) -> SqlResult<SqlRows> {
        let max_pages = self.max_sql_pages(0);
        let open = self.open_sql().await?;
        let db = open.db();
        db.set_read_only(true)?;
        let budget = ExecBudget {
            deadline,
            max_result_bytes,
            max_pages,
        };
        let result = db.exec(query, &[], 0, &budget);
        db.set_read_only(false)?;
        result.map_err(|e| match e.code {
            SqlErrorCode::Internal if e.message.contains("readonly") => SqlError::new(
                SqlErrorCode::NotAuthorized,
                format!("{}: an operator's query may only read", e.message),
            ),
            _ => e,
        })
    }

    /// SQL statements run since the last call.
    pub fn take_sql_statements(&mut self) -> u64 {
        std::mem::take(&mut self.sql_statements)
    }

    /// The database's size in bytes.
    pub async fn sql_database_size(&mut self) -> SqlResult<u64> {
        Ok(self.open_sql().await?.db().database_size())
    }

    /// `delete-all` deletes the database too: it is closed, and the event's writes clear
    /// its pages with the keys. Inside a transaction that could be rolled back, a database
    /// already in use is refused (its statements so far could not be kept apart).
    pub(super) fn sql_delete_all(&mut self) -> StoreResult<()> {
        if let SqlSlot::Open(_) = self.sql {
            if !self.txns.is_empty() {
                return Err(StoreError::InvalidArgument(
                    "delete-all inside a transaction, after SQL statements in this event: call \
                     it outside the transaction"
                        .into(),
                ));
            }
            self.sql = SqlSlot::Closed;
        }
        Ok(())
    }

    /// A storage transaction ended (committed or rolled back): so does its savepoint.
    pub(super) fn sql_transaction_closed(&mut self, keep: bool) -> StoreResult<()> {
        let depth = self.txns.len();
        let SqlSlot::Open(open) = &mut self.sql else {
            return Ok(());
        };
        if let Some(d) = open.opened_under_clear
            && depth < d
        {
            if keep {
                // The delete-all moved into the enclosing transaction (or the event).
                open.opened_under_clear = Some(depth);
            } else {
                // The delete-all under the database is undone: so is the empty database.
                self.sql = SqlSlot::Closed;
                return Ok(());
            }
        }
        open.db()
            .close_transaction(depth, keep)
            .map_err(|e| StoreError::Internal(e.message))
    }
}

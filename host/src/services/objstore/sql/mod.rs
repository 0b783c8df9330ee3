//! An object's SQLite database, run by the host: one connection over the object's pages
//! (`vfs`), SQLite's journal in memory and nothing made durable by SQLite itself. An event's
//! statements run in one SQLite transaction opened at its first statement; at the event's
//! end it commits and the pages it wrote join the event's write set, or it rolls back with
//! the event. Storage transactions map to savepoints. Rooms: `vfs` (the pages), `rules`
//! (limits and the authorizer).

pub mod rules;
pub mod vfs;

use crate::backend::SqlWrites;
use bytes::Bytes;
use rules::{HostStatement, SqlLimits};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, StatementStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use vfs::{PAGE_SIZE, SharedFile};

/// Why a statement failed (the WIT `sql.error-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlErrorCode {
    Syntax,
    Constraint,
    Mismatch,
    NotAuthorized,
    TooLarge,
    StorageFull,
    Interrupted,
    SqlDisabled,
    Internal,
    /// SQLite rolled the event's whole transaction back (the database grew past its hard
    /// limit within one statement, or a write was interrupted): the event cannot go on
    /// without the statements it ran before, so it fails. Never handed to the guest.
    TransactionLost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub code: SqlErrorCode,
    pub message: String,
}

impl SqlError {
    pub fn new(code: SqlErrorCode, message: impl Into<String>) -> Self {
        SqlError {
            code,
            message: message.into(),
        }
    }
}

pub type SqlResult<T> = Result<T, SqlError>;

/// What `exec` answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SqlRows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub rows_read: u64,
    pub rows_written: u64,
    pub last_insert_rowid: i64,
    /// Statements run.
    pub statements: u64,
}

/// What one `exec` may spend: the event's CPU time left, the bytes it may answer, and the
/// pages the database may grow to.
pub struct ExecBudget {
    pub deadline: Option<Instant>,
    pub max_result_bytes: usize,
    pub max_pages: u32,
}

/// One object's open database.
pub struct SqlDatabase {
    conn: Connection,
    file: SharedFile,
    host: HostStatement,
    limits: SqlLimits,
    /// Nanoseconds after `epoch` past which the running statement is interrupted (0: none).
    deadline: Arc<AtomicU64>,
    epoch: Instant,
    /// The SQLite transaction of the current event is open.
    in_event: bool,
    /// Savepoints open, one per storage transaction opened before a statement needed it.
    savepoints: usize,
    /// Pages in the file when the event began (what its write set applies on).
    pages_before: u32,
    /// `max_page_count` as last set (the hard stop, past the limit by about `SLACK_PAGES`).
    hard_pages: u32,
}

/// Statements whose execution is stopped at most this many VM steps after the deadline.
const PROGRESS_STEPS: i32 = 1000;

/// How far one statement may take the database past its limit before SQLite itself stops
/// it (`max_page_count`): a statement ending past the limit is undone by the host and
/// refused `storage-full`, but SQLite stopping one mid-way rolls back the event's whole
/// transaction (and the event fails). 4 MiB: two rows of the largest size and their
/// indexes.
const SLACK_PAGES: u32 = 1024;

impl SqlDatabase {
    /// Opens a database over `pages` (empty: a new database).
    pub fn open(pages: Vec<Bytes>, limits: &SqlLimits) -> SqlResult<Self> {
        configure_sqlite();
        vfs::register();
        let pages_before = pages.len() as u32;
        let file: SharedFile = Arc::new(std::sync::Mutex::new(vfs::PageFile::new(pages)));
        let name = vfs::offer(file.clone());
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_EXRESCODE;
        let conn = Connection::open_with_flags_and_vfs(&name, flags, vfs::VFS_NAME);
        vfs::withdraw(&name);
        let mut conn = conn.map_err(internal)?;
        // No lookaside pool (about 120 KB per connection, taken at open): thousands of live
        // objects each hold a connection, and the allocator serves small blocks well.
        // SAFETY: the handle is this open connection's; no statement has run on it yet.
        unsafe {
            rusqlite::ffi::sqlite3_db_config(
                conn.handle(),
                rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
                std::ptr::null_mut::<std::ffi::c_void>(),
                0 as std::ffi::c_int,
                0 as std::ffi::c_int,
            );
        }
        // One connection per file, never shared, never made durable by SQLite: an exclusive
        // lock held throughout, the journal in memory, no syncs.
        conn.execute_batch(
            "PRAGMA page_size = 4096; PRAGMA locking_mode = EXCLUSIVE; \
             PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF; \
             PRAGMA temp_store = MEMORY; PRAGMA cache_size = -256; \
             PRAGMA foreign_keys = ON;",
        )
        .map_err(internal)?;
        conn.set_prepared_statement_cache_capacity(32);
        let host = HostStatement::default();
        rules::secure(&mut conn, limits, &host).map_err(internal)?;
        let deadline = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        {
            let deadline = deadline.clone();
            conn.progress_handler(
                PROGRESS_STEPS,
                Some(move || {
                    let d = deadline.load(Ordering::Relaxed);
                    d != 0 && epoch.elapsed().as_nanos() as u64 > d
                }),
            )
            .map_err(internal)?;
        }
        Ok(SqlDatabase {
            conn,
            file,
            host,
            limits: limits.clone(),
            deadline,
            epoch,
            in_event: false,
            savepoints: 0,
            pages_before,
            hard_pages: 0,
        })
    }

    fn host_exec(&self, sql: &str) -> SqlResult<()> {
        debug_assert!(!sql.starts_with("BEGIN"), "BEGIN goes through host_cached");
        self.host
            .run(|| self.conn.execute_batch(sql))
            .map_err(internal)
    }

    /// Opens the event's transaction, and savepoints up to `depth` storage transactions.
    fn enter(&mut self, depth: usize) -> SqlResult<()> {
        if !self.in_event {
            self.host_cached("BEGIN /* _dohost_ */")?;
            self.in_event = true;
        }
        while self.savepoints < depth {
            self.savepoints += 1;
            self.host_exec(&format!("SAVEPOINT _dohost_t{}", self.savepoints))?;
        }
        Ok(())
    }

    /// A storage transaction closed, leaving `depth` open: its savepoint (if a statement
    /// opened one) is released, or rolled back to and released.
    pub fn close_transaction(&mut self, depth: usize, keep: bool) -> SqlResult<()> {
        while self.savepoints > depth {
            let n = self.savepoints;
            self.savepoints -= 1;
            if keep {
                self.host_exec(&format!("RELEASE _dohost_t{n}"))?;
            } else {
                self.host_exec(&format!("ROLLBACK TO _dohost_t{n}; RELEASE _dohost_t{n}"))?;
            }
        }
        Ok(())
    }

    /// Bytes in use: pages less free ones (as the platform counts), as SQLite sees them
    /// (pages of this event still in its cache included).
    pub fn database_size(&self) -> u64 {
        let q = |sql: &str| -> u64 {
            self.host
                .run(|| {
                    self.conn
                        .prepare_cached(sql)
                        .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                })
                .unwrap_or(0)
                .max(0) as u64
        };
        q("PRAGMA page_count /* _dohost_ */")
            .saturating_sub(q("PRAGMA freelist_count /* _dohost_ */"))
            * PAGE_SIZE as u64
    }

    /// Bytes the database holds in memory: its pages, and SQLite's own (its cache, the
    /// schema and statements, estimated).
    pub fn memory_bytes(&self) -> usize {
        const CONNECTION: usize = 64 * 1024;
        vfs::lock(&self.file).page_count() as usize * PAGE_SIZE + CONNECTION
    }

    /// Pages the file had when the event began.
    pub fn pages_before(&self) -> u32 {
        self.pages_before
    }

    /// Runs `query` (statements separated by `;`) within the event's transaction and `depth`
    /// storage transactions. A failed call changes nothing: several statements run under a
    /// savepoint of their own.
    pub fn exec(
        &mut self,
        query: &str,
        params: &[Value],
        depth: usize,
        budget: &ExecBudget,
    ) -> SqlResult<SqlRows> {
        if query.len() > self.limits.max_statement_bytes {
            return Err(SqlError::new(
                SqlErrorCode::TooLarge,
                format!(
                    "the statement is {} bytes, over the limit of {} bytes (max_sql_statement_bytes)",
                    query.len(),
                    self.limits.max_statement_bytes
                ),
            ));
        }
        if params.len() > self.limits.max_params {
            return Err(SqlError::new(
                SqlErrorCode::TooLarge,
                format!(
                    "{} bound parameters is over the limit of {} (max_sql_params)",
                    params.len(),
                    self.limits.max_params
                ),
            ));
        }
        self.enter(depth)?;
        // The limit moves with every commit of the object's other data; the hard stop is set
        // again only when it drifted by half the slack, not at every call (a statement).
        let hard = budget.max_pages.saturating_add(SLACK_PAGES);
        if self.hard_pages.abs_diff(hard) > SLACK_PAGES / 2 {
            self.host_exec(&format!("PRAGMA max_page_count = {hard}"))?;
            self.hard_pages = hard;
        }
        // One statement that only reads needs nothing around it. Any other call runs under
        // a savepoint of its own: a call that fails, or leaves the database past its limit,
        // is undone whole (its earlier statements too).
        let single = self.single_read(query);
        let guarded = single != Some(true);
        if guarded {
            self.host_cached("SAVEPOINT _dohost_exec")?;
        }
        let deadline = budget
            .deadline
            .map(|d| (d.saturating_duration_since(self.epoch).as_nanos() as u64).max(1))
            .unwrap_or(0);
        self.deadline.store(deadline, Ordering::Relaxed);
        let result = self.run(query, params, budget.max_result_bytes, single.is_some());
        self.deadline.store(0, Ordering::Relaxed);
        if self.conn.is_autocommit() {
            // SQLite ended the transaction itself: the event's statements so far are gone.
            self.in_event = false;
            self.savepoints = 0;
            vfs::lock(&self.file).forget_dirty();
            let why = match result {
                Err(e) => explain(e, query, &self.limits, budget).message,
                Ok(_) => "the transaction ended".to_string(),
            };
            return Err(SqlError::new(
                SqlErrorCode::TransactionLost,
                format!(
                    "SQLite rolled back the event's transaction ({why}); the event fails and \
                     none of its writes are kept"
                ),
            ));
        }
        if !guarded {
            return result.map_err(|e| explain(e, query, &self.limits, budget));
        }
        // SQLite's count, not the file's: pages still in its cache count too.
        let pages = self.host.run(|| {
            self.conn
                .prepare_cached("PRAGMA page_count /* _dohost_ */")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, u32>(0)))
        });
        let pages = pages.map_err(internal)?;
        let result = match result {
            Ok(_) if pages > budget.max_pages => Err(SqlError::new(
                SqlErrorCode::StorageFull,
                format!(
                    "the statement would take the database to {} bytes, over the {} it may \
                     hold (max_sql_database_bytes, and the object's storage quota \
                     max_object_bytes)",
                    u64::from(pages) * PAGE_SIZE as u64,
                    u64::from(budget.max_pages) * PAGE_SIZE as u64
                ),
            )),
            Ok(rows) => Ok(rows),
            Err(e) => Err(explain(e, query, &self.limits, budget)),
        };
        match result {
            Ok(_) => self.host_cached("RELEASE _dohost_exec")?,
            Err(_) => {
                self.host_cached("ROLLBACK TO _dohost_exec")?;
                self.host_cached("RELEASE _dohost_exec")?;
            }
        }
        result
    }

    /// Refuses every write from now on (`true`), or allows them again: for operators'
    /// queries, which may only read.
    pub fn set_read_only(&mut self, on: bool) -> SqlResult<()> {
        self.host_exec(if on {
            "PRAGMA query_only = ON"
        } else {
            "PRAGMA query_only = OFF"
        })
    }

    /// Runs one of the host's own statements, kept prepared. Its text names `_dohost_`, so
    /// that no user's statement ever finds it in the cache (see `cacheable`).
    fn host_cached(&self, sql: &str) -> SqlResult<()> {
        debug_assert!(
            !cacheable(sql),
            "a host statement must name _dohost_: {sql}"
        );
        self.host
            .run(|| {
                self.conn
                    .prepare_cached(sql)
                    .and_then(|mut s| s.raw_execute())
            })
            .map(drop)
            .map_err(internal)
    }

    /// Whether `query` is one statement that only reads (then it needs no savepoint and
    /// cannot grow the database); prepares and caches it when it is one statement.
    fn single_read(&self, query: &str) -> Option<bool> {
        (cacheable(query) && worth_caching(query))
            .then(|| self.conn.prepare_cached(query).ok().map(|s| s.readonly()))
            .flatten()
    }

    fn run(
        &self,
        query: &str,
        params: &[Value],
        max_bytes: usize,
        single: bool,
    ) -> rusqlite::Result<SqlRows> {
        let changes_before = self.conn.total_changes();
        let mut out = SqlRows::default();
        let mut step = Step {
            params,
            max_bytes,
            bytes: 0,
            bound: false,
        };
        if single {
            // Prepared once per connection (the cache), not parsed again at every call.
            let mut stmt = self.conn.prepare_cached(query)?;
            step.run(&mut stmt, &mut out)?;
        } else {
            let mut batch = rusqlite::Batch::new(&self.conn, query);
            while let Some(mut stmt) = fallible_iterator::FallibleIterator::next(&mut batch)? {
                step.run(&mut stmt, &mut out)?;
            }
        }
        if !params.is_empty() && !step.bound {
            return Err(rusqlite::Error::InvalidParameterCount(params.len(), 0));
        }
        out.rows_written = self.conn.total_changes().saturating_sub(changes_before);
        out.last_insert_rowid = self.conn.last_insert_rowid();
        Ok(out)
    }

    /// Ends the event: commits its transaction and answers the pages it wrote (none when it
    /// wrote nothing). An error leaves the transaction rolled back.
    pub fn finish_event(&mut self) -> SqlResult<Option<SqlWrites>> {
        if !self.in_event {
            return Ok(None);
        }
        self.in_event = false;
        self.savepoints = 0;
        if let Err(e) = self.host_cached("COMMIT /* _dohost_ */") {
            let _ = self.host_exec("ROLLBACK");
            vfs::lock(&self.file).forget_dirty();
            return Err(e);
        }
        self.release_cache();
        let mut file = vfs::lock(&self.file);
        let pages = file.take_dirty();
        let page_count = file.page_count();
        drop(file);
        let before = std::mem::replace(&mut self.pages_before, page_count);
        if pages.is_empty() && page_count == before {
            return Ok(None);
        }
        Ok(Some(SqlWrites {
            pages: pages.into_iter().collect(),
            page_count,
            pages_before: before,
        }))
    }

    /// Gives SQLite's page cache back between events: every page is in the file already (a
    /// copy away), and an idle object should not hold its database twice.
    fn release_cache(&self) {
        // SAFETY: the handle is this connection's, used from this thread only.
        unsafe {
            rusqlite::ffi::sqlite3_db_release_memory(self.conn.handle());
        }
    }

    /// Drops the event's statements (the event failed).
    pub fn discard_event(&mut self) {
        if self.in_event {
            self.in_event = false;
            self.savepoints = 0;
            let _ = self.host_exec("ROLLBACK");
        }
        vfs::lock(&self.file).forget_dirty();
    }
}

/// Runs a call's statements one after the other, binding its parameters to the one that
/// takes them and keeping the last one's rows.
struct Step<'a> {
    params: &'a [Value],
    max_bytes: usize,
    bytes: usize,
    bound: bool,
}

impl Step<'_> {
    fn run(
        &mut self,
        stmt: &mut rusqlite::Statement<'_>,
        out: &mut SqlRows,
    ) -> rusqlite::Result<()> {
        out.statements += 1;
        let wanted = stmt.parameter_count();
        if wanted > 0 {
            if wanted != self.params.len() {
                return Err(rusqlite::Error::InvalidParameterCount(
                    self.params.len(),
                    wanted,
                ));
            }
            for (i, p) in self.params.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, p)?;
            }
            self.bound = true;
        }
        out.columns = stmt.column_names().map(String::from).collect();
        out.rows.clear();
        let width = stmt.column_count();
        {
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next()? {
                let mut values = Vec::with_capacity(width);
                for i in 0..width {
                    let v: Value = row.get(i)?;
                    self.bytes += value_bytes(&v);
                    values.push(v);
                }
                if self.bytes > self.max_bytes {
                    return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(
                        ResultTooLarge(self.max_bytes),
                    )));
                }
                out.rows.push(values);
            }
        }
        // Reset as read: a cached statement's count would otherwise run on across calls.
        out.rows_read +=
            out.rows.len() as u64 + stmt.reset_status(StatementStatus::FullscanStep).max(0) as u64;
        Ok(())
    }
}

/// Whether a user's statement may go through the statement cache: not when it could be
/// the text of one of the host's own cached statements (those were authorized as the
/// host's; a cache hit would skip the authorizer).
fn cacheable(query: &str) -> bool {
    !query.to_ascii_lowercase().contains("_dohost_")
}

/// Whether a user's statement is worth keeping prepared: not schema changes, which run once
/// per instance (a constructor's `CREATE TABLE IF NOT EXISTS`) and compile to the largest
/// programs, held for nothing while the object idles.
fn worth_caching(query: &str) -> bool {
    let head = query.trim_start();
    let head = &head[..head.len().min(6)];
    !["CREATE", "DROP", "ALTER"]
        .iter()
        .any(|k| head.len() >= k.len() && head[..k.len()].eq_ignore_ascii_case(k))
}

/// Process-wide settings, before SQLite starts: no bulk page-cache allocation per
/// connection (20 pages, about 86 KB, taken at open whether the database is used or not);
/// pages are allocated as the cache fills. Ignored (SQLITE_MISUSE) when SQLite started
/// first, as in a test that opened a database of its own.
fn configure_sqlite() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: called once, before this module opens any connection; SQLite refuses it
        // harmlessly if it was initialized already.
        unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_PAGECACHE,
                std::ptr::null_mut::<std::ffi::c_void>(),
                0 as std::ffi::c_int,
                0 as std::ffi::c_int,
            );
        }
    });
}

/// The size of a value as the result limit counts it.
pub fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Text(s) => s.len() + 16,
        Value::Blob(b) => b.len() + 16,
        _ => 16,
    }
}

#[derive(Debug)]
struct ResultTooLarge(usize);

impl std::error::Error for ResultTooLarge {}

impl std::fmt::Display for ResultTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the result is over {} bytes, more than one call may answer (the instance's memory limit, memory_bytes): read it with a cursor, a page at a time",
            self.0
        )
    }
}

fn internal(e: rusqlite::Error) -> SqlError {
    SqlError::new(SqlErrorCode::Internal, format!("SQLite failed: {e}"))
}

/// A rusqlite error as the guest sees it: its code, and SQLite's message (the host's when
/// SQLite's says too little).
fn explain(e: rusqlite::Error, query: &str, limits: &SqlLimits, budget: &ExecBudget) -> SqlError {
    use rusqlite::Error as E;
    use rusqlite::ErrorCode as C;
    match e {
        E::ToSqlConversionFailure(inner) if inner.is::<ResultTooLarge>() => {
            SqlError::new(SqlErrorCode::TooLarge, inner.to_string())
        }
        E::InvalidParameterCount(given, wanted) => SqlError::new(
            SqlErrorCode::Mismatch,
            format!("{given} bindings given, the statement takes {wanted}"),
        ),
        E::SqlInputError { error, msg, .. } | E::SqliteFailure(error, Some(msg))
            if error.code == C::AuthorizationForStatementDenied
                || msg.contains("not authorized") =>
        {
            let _ = msg;
            SqlError::new(SqlErrorCode::NotAuthorized, rules::refusal(query))
        }
        E::SqlInputError { msg, .. } => SqlError::new(SqlErrorCode::Syntax, msg),
        E::SqliteFailure(error, msg) => {
            let msg = msg.unwrap_or_else(|| error.to_string());
            let code = match error.code {
                C::ConstraintViolation => SqlErrorCode::Constraint,
                C::TypeMismatch | C::ParameterOutOfRange => SqlErrorCode::Mismatch,
                C::AuthorizationForStatementDenied => SqlErrorCode::NotAuthorized,
                C::DiskFull => SqlErrorCode::StorageFull,
                C::OperationInterrupted => SqlErrorCode::Interrupted,
                C::TooBig => SqlErrorCode::TooLarge,
                // SQLite reports some limits as plain errors ("too many columns on t").
                C::Unknown if msg.starts_with("too many") => SqlErrorCode::TooLarge,
                C::Unknown => SqlErrorCode::Syntax,
                _ => SqlErrorCode::Internal,
            };
            let msg = match code {
                SqlErrorCode::StorageFull => format!(
                    "{msg}: the database may grow to {} bytes (max_sql_database_bytes, and the object's storage quota max_object_bytes)",
                    budget.max_pages as u64 * PAGE_SIZE as u64
                ),
                SqlErrorCode::Interrupted => {
                    format!("{msg}: the statement ran past the event's CPU limit (cpu_ms)")
                }
                SqlErrorCode::TooLarge if msg.starts_with("too many") => format!(
                    "{msg}: a table or result may have {} columns (max_sql_columns), a statement {} bound parameters (max_sql_params)",
                    limits.max_columns, limits.max_params
                ),
                SqlErrorCode::TooLarge => format!(
                    "{msg}: a string, blob or row may hold {} bytes (max_sql_value_bytes)",
                    limits.max_value_bytes
                ),
                _ => msg,
            };
            SqlError::new(code, msg)
        }
        other => SqlError::new(SqlErrorCode::Internal, other.to_string()),
    }
}

#[cfg(test)]
mod tests;

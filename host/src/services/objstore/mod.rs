//! One object's view of its storage: its durable data in the backend, the writes still on their
//! way to disk, the current event's writes and any open transactions, merged so that reads
//! always see the object's own writes. Knows nothing of wasmtime. Rooms: `inflight` (the
//! writes on their way to disk), `list` (the merged, ordered listing), `checks` (limits),
//! `sql` (the object's SQLite database), `sql_store` (how it joins the object's writes).

mod checks;
mod inflight;
mod list;
pub mod sql;
mod sql_store;

pub use inflight::InflightWrites;
pub use sql_store::SqlSlot;

use crate::backend::{Storage, WriteSet};
use crate::services::scheduler::Clock;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Storage limits, each configurable (see `Limits` in the config).
#[derive(Debug, Clone)]
pub struct StorageLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_keys_per_call: usize,
    pub max_object_bytes: u64,
    /// Alarms sooner than this from now are moved to now plus this, in milliseconds.
    pub min_alarm_interval_ms: u64,
    /// The limits on the object's SQL.
    pub sql: sql::rules::SqlLimits,
    /// Most bytes (keys and values) one `list` answers: the guest could not hold more (its
    /// memory limit), and the host must not gather more than that to find out.
    pub max_list_bytes: usize,
}

/// Open transactions one event may nest; a guest looping on `transaction-begin` would
/// otherwise grow the host's memory without bound.
pub const MAX_TRANSACTION_DEPTH: usize = 64;

/// What a storage call can fail with (the WIT `error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    KeyTooLarge(String),
    ValueTooLarge(String),
    TooManyKeys(String),
    StorageFull(String),
    NoTransaction(String),
    InvalidArgument(String),
    Internal(String),
    /// The database could not be reached (or did not answer in time): a retry may pass.
    /// The guest sees it as `internal` (the WIT has no code of its own for it), with a
    /// message saying so; the host remembers it for the event (`hit_unreachable`).
    Unavailable(String),
}

impl StoreError {
    fn internal(e: anyhow::Error) -> Self {
        if crate::backend::is_unreachable(&e) {
            StoreError::Unavailable(format!(
                "storage is unavailable: the database could not be reached ({e:#}); try again \
                 shortly"
            ))
        } else {
            StoreError::Internal(format!("storage failed: {e:#}"))
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One object's storage as its instance sees it during an event.
pub struct ObjectStore {
    storage: Arc<dyn Storage>,
    shared: Arc<InflightWrites>,
    limits: Arc<StorageLimits>,
    clock: Arc<dyn Clock>,
    event: WriteSet,
    txns: Vec<WriteSet>,
    /// Set when a read of this event failed because the database was unreachable: if the
    /// guest then traps (a constructor's `expect`) or answers 5xx (an uncaught storage
    /// error), the caller is told 503, not 500.
    unreachable: std::sync::atomic::AtomicBool,
    /// The object's SQL database: closed until its first statement.
    sql: SqlSlot,
    /// SQL statements run since `take_sql_statements` (for the metrics).
    sql_statements: u64,
    /// The host's memory budget, which an open SQL database counts against.
    memory: Option<Arc<crate::services::memory::MemoryBudget>>,
}

impl ObjectStore {
    pub fn new(
        storage: Arc<dyn Storage>,
        shared: Arc<InflightWrites>,
        limits: Arc<StorageLimits>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        ObjectStore {
            storage,
            shared,
            limits,
            clock,
            event: WriteSet::default(),
            txns: Vec::new(),
            unreachable: Default::default(),
            sql: SqlSlot::default(),
            sql_statements: 0,
            memory: None,
        }
    }

    /// Whether a read since `begin_event` failed because the database was unreachable.
    pub fn hit_unreachable(&self) -> bool {
        self.unreachable.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A new event starts: forgets the previous event's unreachable reads.
    pub fn begin_event(&self) {
        self.unreachable
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// A backend read's failure as the guest sees it, noting an unreachable database.
    fn read_failed(&self, e: anyhow::Error) -> StoreError {
        let e = StoreError::internal(e);
        if matches!(e, StoreError::Unavailable(_)) {
            self.unreachable
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        e
    }

    pub fn limits(&self) -> &StorageLimits {
        &self.limits
    }

    fn top(&mut self) -> &mut WriteSet {
        self.txns.last_mut().unwrap_or(&mut self.event)
    }

    pub async fn get(&self, key: &str) -> StoreResult<Option<Bytes>> {
        self.check_key(key)?;
        for layer in self.txns.iter().rev().chain(std::iter::once(&self.event)) {
            if let Some(found) = layer.lookup(key) {
                return Ok(found.cloned());
            }
        }
        {
            let inf = self.shared.lock();
            if let Some((_, v)) = inf.entries.get(key) {
                return Ok(v.clone());
            }
            if inf.clear_seq.is_some() {
                return Ok(None);
            }
            if let Some(durable) = &inf.durable {
                return Ok(durable.entries.get(key).cloned());
            }
        }
        // The in-flight view was consulted first: the committer removes a write from it only
        // after the write is readable from the backend, and no other write of this object
        // can start while its event runs, so nothing falls between the two.
        self.storage
            .get(&self.shared.object, key)
            .await
            .map_err(|e| self.read_failed(e))
    }

    pub async fn get_many(&self, keys: &[String]) -> StoreResult<Vec<(String, Bytes)>> {
        self.check_count(keys.len())?;
        keys.iter().try_for_each(|k| self.check_key(k))?;
        let mut found = BTreeMap::new();
        for k in keys {
            if let Some(v) = self.get(k).await? {
                found.insert(k.clone(), v);
            }
        }
        Ok(found.into_iter().collect())
    }

    pub async fn put(&mut self, key: String, value: Bytes) -> StoreResult<()> {
        self.check_key(&key)?;
        self.check_value(&key, &value)?;
        self.check_quota(&[(&key, value.len())]).await?;
        let top = self.top();
        top.added_bytes += (key.len() + value.len()) as u64;
        top.map.insert(key, Some(value));
        Ok(())
    }

    pub async fn put_many(&mut self, entries: Vec<(String, Bytes)>) -> StoreResult<()> {
        // Validate everything first: a refused call changes nothing.
        self.check_count(entries.len())?;
        for (k, v) in &entries {
            self.check_key(k)?;
            self.check_value(k, v)?;
        }
        let sizes: Vec<(&str, usize)> =
            entries.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        self.check_quota(&sizes).await?;
        let top = self.top();
        for (k, v) in entries {
            top.added_bytes += (k.len() + v.len()) as u64;
            top.map.insert(k, Some(v));
        }
        Ok(())
    }

    pub async fn delete(&mut self, key: String) -> StoreResult<bool> {
        let existed = self.get(&key).await?.is_some();
        self.top().map.insert(key, None);
        Ok(existed)
    }

    pub async fn delete_many(&mut self, keys: Vec<String>) -> StoreResult<u32> {
        self.check_count(keys.len())?;
        keys.iter().try_for_each(|k| self.check_key(k))?;
        let mut count = 0;
        for k in keys {
            // A key listed twice counts once: the second delete finds it gone.
            if self.delete(k).await? {
                count += 1;
            }
        }
        Ok(count)
    }

    pub fn delete_all(&mut self) -> StoreResult<()> {
        self.sql_delete_all()?;
        let top = self.top();
        top.clear = true;
        top.map.clear();
        Ok(())
    }

    /// The pending alarm, seeing this event's and in-flight changes.
    pub async fn get_alarm(&self) -> StoreResult<Option<u64>> {
        for layer in self.txns.iter().rev().chain(std::iter::once(&self.event)) {
            if let Some(alarm) = layer.alarm {
                return Ok(alarm);
            }
        }
        {
            let inf = self.shared.lock();
            if let Some((_, alarm)) = inf.alarm {
                return Ok(alarm);
            }
            if let Some(durable) = &inf.durable {
                return Ok(durable.alarm);
            }
        }
        self.storage
            .get_alarm(&self.shared.object)
            .await
            .map_err(|e| self.read_failed(e))
    }

    /// Sets the alarm, no sooner than the minimum interval from now; returns the time set.
    pub fn set_alarm(&mut self, at: u64) -> StoreResult<u64> {
        let earliest = self
            .clock
            .now_ms()
            .saturating_add(self.limits.min_alarm_interval_ms);
        let at = at.max(earliest);
        self.top().alarm = Some(Some(at));
        Ok(at)
    }

    /// Sets the alarm to `at` as given, without the minimum interval (an operator's edit).
    pub fn set_alarm_exactly(&mut self, at: u64) -> StoreResult<()> {
        self.top().alarm = Some(Some(at));
        Ok(())
    }

    pub fn delete_alarm(&mut self) -> StoreResult<()> {
        self.top().alarm = Some(None);
        Ok(())
    }

    /// True when the current event (transactions included) changed the alarm.
    pub fn event_changed_alarm(&self) -> bool {
        self.event.alarm.is_some() || self.txns.iter().any(|t| t.alarm.is_some())
    }

    pub fn begin(&mut self) -> StoreResult<()> {
        if self.txns.len() >= MAX_TRANSACTION_DEPTH {
            return Err(StoreError::InvalidArgument(format!(
                "transactions nest at most {MAX_TRANSACTION_DEPTH} deep"
            )));
        }
        self.txns.push(WriteSet::default());
        Ok(())
    }

    pub fn commit(&mut self) -> StoreResult<()> {
        let top = self.txns.pop().ok_or_else(no_transaction)?;
        match self.txns.last_mut() {
            Some(parent) => parent.absorb(top),
            None => self.event.absorb(top),
        }
        self.sql_transaction_closed(true)
    }

    pub fn rollback(&mut self) -> StoreResult<()> {
        self.txns.pop().ok_or_else(no_transaction)?;
        self.sql_transaction_closed(false)
    }

    /// True when the event wrote something that will be committed (open transactions,
    /// which end rolled back, do not count).
    pub fn event_wrote(&self) -> bool {
        !self.event.is_empty() || self.sql.in_event()
    }

    /// Ends the event: open transactions are rolled back, and the event's writes are
    /// returned for commit (None when it wrote nothing).
    pub fn take_event_writes(&mut self) -> Option<WriteSet> {
        while !self.txns.is_empty() {
            // Undoes the SQL of each open transaction too (its savepoint).
            if self.rollback().is_err() {
                self.txns.clear();
            }
        }
        let sql = self.sql.finish_event(&self.shared.object);
        let mut writes = std::mem::take(&mut self.event);
        match sql {
            Ok(pages) => writes.sql = pages,
            // Nothing of the event may commit without its SQL (logged by `finish_event`).
            Err(()) => return None,
        }
        (!writes.is_empty()).then_some(writes)
    }

    /// Drops the current event's writes (the event failed).
    pub fn discard_event(&mut self) {
        self.txns.clear();
        self.event = WriteSet::default();
        self.sql.discard_event();
    }

    pub fn shared(&self) -> &Arc<InflightWrites> {
        &self.shared
    }
}

fn no_transaction() -> StoreError {
    StoreError::NoTransaction("no transaction is open".to_string())
}

pub(super) fn truncate(key: &str) -> &str {
    match key.char_indices().nth(40) {
        Some((i, _)) => &key[..i],
        None => key,
    }
}

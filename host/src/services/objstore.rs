//! One object's view of its storage: its durable data in redb, the writes still on their
//! way to disk, the current event's writes and any open transactions, merged so that reads
//! always see the object's own writes. Knows nothing of wasmtime.

use crate::backend::committer::CommitTarget;
use crate::backend::{Storage, WriteSet};
use crate::id::ObjectKey;
use crate::services::scheduler::Clock;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

/// Storage limits, each configurable (see `Limits` in the config).
#[derive(Debug, Clone)]
pub struct StorageLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_keys_per_call: usize,
    pub max_object_bytes: u64,
    /// Alarms sooner than this from now are moved to now plus this, in milliseconds.
    pub min_alarm_interval_ms: u64,
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
}

impl StoreError {
    fn internal(e: anyhow::Error) -> Self {
        StoreError::Internal(format!("storage failed: {e:#}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An object's writes handed to the committer but not yet durable (reads must see them),
/// shared by its actor and the committer. Lives as long as the object's actor.
pub struct InflightWrites {
    pub object: ObjectKey,
    // A std Mutex: held only for map updates, never across an await or a disk write.
    inflight: Mutex<Inflight>,
}

#[derive(Default)]
pub struct Inflight {
    /// Bumped when a commit of this object fails: queued commits of the old generation
    /// are refused and the actor rebuilds the instance from disk.
    pub generation: u64,
    next_seq: u64,
    entries: BTreeMap<String, (u64, Option<Bytes>)>,
    clear_seq: Option<u64>,
    added_bytes: u64,
    /// The latest alarm change handed to the committer and not yet durable.
    alarm: Option<(u64, Option<u64>)>,
    /// Bytes stored by the object as of its last durable commit.
    pub committed_bytes: u64,
}

impl InflightWrites {
    pub fn new(object: ObjectKey, committed_bytes: u64) -> Arc<Self> {
        Arc::new(InflightWrites {
            object,
            inflight: Mutex::new(Inflight {
                committed_bytes,
                ..Inflight::default()
            }),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Inflight> {
        // A poisoned lock means a panic in a few lines of map code; the data is still
        // consistent enough to keep serving, so take it.
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Registers an event's writes as in flight; returns (generation, sequence number).
    pub fn begin_commit(&self, writes: &WriteSet) -> (u64, u64) {
        let mut inf = self.lock();
        inf.next_seq += 1;
        let seq = inf.next_seq;
        if writes.clear {
            inf.entries.clear();
            inf.clear_seq = Some(seq);
        }
        for (k, v) in &writes.map {
            inf.entries.insert(k.clone(), (seq, v.clone()));
        }
        inf.added_bytes += writes.added_bytes;
        if let Some(alarm) = writes.alarm {
            inf.alarm = Some((seq, alarm));
        }
        (inf.generation, seq)
    }

    /// The commit `seq` is durable: drop what it wrote from the in-flight view (unless a
    /// later commit overwrote it) and record the object's new size.
    pub fn finish_commit(&self, seq: u64, writes: &WriteSet, committed_bytes: u64) {
        let mut inf = self.lock();
        for k in writes.map.keys() {
            if inf.entries.get(k).is_some_and(|(s, _)| *s == seq) {
                inf.entries.remove(k);
            }
        }
        if inf.clear_seq == Some(seq) {
            inf.clear_seq = None;
        }
        inf.added_bytes = inf.added_bytes.saturating_sub(writes.added_bytes);
        inf.committed_bytes = committed_bytes;
        if inf.alarm.is_some_and(|(s, _)| s == seq) {
            inf.alarm = None;
        }
    }

    /// A commit of generation `generation` failed: forget everything in flight.
    pub fn fail_commit(&self, generation: u64) {
        let mut inf = self.lock();
        if inf.generation == generation {
            inf.generation += 1;
            inf.entries.clear();
            inf.clear_seq = None;
            inf.added_bytes = 0;
            inf.alarm = None;
        }
    }

    /// True when nothing is waiting to become durable.
    pub fn is_settled(&self) -> bool {
        let inf = self.lock();
        inf.entries.is_empty() && inf.clear_seq.is_none() && inf.alarm.is_none()
    }
}

impl CommitTarget for InflightWrites {
    fn object(&self) -> ObjectKey {
        self.object
    }

    fn generation(&self) -> u64 {
        InflightWrites::generation(self)
    }

    fn finish_commit(&self, seq: u64, writes: &WriteSet, committed_bytes: u64) {
        InflightWrites::finish_commit(self, seq, writes, committed_bytes)
    }

    fn fail_commit(&self, generation: u64) {
        InflightWrites::fail_commit(self, generation)
    }
}

/// One object's storage as its instance sees it during an event.
pub struct ObjectStore {
    storage: Arc<dyn Storage>,
    shared: Arc<InflightWrites>,
    limits: Arc<StorageLimits>,
    clock: Arc<dyn Clock>,
    event: WriteSet,
    txns: Vec<WriteSet>,
}

/// A list query's key bounds, normalised: `[lower, upper)` on user-key bytes.
struct KeyRange {
    lower: String,
    upper: Option<Vec<u8>>,
}

impl KeyRange {
    fn new(start: Option<&str>, end: Option<&str>, prefix: Option<&str>) -> Option<KeyRange> {
        let prefix = prefix.unwrap_or("");
        let lower = match start {
            Some(s) if s > prefix => s.to_string(),
            _ => prefix.to_string(),
        };
        let prefix_end = successor(prefix.as_bytes());
        let upper = match (end.map(str::as_bytes), prefix_end) {
            (Some(e), Some(p)) => Some(e.min(p.as_slice()).to_vec()),
            (Some(e), None) => Some(e.to_vec()),
            (None, p) => p,
        };
        if upper.as_deref().is_some_and(|u| lower.as_bytes() >= u) {
            return None;
        }
        Some(KeyRange { lower, upper })
    }

    fn contains(&self, key: &str) -> bool {
        key >= self.lower.as_str() && self.upper.as_deref().is_none_or(|u| key.as_bytes() < u)
    }

    fn select<'a, V>(
        &'a self,
        map: &'a BTreeMap<String, V>,
    ) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
        map.range::<str, _>((Bound::Included(self.lower.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| self.upper.as_deref().is_none_or(|u| k.as_bytes() < u))
    }
}

/// The smallest byte string greater than every string starting with `prefix` (None when
/// there is none, i.e. the empty prefix).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
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
        }
    }

    fn top(&mut self) -> &mut WriteSet {
        self.txns.last_mut().unwrap_or(&mut self.event)
    }

    fn check_key(&self, key: &str) -> StoreResult<()> {
        if key.len() > self.limits.max_key_bytes {
            return Err(StoreError::KeyTooLarge(format!(
                "key of {} bytes is over the limit of {} bytes (max_key_bytes)",
                key.len(),
                self.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    fn check_value(&self, key: &str, value: &[u8]) -> StoreResult<()> {
        if value.len() > self.limits.max_value_bytes {
            return Err(StoreError::ValueTooLarge(format!(
                "value of {} bytes for key {:?} is over the limit of {} bytes (max_value_bytes)",
                value.len(),
                truncate(key),
                self.limits.max_value_bytes
            )));
        }
        Ok(())
    }

    fn check_count(&self, n: usize) -> StoreResult<()> {
        if n > self.limits.max_keys_per_call {
            return Err(StoreError::TooManyKeys(format!(
                "{n} keys in one call is over the limit of {} (max_keys_per_call)",
                self.limits.max_keys_per_call
            )));
        }
        Ok(())
    }

    fn pending_added_bytes(&self) -> u64 {
        self.event.added_bytes + self.txns.iter().map(|t| t.added_bytes).sum::<u64>()
    }

    /// Refuses writes that would take the object over its quota. The estimate counts every
    /// not-yet-durable put at full size; only when that says "over" is the exact old size of
    /// the overwritten keys subtracted, so the common path costs no extra read.
    fn check_quota(&self, entries: &[(&str, usize)]) -> StoreResult<()> {
        let adding: u64 = entries.iter().map(|(k, v)| (k.len() + v) as u64).sum();
        let (committed, inflight) = {
            let inf = self.shared.lock();
            (inf.committed_bytes, inf.added_bytes)
        };
        let estimate = committed + inflight + self.pending_added_bytes() + adding;
        if estimate <= self.limits.max_object_bytes {
            return Ok(());
        }
        let mut replaced = 0u64;
        for (k, _) in entries {
            if let Some(old) = self.get(k)? {
                replaced += (k.len() + old.len()) as u64;
            }
        }
        if estimate.saturating_sub(replaced) > self.limits.max_object_bytes {
            return Err(StoreError::StorageFull(format!(
                "this write would take the object to about {} bytes, over its quota of {} bytes \
                 (max_object_bytes); delete data first",
                estimate.saturating_sub(replaced),
                self.limits.max_object_bytes
            )));
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> StoreResult<Option<Bytes>> {
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
        }
        // The in-flight view was consulted first: the committer removes a write from it only
        // after the write is readable from the database, so nothing falls between the two.
        self.storage
            .get(&self.shared.object, key)
            .map_err(StoreError::internal)
    }

    pub fn get_many(&self, keys: &[String]) -> StoreResult<Vec<(String, Bytes)>> {
        self.check_count(keys.len())?;
        keys.iter().try_for_each(|k| self.check_key(k))?;
        let mut found = BTreeMap::new();
        for k in keys {
            if let Some(v) = self.get(k)? {
                found.insert(k.clone(), v);
            }
        }
        Ok(found.into_iter().collect())
    }

    pub fn put(&mut self, key: String, value: Bytes) -> StoreResult<()> {
        self.check_key(&key)?;
        self.check_value(&key, &value)?;
        self.check_quota(&[(&key, value.len())])?;
        let top = self.top();
        top.added_bytes += (key.len() + value.len()) as u64;
        top.map.insert(key, Some(value));
        Ok(())
    }

    pub fn put_many(&mut self, entries: Vec<(String, Bytes)>) -> StoreResult<()> {
        // Validate everything first: a refused call changes nothing.
        self.check_count(entries.len())?;
        for (k, v) in &entries {
            self.check_key(k)?;
            self.check_value(k, v)?;
        }
        let sizes: Vec<(&str, usize)> =
            entries.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        self.check_quota(&sizes)?;
        let top = self.top();
        for (k, v) in entries {
            top.added_bytes += (k.len() + v.len()) as u64;
            top.map.insert(k, Some(v));
        }
        Ok(())
    }

    pub fn delete(&mut self, key: String) -> StoreResult<bool> {
        let existed = self.get(&key)?.is_some();
        self.top().map.insert(key, None);
        Ok(existed)
    }

    pub fn delete_many(&mut self, keys: Vec<String>) -> StoreResult<u32> {
        self.check_count(keys.len())?;
        keys.iter().try_for_each(|k| self.check_key(k))?;
        let mut count = 0;
        for k in keys {
            // A key listed twice counts once: the second delete finds it gone.
            if self.delete(k)? {
                count += 1;
            }
        }
        Ok(count)
    }

    pub fn delete_all(&mut self) -> StoreResult<()> {
        let top = self.top();
        top.clear = true;
        top.map.clear();
        Ok(())
    }

    pub fn list(
        &self,
        start: Option<&str>,
        end: Option<&str>,
        prefix: Option<&str>,
        reverse: bool,
        limit: Option<u32>,
    ) -> StoreResult<Vec<(String, Bytes)>> {
        let limit = limit.map_or(usize::MAX, |l| l as usize);
        let Some(range) = KeyRange::new(start, end, prefix) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Merge every not-yet-durable layer, bottom up, into one overlay of the range.
        let mut overlay: BTreeMap<String, Option<Bytes>> = BTreeMap::new();
        let mut hide_db;
        {
            let inf = self.shared.lock();
            hide_db = inf.clear_seq.is_some();
            for (k, (_, v)) in range.select(&inf.entries) {
                overlay.insert(k.clone(), v.clone());
            }
        }
        for layer in std::iter::once(&self.event).chain(self.txns.iter()) {
            if layer.clear {
                overlay.clear();
                hide_db = true;
            }
            for (k, v) in range.select(&layer.map) {
                overlay.insert(k.clone(), v.clone());
            }
        }
        debug_assert!(overlay.keys().all(|k| range.contains(k)));

        let mut out = Vec::new();
        let mut pending: Box<dyn Iterator<Item = (String, Option<Bytes>)>> = if reverse {
            Box::new(overlay.into_iter().rev())
        } else {
            Box::new(overlay.into_iter())
        };
        let mut next_overlay = pending.next();
        let before = |a: &str, b: &str| if reverse { a > b } else { a < b };
        // Emits overlay entries that sort before `db_key` (all of them when None); an
        // overlay entry equal to `db_key` replaces it. Returns whether db_key was replaced.
        let mut drain = |db_key: Option<&str>,
                         out: &mut Vec<(String, Bytes)>,
                         next: &mut Option<(String, Option<Bytes>)>|
         -> bool {
            while let Some((k, v)) = next.as_ref() {
                if out.len() >= limit {
                    return true;
                }
                match db_key {
                    Some(d) if !before(k, d) && k.as_str() != d => return false,
                    _ => {}
                }
                let same = db_key == Some(k.as_str());
                if let Some(v) = v {
                    out.push((k.clone(), v.clone()));
                }
                *next = pending.next();
                if same {
                    return true;
                }
            }
            false
        };
        if !hide_db {
            let upper = range.upper.clone();
            self.storage
                .scan(
                    &self.shared.object,
                    range.lower.as_bytes(),
                    upper.as_deref(),
                    reverse,
                    &mut |k, v| {
                        let replaced = drain(Some(&k), &mut out, &mut next_overlay);
                        if out.len() >= limit {
                            return false;
                        }
                        if !replaced {
                            out.push((k, v));
                        }
                        out.len() < limit
                    },
                )
                .map_err(StoreError::internal)?;
        }
        if out.len() < limit {
            drain(None, &mut out, &mut next_overlay);
        }
        out.truncate(limit);
        Ok(out)
    }

    /// The pending alarm, seeing this event's and in-flight changes.
    pub fn get_alarm(&self) -> StoreResult<Option<u64>> {
        for layer in self.txns.iter().rev().chain(std::iter::once(&self.event)) {
            if let Some(alarm) = layer.alarm {
                return Ok(alarm);
            }
        }
        if let Some((_, alarm)) = self.shared.lock().alarm {
            return Ok(alarm);
        }
        self.storage
            .get_alarm(&self.shared.object)
            .map_err(StoreError::internal)
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
        Ok(())
    }

    pub fn rollback(&mut self) -> StoreResult<()> {
        self.txns.pop().ok_or_else(no_transaction)?;
        Ok(())
    }

    /// Ends the event: open transactions are rolled back, and the event's writes are
    /// returned for commit (None when it wrote nothing).
    pub fn take_event_writes(&mut self) -> Option<WriteSet> {
        self.txns.clear();
        let writes = std::mem::take(&mut self.event);
        (!writes.is_empty()).then_some(writes)
    }

    /// Drops the current event's writes (the event failed).
    pub fn discard_event(&mut self) {
        self.txns.clear();
        self.event = WriteSet::default();
    }

    pub fn shared(&self) -> &Arc<InflightWrites> {
        &self.shared
    }
}

fn no_transaction() -> StoreError {
    StoreError::NoTransaction("no transaction is open".to_string())
}

fn truncate(key: &str) -> &str {
    match key.char_indices().nth(40) {
        Some((i, _)) => &key[..i],
        None => key,
    }
}

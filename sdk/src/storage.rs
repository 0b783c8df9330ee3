//! Typed access to the object's private, transactional key-value storage.
//!
//! Values are stored as JSON (through serde), so objects written in other languages can
//! read them; the `*_bytes` methods store raw bytes instead.

use crate::__private::bindings::dohost::object::alarms as wit_alarms;
use crate::__private::bindings::dohost::object::storage as wit;
use crate::error::{Error, Result, StorageError, StorageErrorCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::collections::BTreeMap;

/// The object's storage. Get it from [`State::storage`](crate::State::storage).
///
/// Every write of one event (one `fetch`, one `alarm`, ...) commits atomically when the
/// handler returns, and the event's response leaves the host only once those writes are on
/// disk. Reads see the object's own writes immediately.
///
/// ```no_run
/// # use dohost_sdk::{Result, State};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct User { name: String }
/// # struct O { state: State }
/// # impl O { fn f(&self) -> Result<()> {
/// let storage = self.state.storage();
/// storage.put("user:1", &User { name: "ada".into() })?;
/// let user: Option<User> = storage.get("user:1")?;
/// storage.delete("user:1")?;
/// # let _ = user;
/// # Ok(()) } }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Storage {
    _private: (),
}

/// Which keys [`Storage::list`] returns. All options combine.
///
/// ```no_run
/// # use dohost_sdk::{ListOptions, Result, Storage};
/// # #[derive(serde::Deserialize)] struct User { name: String }
/// # fn f(storage: &Storage) -> Result<()> {
/// let page: Vec<(String, User)> = storage.list(ListOptions::new().prefix("user:").limit(100))?;
/// let last = storage.list::<User>(ListOptions::new().prefix("user:").reverse(true).limit(1))?;
/// # let _ = (page, last);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    start: Option<String>,
    end: Option<String>,
    prefix: Option<String>,
    reverse: bool,
    limit: Option<u32>,
}

impl ListOptions {
    /// Every key, in ascending order.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys greater than or equal to `start`.
    pub fn start(mut self, start: impl Into<String>) -> Self {
        self.start = Some(start.into());
        self
    }

    /// Keys strictly less than `end`.
    pub fn end(mut self, end: impl Into<String>) -> Self {
        self.end = Some(end.into());
        self
    }

    /// Keys starting with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Descending order when true.
    pub fn reverse(mut self, reverse: bool) -> Self {
        self.reverse = reverse;
        self
    }

    /// At most `limit` entries.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    fn to_wit(&self) -> wit::ListOptions {
        wit::ListOptions {
            start: self.start.clone(),
            end: self.end.clone(),
            prefix: self.prefix.clone(),
            reverse: self.reverse,
            limit: self.limit,
        }
    }
}

fn storage_err(e: wit::Error) -> Error {
    let code = match e.code {
        wit::ErrorCode::KeyTooLarge => StorageErrorCode::KeyTooLarge,
        wit::ErrorCode::ValueTooLarge => StorageErrorCode::ValueTooLarge,
        wit::ErrorCode::TooManyKeys => StorageErrorCode::TooManyKeys,
        wit::ErrorCode::StorageFull => StorageErrorCode::StorageFull,
        wit::ErrorCode::NoTransaction => StorageErrorCode::NoTransaction,
        wit::ErrorCode::InvalidArgument => StorageErrorCode::InvalidArgument,
        wit::ErrorCode::Internal => StorageErrorCode::Internal,
    };
    Error::from(StorageError {
        code,
        message: e.message,
    })
}

fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| {
        Error::from(StorageError {
            code: StorageErrorCode::InvalidArgument,
            message: format!("the value for key {key:?} cannot be encoded as JSON: {e}"),
        })
    })
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::from(StorageError {
            code: StorageErrorCode::Decode,
            message: format!("the value stored under {key:?} is not the requested type: {e}"),
        })
    })
}

impl Storage {
    pub(crate) fn new() -> Self {
        Storage { _private: () }
    }

    /// The value under `key`, decoded from JSON; `None` when absent.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get_bytes(key)? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The values that exist among `keys`, by key.
    pub fn get_many<T: DeserializeOwned, K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<BTreeMap<String, T>> {
        let keys: Vec<String> = keys.into_iter().map(|k| k.as_ref().to_string()).collect();
        let mut found = BTreeMap::new();
        for batch in keys.chunks(self.limits().max_keys_per_call) {
            for (k, v) in wit::get_many(batch).map_err(storage_err)? {
                let value = decode(&k, &v)?;
                found.insert(k, value);
            }
        }
        Ok(found)
    }

    /// Stores `value` (as JSON) under `key`.
    pub fn put<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = encode(key, value)?;
        self.put_bytes(key, &bytes)
    }

    /// Stores several entries at once (atomically with the rest of the event). Any number:
    /// more than the host takes in one call are stored in batches, in a transaction, so
    /// that a failure stores none of them.
    pub fn put_many<T: Serialize, K: AsRef<str>>(
        &self,
        entries: impl IntoIterator<Item = (K, T)>,
    ) -> Result<()> {
        let entries = entries
            .into_iter()
            .map(|(k, v)| {
                let key = k.as_ref().to_string();
                let bytes = encode(&key, &v)?;
                Ok((key, bytes))
            })
            .collect::<Result<Vec<_>>>()?;
        let per_call = self.limits().max_keys_per_call;
        if entries.len() <= per_call {
            return wit::put_many(&entries).map_err(storage_err);
        }
        self.transaction(|_| {
            for batch in entries.chunks(per_call) {
                wit::put_many(batch).map_err(storage_err)?;
            }
            Ok(())
        })
    }

    /// Removes `key`; true when it existed.
    pub fn delete(&self, key: &str) -> Result<bool> {
        wit::delete(key).map_err(storage_err)
    }

    /// Removes several keys (any number, batched as `put_many` is); returns how many
    /// existed.
    pub fn delete_many<K: AsRef<str>>(&self, keys: impl IntoIterator<Item = K>) -> Result<u32> {
        let keys: Vec<String> = keys.into_iter().map(|k| k.as_ref().to_string()).collect();
        let per_call = self.limits().max_keys_per_call;
        if keys.len() <= per_call {
            return wit::delete_many(&keys).map_err(storage_err);
        }
        self.transaction(|_| {
            let mut existed = 0;
            for batch in keys.chunks(per_call) {
                existed += wit::delete_many(batch).map_err(storage_err)?;
            }
            Ok(existed)
        })
    }

    /// The host's storage limits (asked once per instance).
    pub fn limits(&self) -> StorageLimits {
        thread_local! {
            static LIMITS: Cell<Option<StorageLimits>> = const { Cell::new(None) };
        }
        LIMITS.with(|cached| {
            cached.get().unwrap_or_else(|| {
                let l = wit::get_limits();
                let limits = StorageLimits {
                    max_key_bytes: l.max_key_bytes as usize,
                    max_value_bytes: l.max_value_bytes as usize,
                    // At least 1, so that batching always makes progress.
                    max_keys_per_call: (l.max_keys_per_call as usize).max(1),
                    min_alarm_interval: std::time::Duration::from_millis(l.min_alarm_interval_ms),
                };
                cached.set(Some(limits));
                limits
            })
        })
    }

    /// The object's SQL database (see [`Sql`](crate::Sql)), whose writes commit with these.
    /// A [`transaction`](Storage::transaction) covers both.
    ///
    /// ```no_run
    /// # use dohost_sdk::{Result, Storage};
    /// # fn f(storage: &Storage) -> Result<()> {
    /// storage.transaction(|txn| {
    ///     let id = txn.sql().exec("INSERT INTO orders(total) VALUES (?)", [120])?.last_insert_rowid();
    ///     txn.put("last_order", &id)
    /// })?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn sql(&self) -> crate::Sql {
        crate::Sql::new()
    }

    /// A typed collection of values under `prefix`, with ids from a counter (see
    /// [`Collection`]).
    pub fn collection<T: Serialize + DeserializeOwned>(&self, prefix: &str) -> Collection<T> {
        Collection {
            storage: *self,
            prefix: prefix.to_string(),
            _values: std::marker::PhantomData,
        }
    }

    /// The entries selected by `options`, in key order (descending with `reverse`).
    pub fn list<T: DeserializeOwned>(&self, options: ListOptions) -> Result<Vec<(String, T)>> {
        self.list_bytes(options)?
            .into_iter()
            .map(|(k, v)| {
                let value = decode(&k, &v)?;
                Ok((k, value))
            })
            .collect()
    }

    /// Removes every key of this object.
    pub fn delete_all(&self) -> Result<()> {
        wit::delete_all().map_err(storage_err)
    }

    /// The raw bytes under `key`.
    pub fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        wit::get(key).map_err(storage_err)
    }

    /// Stores raw bytes under `key`.
    pub fn put_bytes(&self, key: &str, value: &[u8]) -> Result<()> {
        wit::put(key, value).map_err(storage_err)
    }

    /// Raw entries selected by `options`, in key order.
    pub fn list_bytes(&self, options: ListOptions) -> Result<Vec<(String, Vec<u8>)>> {
        wit::list(&options.to_wit()).map_err(storage_err)
    }

    /// Runs `f` in a transaction: its writes are kept if it returns `Ok` (and did not call
    /// [`Transaction::rollback`]) and discarded otherwise. Transactions nest.
    ///
    /// ```no_run
    /// # use dohost_sdk::{Result, Storage};
    /// # fn f(storage: &Storage) -> Result<()> {
    /// let balance = storage.transaction(|txn| {
    ///     let balance: i64 = txn.get("balance")?.unwrap_or(0);
    ///     txn.put("balance", &(balance + 100))?;
    ///     Ok(balance + 100)
    /// })?;
    /// # let _ = balance;
    /// # Ok(())
    /// # }
    /// ```
    pub fn transaction<R>(&self, f: impl FnOnce(&Transaction) -> Result<R>) -> Result<R> {
        wit::transaction_begin().map_err(storage_err)?;
        let txn = Transaction {
            storage: *self,
            rolled_back: Cell::new(false),
        };
        let result = f(&txn);
        if result.is_ok() && !txn.rolled_back.get() {
            wit::transaction_commit().map_err(storage_err)?;
        } else {
            wit::transaction_rollback().map_err(storage_err)?;
        }
        result
    }
}

/// A point in time for [`Storage::set_alarm`]: a `SystemTime` or milliseconds since the
/// Unix epoch.
///
/// ```no_run
/// # use dohost_sdk::{Result, Storage};
/// # use std::time::{Duration, SystemTime};
/// # fn f(storage: &Storage) -> Result<()> {
/// storage.set_alarm(SystemTime::now() + Duration::from_secs(3600))?;
/// storage.set_alarm(1_700_000_000_000u64)?;
/// # Ok(())
/// # }
/// ```
pub trait AlarmTime {
    /// Milliseconds since the Unix epoch (times before it count as 0).
    fn epoch_millis(&self) -> u64;
}

impl AlarmTime for u64 {
    fn epoch_millis(&self) -> u64 {
        *self
    }
}

impl AlarmTime for std::time::SystemTime {
    fn epoch_millis(&self) -> u64 {
        self.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
            .unwrap_or(0)
    }
}

impl Storage {
    /// Schedules the object's alarm, replacing any other. Part of the event's writes: if the
    /// event fails, the alarm stays as it was. A time sooner than the host's minimum alarm
    /// interval from now is moved to now plus that interval.
    ///
    /// ```no_run
    /// # use dohost_sdk::{Result, Storage};
    /// # use std::time::{Duration, SystemTime};
    /// # fn f(storage: &Storage) -> Result<()> {
    /// storage.set_alarm(SystemTime::now() + Duration::from_secs(60 * 60))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_alarm(&self, at: impl AlarmTime) -> Result<()> {
        wit_alarms::set_alarm(at.epoch_millis()).map_err(storage_err)
    }

    /// Schedules the object's alarm `delay` from now (the host's clock), as `set_alarm`.
    pub fn set_alarm_in(&self, delay: std::time::Duration) -> Result<()> {
        self.set_alarm(std::time::SystemTime::now() + delay)
    }

    /// The pending alarm, in milliseconds since the Unix epoch.
    pub fn get_alarm(&self) -> Result<Option<u64>> {
        wit_alarms::get_alarm().map_err(storage_err)
    }

    /// Cancels the pending alarm, if any.
    pub fn delete_alarm(&self) -> Result<()> {
        wit_alarms::delete_alarm().map_err(storage_err)
    }
}

/// The host's storage limits, from [`Storage::limits`]. Each is configurable on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes (after JSON encoding).
    pub max_value_bytes: usize,
    /// Most keys one host call takes (the `*_many` methods batch by it for you).
    pub max_keys_per_call: usize,
    /// Alarms sooner than this from now are moved to now plus this.
    pub min_alarm_interval: std::time::Duration,
}

/// Values of one type under a key prefix, with ids handed out by a counter stored beside
/// them: `insert` stores a value under the next id. Item keys are the prefix and the id in
/// 20 digits (`item:00000000000000000001`), so they list in id order; the counter is at the
/// prefix followed by `#next`, outside that range.
///
/// ```no_run
/// # use dohost_sdk::{Result, Storage};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Todo { text: String, done: bool }
/// # fn f(storage: &Storage) -> Result<()> {
/// let todos = storage.collection::<Todo>("todo:");
/// let id = todos.insert(&Todo { text: "write tests".into(), done: false })?;
/// let mut todo = todos.get(id)?.expect("just stored");
/// todo.done = true;
/// todos.put(id, &todo)?;
/// for (id, todo) in todos.list()? { println!("{id}: {}", todo.text); }
/// todos.delete(id)?;
/// # Ok(())
/// # }
/// ```
pub struct Collection<T> {
    storage: Storage,
    prefix: String,
    _values: std::marker::PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Collection<T> {
    fn key(&self, id: u64) -> String {
        format!("{}{id:020}", self.prefix)
    }

    fn counter_key(&self) -> String {
        format!("{}#next", self.prefix)
    }

    /// Stores `value` under the next id (1, 2, ...) and returns the id.
    pub fn insert(&self, value: &T) -> Result<u64> {
        let counter = self.counter_key();
        let id = self.storage.get::<u64>(&counter)?.unwrap_or(0) + 1;
        self.storage.transaction(|txn| {
            txn.put(&self.key(id), value)?;
            txn.put(&counter, &id)
        })?;
        Ok(id)
    }

    /// The item with `id`, if stored.
    pub fn get(&self, id: u64) -> Result<Option<T>> {
        self.storage.get(&self.key(id))
    }

    /// Stores `value` under `id` (replacing what was there).
    pub fn put(&self, id: u64, value: &T) -> Result<()> {
        self.storage.put(&self.key(id), value)
    }

    /// Removes the item; true when it existed.
    pub fn delete(&self, id: u64) -> Result<bool> {
        self.storage.delete(&self.key(id))
    }

    /// Every item, in id order.
    pub fn list(&self) -> Result<Vec<(u64, T)>> {
        self.list_after(0, None)
    }

    /// Items with ids above `after`, in id order, at most `limit`: pages of a long list.
    pub fn list_after(&self, after: u64, limit: Option<u32>) -> Result<Vec<(u64, T)>> {
        let mut options = ListOptions::new()
            .start(self.key(after.saturating_add(1)))
            .prefix(self.prefix.clone());
        if let Some(limit) = limit {
            options = options.limit(limit);
        }
        self.storage
            .list::<T>(options)?
            .into_iter()
            .filter_map(|(key, value)| {
                let id = key.strip_prefix(&self.prefix)?.parse().ok()?;
                Some(Ok((id, value)))
            })
            .collect()
    }
}

/// The handle a [`Storage::transaction`] closure receives: every [`Storage`] method, plus
/// [`rollback`](Transaction::rollback).
///
/// ```no_run
/// # use dohost_sdk::{Result, Storage};
/// # fn f(storage: &Storage) -> Result<()> {
/// # let something_wrong = false;
/// storage.transaction(|txn| {
///     txn.put("a", &1)?;
///     if something_wrong { txn.rollback(); }
///     Ok(())
/// })?;
/// # Ok(())
/// # }
/// ```
pub struct Transaction {
    storage: Storage,
    rolled_back: Cell<bool>,
}

impl Transaction {
    /// Discards the transaction's writes when the closure returns, even if it returns `Ok`.
    pub fn rollback(&self) {
        self.rolled_back.set(true);
    }
}

impl std::ops::Deref for Transaction {
    type Target = Storage;

    fn deref(&self) -> &Storage {
        &self.storage
    }
}

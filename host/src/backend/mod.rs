//! The storage backend: what is durable, behind the `Storage` trait (redb embedded by
//! default, PostgreSQL when configured), and the committer that makes writes durable in
//! groups. Knows nothing of wasmtime or of objects' instances.

pub mod commit_error;
pub mod committer;
pub mod migrate;
pub mod open;
pub mod postgres;
pub mod redb;

use crate::config::migration::Migration;
use crate::id::{Namespace, ObjectId, ObjectKey};
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A boxed future borrowing the storage: object reads are async, since a database
/// backend answers over the network.
pub type ReadFuture<'a, T> = BoxFuture<'a, anyhow::Result<T>>;

/// Everything dohost keeps durably: objects' data, alarms and names, classes and the
/// migration history. One implementation per backend; everything above it is unaware of
/// which one runs.
///
/// Object reads are async (awaited by a running event); the rest is called by the
/// committer thread or at start, and blocks.
pub trait Storage: Send + Sync + 'static {
    /// One stored value of an object.
    fn get<'a>(&'a self, object: &'a ObjectKey, key: &'a str) -> ReadFuture<'a, Option<Bytes>>;

    /// The object's stored entries within `[lower, upper)` (user-key bytes; `None` is
    /// unbounded), in byte order or reversed, at most `limit` of them.
    fn scan<'a>(
        &'a self,
        object: &'a ObjectKey,
        lower: &'a [u8],
        upper: Option<&'a [u8]>,
        reverse: bool,
        limit: usize,
    ) -> ReadFuture<'a, Vec<(String, Bytes)>>;

    /// The object's SQL database pages (page index, contents), in order; none when it has no
    /// database.
    fn sql_pages<'a>(&'a self, object: &'a ObjectKey) -> ReadFuture<'a, Vec<(u32, Bytes)>>;

    /// The object's durable alarm.
    fn get_alarm<'a>(&'a self, object: &'a ObjectKey) -> ReadFuture<'a, Option<u64>>;

    /// Objects of namespace `namespace` that hold data or a name, in ID order, after
    /// `after`, at most `limit`: their IDs and names. For operators (the admin API).
    fn list_objects<'a>(
        &'a self,
        namespace: u64,
        after: Option<ObjectId>,
        limit: usize,
    ) -> ReadFuture<'a, Vec<(ObjectId, Option<String>)>>;

    /// The object's size and stored name, and (for a backend whose reads are remote) all
    /// of its data when it is small, read at activation.
    fn load<'a>(&'a self, object: &'a ObjectKey) -> ReadFuture<'a, ObjectMeta>;

    /// Every durable alarm (loaded at start).
    fn all_alarms(&self) -> anyhow::Result<Vec<StoredAlarm>>;

    /// The namespace of `class` in `script`, created on first use (zero-config mode).
    fn ensure_class(&self, script: &str, class: &str) -> anyhow::Result<Namespace>;

    /// The namespace of `class` in `script`, if the class exists.
    fn class(&self, script: &str, class: &str) -> anyhow::Result<Option<Namespace>>;

    /// Applies the migrations of `script` not yet applied, all or nothing, and checks that
    /// every bound `(binding, class)` exists. With `dry_run` nothing is written.
    fn migrate(
        &self,
        script: &str,
        migrations: &[Migration],
        bound: &[(String, String)],
        dry_run: bool,
    ) -> anyhow::Result<MigrationReport>;

    /// Applies the writes in order, atomically and durably (one transaction, one sync);
    /// answers each written object's new size.
    fn commit_batch(&self, batch: &[Write<'_>]) -> Result<HashMap<ObjectKey, u64>, Failure>;

    /// After a failed commit: makes commits possible again if the cause is gone (redb must
    /// be reopened after an I/O error, a database reconnected); an error while it is not.
    fn recover(&self) -> anyhow::Result<()>;

    /// How many shards objects are grouped in for fencing (1 where there is no fencing).
    fn shard_count(&self) -> u32 {
        1
    }

    /// A cluster node takes each `(shard, epoch)` whose holder has no newer epoch;
    /// answers the shards taken. Only shared storage can.
    fn take_shards(&self, _claims: &[(u32, i64)], _owner: &str) -> anyhow::Result<Vec<u32>> {
        anyhow::bail!(
            "this storage cannot be shared by a cluster: run the nodes with --storage \
             postgres://…"
        )
    }

    /// Gives a shard up on this node: its commits are refused from now on.
    fn drop_shard(&self, _shard: u32) {}

    /// Whether the database answers (a round trip, bounded by `storage_timeout_ms`); an
    /// embedded database always does.
    fn probe(&self) -> ReadFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Bytes stored (keys and values) per namespace; blocks. Read when metrics are scraped.
    fn stored_bytes(&self) -> anyhow::Result<HashMap<u64, u64>>;

    /// Writes a consistent copy of everything stored (classes, objects, alarms, migration
    /// history) while writes go on, into a file beside the data that only this user may
    /// read and that is gone from the directory already; answers it open for reading
    /// (its space goes back when it is closed); blocks.
    fn backup(&self) -> anyhow::Result<std::fs::File> {
        anyhow::bail!(
            "this node keeps its data in PostgreSQL: back it up with PostgreSQL's own tools \
             (pg_dump --schema=dohost, or a base backup)"
        )
    }
}

/// Marks a failed read or write whose database could not be reached, or did not answer
/// within `storage_timeout_ms`: nothing is wrong with the data and a retry may pass. It is
/// context on the backend's error: `is_unreachable` finds it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the database is unreachable (a retry may pass)")]
pub struct Unreachable;

/// Whether `e` failed because the database could not be reached (see `Unreachable`).
pub fn is_unreachable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Unreachable>().is_some()
}

/// What a process opening shared storage does with its shards (redb is never shared:
/// it ignores this).
#[derive(Clone, Copy, Debug)]
pub enum Role<'a> {
    /// A single node, named: takes every shard at once (fencing off any process that
    /// held them), and stops if another process takes them.
    Single(&'a str),
    /// A cluster node, named: takes shards one by one as etcd grants them
    /// (`fence_shard`); a shard taken by another node is given up, not fatal.
    Cluster(&'a str),
    /// A tool (`migrate`): takes no shard and cannot commit objects' writes.
    Tool,
}

/// One object's writes within a batch.
pub struct Write<'a> {
    pub object: ObjectKey,
    pub writes: &'a WriteSet,
}

/// Why a batch was not committed (nothing of it was).
#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub error: anyhow::Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No space left (or over a quota): it will work once space is freed.
    DiskFull,
    /// Another I/O failure: `recover` may be needed before the next commit.
    Io,
    /// The database could not be reached before the batch was sent: nothing was applied;
    /// `recover` reconnects.
    Unreachable,
    /// The connection was lost after COMMIT was sent: the batch may or may not have been
    /// applied.
    Unknown,
    /// Another process took over a shard this batch writes (its epoch in `shard_fence` is
    /// newer than ours): nothing was applied, and this single node must stop writing.
    Fenced,
    /// In a cluster, a shard this batch writes is not (or no longer) held by this node:
    /// nothing was applied; the shard is given up here, the node goes on.
    ShardMoved,
    /// The backend refused the batch for another reason.
    Other,
}

/// An object's size and name as stored.
#[derive(Debug, Clone, Default)]
pub struct ObjectMeta {
    /// Bytes stored by the object (keys plus values) as of its last durable commit.
    pub size: u64,
    /// The name its ID was derived from, recorded the first time it was reached by name.
    pub name: Option<String>,
    /// Everything the object stores, when the backend read it all at once (small objects
    /// of a remote backend): reads are then answered from memory.
    pub preload: Option<Preload>,
}

/// A small object's whole durable state, read in one query at activation.
#[derive(Debug, Clone, Default)]
pub struct Preload {
    pub entries: BTreeMap<String, Bytes>,
    pub alarm: Option<u64>,
}

/// A durable alarm, with its pending retry if it is failing.
#[derive(Debug, Clone)]
pub struct StoredAlarm {
    pub object: ObjectKey,
    pub at: u64,
    pub retry: Option<AlarmRetry>,
}

/// A failing alarm's next attempt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AlarmRetry {
    /// Failed attempts so far (the handler sees this as its retry count).
    pub count: u32,
    /// When the next attempt is due (ms since the Unix epoch).
    pub at: u64,
}

/// What `migrate` did (or, in a dry run, would do).
#[derive(Debug, Default)]
pub struct MigrationReport {
    /// Tags already applied before this run.
    pub already_applied: Vec<String>,
    /// One line per step applied now, e.g. "v2: rename class OldCounter to Counter".
    pub steps: Vec<String>,
}

impl std::fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.already_applied.is_empty() {
            writeln!(f, "no migrations applied before")?;
        } else {
            writeln!(f, "already applied: {}", self.already_applied.join(", "))?;
        }
        if self.steps.is_empty() {
            writeln!(f, "nothing to apply")?;
        }
        for s in &self.steps {
            writeln!(f, "{s}")?;
        }
        Ok(())
    }
}

/// Writes of one event or one transaction. `clear` means everything beneath was deleted
/// before the writes in `map` (`delete-all`).
#[derive(Debug, Default, Clone)]
pub struct WriteSet {
    pub clear: bool,
    pub map: BTreeMap<String, Option<Bytes>>,
    /// An upper bound on the bytes these writes add (keys plus values of every put).
    pub added_bytes: u64,
    /// A change to the alarm: `Some(Some(t))` sets it to t, `Some(None)` deletes it (either
    /// also ends a pending retry of the old alarm).
    pub alarm: Option<Option<u64>>,
    /// The alarm failed and runs again as this retry (written by the host, not the guest).
    pub alarm_retry: Option<AlarmRetry>,
    /// The object's name, recorded the first time the object is reached by name.
    pub name: Option<Arc<str>>,
    /// Pages of the object's SQL database written by the event (applied after `clear`,
    /// which removes the database's pages with the keys).
    pub sql: Option<SqlWrites>,
}

/// The page size of every object's SQL database (fixed: a page is one stored value).
pub const SQL_PAGE_SIZE: usize = 4096;

/// An event's changes to its object's SQL database: whole pages, and the file's new length.
#[derive(Debug, Default, Clone)]
pub struct SqlWrites {
    /// Page index → its contents (`PAGE_SIZE` bytes).
    pub pages: BTreeMap<u32, Bytes>,
    /// Pages in the file after these writes: stored pages from this index on are removed.
    pub page_count: u32,
    /// Pages in the file these writes apply on (0 after `clear`): the object's size changes
    /// by the difference, in pages.
    pub pages_before: u32,
}

impl SqlWrites {
    /// How the object's stored bytes change.
    pub fn size_delta(&self) -> i128 {
        (i128::from(self.page_count) - i128::from(self.pages_before)) * SQL_PAGE_SIZE as i128
    }
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        !self.clear
            && self.map.is_empty()
            && self.alarm.is_none()
            && self.alarm_retry.is_none()
            && self.name.is_none()
            && self.sql.is_none()
    }

    /// What these writes say of `key`: `Some(None)` deleted, `Some(Some(v))` written,
    /// `None` untouched.
    pub fn lookup(&self, key: &str) -> Option<Option<&Bytes>> {
        match self.map.get(key) {
            Some(v) => Some(v.as_ref()),
            None if self.clear => Some(None),
            None => None,
        }
    }

    /// Applies `top` (a committed inner transaction) on this set.
    pub fn absorb(&mut self, top: WriteSet) {
        if top.clear {
            self.clear = true;
            self.map = top.map;
        } else {
            self.map.extend(top.map);
        }
        self.added_bytes += top.added_bytes;
        if top.alarm.is_some() {
            self.alarm = top.alarm;
        }
    }
}

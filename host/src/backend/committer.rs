//! Group commit: one thread applies the writes of many events, across objects, in one redb
//! write transaction and one fsync, then releases each event's outputs. After an I/O
//! failure (a full disk) it refuses writes quickly and reopens the database until a commit
//! succeeds again.

use crate::backend::redb::{ALARM_RETRIES, ALARMS, Db, KV, NAMES, OBJECT_SIZES, ObjectPrefix};
use crate::services::objstore::{ObjectShared, WriteSet};
use anyhow::{Context, Result};
use redb::ReadableTable;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Upper bounds on one group commit: past them the batch is cut and the rest waits for the
/// next fsync, so one burst cannot make a single transaction arbitrarily large.
const MAX_BATCH_JOBS: usize = 4096;
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// While storage is failing, how often the committer closes and reopens the database to
/// see whether it works again; batches in between are refused at once. A reopen may have
/// to check the whole file, so it is not tried for every batch.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// Why a commit did not become durable.
#[derive(Debug, Clone)]
pub struct CommitError {
    pub kind: CommitErrorKind,
    pub message: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitErrorKind {
    /// The disk (or quota) is full: nothing was written; it will work once space is freed.
    DiskFull,
    /// The disk failed otherwise, or the database refused the write.
    Failed,
    /// An earlier write of the same object failed, so this one belongs to a discarded
    /// history.
    Stale,
    /// The host is stopping.
    Stopped,
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl CommitError {
    pub fn new(kind: CommitErrorKind, message: impl Into<Arc<str>>) -> Self {
        CommitError {
            kind,
            message: message.into(),
        }
    }
}

pub type CommitResult = Result<(), CommitError>;

/// The writes of one event, on their way to disk.
pub struct CommitJob {
    pub shared: Arc<ObjectShared>,
    pub generation: u64,
    pub seq: u64,
    pub writes: WriteSet,
    pub done: oneshot::Sender<CommitResult>,
}

/// Told, on the committer thread, what became durable (the alarm scheduler listens).
pub trait CommitListener: Send + Sync + 'static {
    /// `object`'s alarm is now `at` (None: deleted), as of a durable commit.
    fn alarm_committed(&self, object: ObjectPrefix, at: Option<u64>);
}

/// Whether writes can be made durable right now, for health checks.
#[derive(Default)]
pub struct StorageHealth {
    // A std Mutex: read or replaced whole, never across an await.
    problem: Mutex<Option<CommitError>>,
}

impl StorageHealth {
    /// None while commits succeed; the failure that stops them otherwise.
    pub fn problem(&self) -> Option<CommitError> {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, problem: Option<CommitError>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }
}

/// Handle to the committer thread. Dropping every clone of the sender stops it.
pub struct Committer {
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    pub fn start(
        db: Db,
        listener: Arc<dyn CommitListener>,
        health: Arc<StorageHealth>,
    ) -> Result<(mpsc::UnboundedSender<CommitJob>, Committer)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("dohost-committer".into())
            .spawn(move || {
                let mut state = State {
                    db,
                    listener,
                    health,
                    failing: None,
                };
                state.run(rx)
            })
            .context("cannot start the committer thread")?;
        Ok((
            tx,
            Committer {
                thread: Some(thread),
            },
        ))
    }

    /// Waits until every queued commit is done (call after dropping all senders).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    db: Db,
    listener: Arc<dyn CommitListener>,
    health: Arc<StorageHealth>,
    /// Set while storage fails: the error, and when the database was last reopened.
    failing: Option<(CommitError, Instant)>,
}

impl State {
    fn run(&mut self, mut rx: mpsc::UnboundedReceiver<CommitJob>) {
        let mut batch = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.writes.added_bytes;
            batch.push(first);
            // Everything that queued up while the previous fsync ran joins this one.
            while batch.len() < MAX_BATCH_JOBS && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        bytes += job.writes.added_bytes;
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
            batch.clear();
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<CommitJob>) {
        // Commits of an object whose earlier commit failed belong to a discarded history.
        let (live, stale): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .partition(|job| job.shared.generation() == job.generation);
        for job in stale {
            let _ = job.done.send(Err(CommitError::new(
                CommitErrorKind::Stale,
                "an earlier write of this object failed to commit; the object was reset",
            )));
        }
        if live.is_empty() {
            return;
        }
        if let Err(e) = self.ready() {
            return fail(live, e);
        }
        match apply(&self.db, &live) {
            Ok(sizes) => {
                if let Some((e, _)) = self.failing.take() {
                    tracing::info!(after = %e, "storage works again: writes are accepted");
                    self.health.set(None);
                }
                for job in live {
                    // The scheduler learns of an alarm only once it is durable, so an alarm
                    // set by an event that never committed cannot fire.
                    if let Some(alarm) = job.writes.alarm {
                        self.listener.alarm_committed(job.shared.prefix, alarm);
                    }
                    let size = sizes.get(&job.shared.prefix).copied().unwrap_or(0);
                    job.shared.finish_commit(job.seq, &job.writes, size);
                    let _ = job.done.send(Ok(()));
                }
            }
            Err(e) => {
                let error = classify(&e);
                if error.kind == CommitErrorKind::DiskFull || is_io(&e) {
                    // Once per failure, not per batch: a full disk can refuse thousands.
                    if self.failing.is_none() {
                        tracing::error!(
                            error = %format!("{e:#}"),
                            "storage failed: writes are refused until it works again \
                             (reads still work; the database is reopened every {:?})",
                            RECOVERY_INTERVAL
                        );
                        self.health.set(Some(error.clone()));
                    }
                    self.failing = Some((error.clone(), Instant::now()));
                } else {
                    tracing::error!(error = %format!("{e:#}"), jobs = live.len(), "group commit failed");
                }
                fail(live, error);
            }
        }
    }

    /// While storage is failing, refuses at once, or (once per `RECOVERY_INTERVAL`)
    /// reopens the database so that the next commit can show whether it works again.
    fn ready(&mut self) -> Result<(), CommitError> {
        let Some((error, last)) = &mut self.failing else {
            return Ok(());
        };
        if last.elapsed() < RECOVERY_INTERVAL {
            return Err(error.clone());
        }
        *last = Instant::now();
        if let Err(e) = self.db.reopen() {
            tracing::debug!(error = %format!("{e:#}"), "reopening the database failed");
            return Err(error.clone());
        }
        Ok(())
    }
}

fn fail(jobs: Vec<CommitJob>, error: CommitError) {
    for job in jobs {
        job.shared.fail_commit(job.generation);
        let _ = job.done.send(Err(error.clone()));
    }
}

/// The redb storage error under an anyhow error, whichever redb call it came from.
fn storage_error(e: &anyhow::Error) -> Option<&redb::StorageError> {
    e.chain().find_map(|c| {
        if let Some(s) = c.downcast_ref::<redb::StorageError>() {
            return Some(s);
        }
        match c.downcast_ref::<redb::CommitError>() {
            Some(redb::CommitError::Storage(s)) => return Some(s),
            Some(_) => return None,
            None => {}
        }
        match c.downcast_ref::<redb::TransactionError>() {
            Some(redb::TransactionError::Storage(s)) => return Some(s),
            Some(_) => return None,
            None => {}
        }
        match c.downcast_ref::<redb::TableError>() {
            Some(redb::TableError::Storage(s)) => Some(s),
            _ => None,
        }
    })
}

/// An I/O failure, or redb's refusal after one: both need the database reopened.
fn is_io(e: &anyhow::Error) -> bool {
    matches!(
        storage_error(e),
        Some(redb::StorageError::Io(_) | redb::StorageError::PreviousIo)
    )
}

/// ENOSPC and EDQUOT: no space left, or over a disk quota.
const DISK_FULL_ERRNOS: [i32; 2] = [28, 122];

fn classify(e: &anyhow::Error) -> CommitError {
    let full = matches!(
        storage_error(e),
        Some(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::StorageFull
                || io.raw_os_error().is_some_and(|n| DISK_FULL_ERRNOS.contains(&n))
    );
    if full {
        CommitError::new(
            CommitErrorKind::DiskFull,
            "the disk is full; nothing was written (free space: writes are accepted again \
             without a restart)",
        )
    } else {
        CommitError::new(
            CommitErrorKind::Failed,
            format!("storage commit failed: {e:#}"),
        )
    }
}

/// Applies the jobs in order in one durable transaction; returns each object's new size.
fn apply(db: &Db, jobs: &[CommitJob]) -> Result<HashMap<ObjectPrefix, u64>> {
    let txn = db.begin_write()?;
    let mut sizes: HashMap<ObjectPrefix, u64> = HashMap::new();
    {
        let mut kv = txn.open_table(KV)?;
        let mut size_table = txn.open_table(OBJECT_SIZES)?;
        let mut alarms = txn.open_table(ALARMS)?;
        let mut retries = txn.open_table(ALARM_RETRIES)?;
        let mut names = txn.open_table(NAMES)?;
        for job in jobs {
            let prefix = job.shared.prefix;
            let size = match sizes.get(&prefix) {
                Some(s) => *s,
                None => size_table
                    .get(prefix.0.as_slice())?
                    .map(|v| v.value())
                    .unwrap_or(0),
            };
            let mut size = size as i128;
            if job.writes.clear {
                let lo = prefix.0.to_vec();
                let hi = prefix.end();
                kv.retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false)?;
                size = 0;
            }
            for (key, value) in &job.writes.map {
                let full = prefix.key(key);
                let old = match value {
                    Some(v) => kv
                        .insert(full.as_slice(), v.as_ref())?
                        .map(|o| o.value().len()),
                    None => kv.remove(full.as_slice())?.map(|o| o.value().len()),
                };
                if let Some(old_len) = old {
                    size -= (key.len() + old_len) as i128;
                }
                if let Some(v) = value {
                    size += (key.len() + v.len()) as i128;
                }
            }
            match job.writes.alarm {
                Some(Some(at)) => {
                    alarms.insert(prefix.0.as_slice(), at)?;
                }
                Some(None) => {
                    alarms.remove(prefix.0.as_slice())?;
                }
                None => {}
            }
            // A new (or deleted) alarm ends any retry of the old one.
            match (job.writes.alarm, job.writes.alarm_retry) {
                (_, Some(retry)) => {
                    retries.insert(prefix.0.as_slice(), retry.encode().as_slice())?;
                }
                (Some(_), None) => {
                    retries.remove(prefix.0.as_slice())?;
                }
                (None, None) => {}
            }
            if let Some(name) = &job.writes.name {
                names.insert(prefix.0.as_slice(), name.as_ref())?;
            }
            let size = size.max(0) as u64;
            if size == 0 {
                size_table.remove(prefix.0.as_slice())?;
            } else {
                size_table.insert(prefix.0.as_slice(), size)?;
            }
            sizes.insert(prefix, size);
        }
    }
    txn.commit().context("fsync of the group commit")?;
    Ok(sizes)
}

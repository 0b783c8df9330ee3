//! Group commit: one thread applies the writes of many events, across objects, in one redb
//! write transaction and one fsync, then releases each event's outputs.

use crate::db::{ALARMS, Db, KV, OBJECT_SIZES, ObjectPrefix};
use crate::objstore::{ObjectShared, WriteSet};
use crate::scheduler::Scheduler;
use anyhow::{Context, Result};
use redb::ReadableTable;
use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// Upper bounds on one group commit: past them the batch is cut and the rest waits for the
/// next fsync, so one burst cannot make a single transaction arbitrarily large.
const MAX_BATCH_JOBS: usize = 4096;
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// Why a commit did not become durable.
pub type CommitResult = Result<(), Arc<str>>;

/// The writes of one event, on their way to disk.
pub struct CommitJob {
    pub shared: Arc<ObjectShared>,
    pub generation: u64,
    pub seq: u64,
    pub writes: WriteSet,
    pub done: oneshot::Sender<CommitResult>,
}

/// Handle to the committer thread. Dropping every clone of the sender stops it.
pub struct Committer {
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    pub fn start(
        db: Db,
        scheduler: Arc<Scheduler>,
    ) -> Result<(mpsc::UnboundedSender<CommitJob>, Committer)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("dohost-committer".into())
            .spawn(move || run(db, scheduler, rx))
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

fn run(db: Db, scheduler: Arc<Scheduler>, mut rx: mpsc::UnboundedReceiver<CommitJob>) {
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
        commit_batch(&db, &scheduler, &mut batch);
        batch.clear();
    }
}

fn commit_batch(db: &Db, scheduler: &Scheduler, batch: &mut Vec<CommitJob>) {
    // Commits of an object whose earlier commit failed belong to a discarded history.
    let (live, stale): (Vec<_>, Vec<_>) = batch
        .drain(..)
        .partition(|job| job.shared.generation() == job.generation);
    for job in stale {
        let _ = job.done.send(Err(Arc::from(
            "an earlier write of this object failed to commit; the object was reset",
        )));
    }
    if live.is_empty() {
        return;
    }
    match apply(db, &live) {
        Ok(sizes) => {
            for job in live {
                // The scheduler learns of an alarm only once it is durable, so an alarm set
                // by an event that never committed cannot fire.
                if let Some(alarm) = job.writes.alarm {
                    scheduler.set(job.shared.prefix, alarm);
                }
                let size = sizes.get(&job.shared.prefix).copied().unwrap_or(0);
                job.shared.finish_commit(job.seq, &job.writes, size);
                let _ = job.done.send(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), jobs = live.len(), "group commit failed");
            let msg: Arc<str> = Arc::from(format!("storage commit failed: {e:#}"));
            for job in live {
                job.shared.fail_commit(job.generation);
                let _ = job.done.send(Err(msg.clone()));
            }
        }
    }
}

/// Applies the jobs in order in one durable transaction; returns each object's new size.
fn apply(db: &Db, jobs: &[CommitJob]) -> Result<HashMap<ObjectPrefix, u64>> {
    let txn = db.database().begin_write()?;
    let mut sizes: HashMap<ObjectPrefix, u64> = HashMap::new();
    {
        let mut kv = txn.open_table(KV)?;
        let mut size_table = txn.open_table(OBJECT_SIZES)?;
        let mut alarms = txn.open_table(ALARMS)?;
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

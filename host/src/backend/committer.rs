//! Group commit: one thread applies the writes of many events, across objects, in one
//! backend transaction and one sync, then releases each event's outputs. After an I/O
//! failure (a full disk, a lost database) it refuses writes quickly and asks the backend to
//! recover until a commit succeeds again; once fenced by another node it refuses for good.

use super::commit_error;
use crate::backend::{FailureKind, Storage, Write, WriteSet};
use crate::id::ObjectKey;
use anyhow::{Context, Result};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Upper bounds on one group commit: past them the batch is cut and the rest waits for the
/// next fsync, so one burst cannot make a single transaction arbitrarily large.
const MAX_BATCH_JOBS: usize = 4096;
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// While storage is failing, how often the committer asks the backend to recover (redb:
/// close and reopen the database) to see whether it works again; batches in between are
/// refused at once. A recovery may have to check the whole file, so it is not tried for
/// every batch.
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// While storage fails and no write comes, how often the committer looks at the clock.
const FAILING_POLL: Duration = Duration::from_millis(100);

pub use super::commit_error::{CommitError, CommitErrorKind};

pub type CommitResult = Result<(), CommitError>;

/// The object a commit belongs to, as the committer sees it: its in-flight writes, which
/// become durable (or are discarded) when the batch ends.
pub trait CommitTarget: Send + Sync + 'static {
    fn object(&self) -> ObjectKey;
    /// Bumped by a failed commit: jobs of an older generation are refused.
    fn generation(&self) -> u64;
    /// Commit `seq` is durable; the object now stores `committed_bytes`.
    fn finish_commit(&self, seq: u64, writes: &WriteSet, committed_bytes: u64);
    /// A commit of `generation` failed: everything in flight is dropped.
    fn fail_commit(&self, generation: u64);
}

/// The writes of one event, on their way to disk.
pub struct CommitJob {
    pub target: Arc<dyn CommitTarget>,
    pub generation: u64,
    pub seq: u64,
    pub writes: WriteSet,
    pub done: oneshot::Sender<CommitResult>,
}

/// Told, on the committer thread, what became durable (the alarm scheduler listens).
pub trait CommitListener: Send + Sync + 'static {
    /// `object`'s alarm is now `at` (None: deleted), as of a durable commit.
    fn alarm_committed(&self, object: ObjectKey, at: Option<u64>);
    /// Another node fenced this one off its storage: it must stop serving.
    fn fenced(&self, why: &str);
    /// A batch of `writes` write sets was committed (durable) in `took`.
    fn batch_committed(&self, _writes: usize, _took: std::time::Duration) {}
}

/// Whether writes can be made durable right now, and whether the database answers, for
/// health checks (and a cluster node, which gives its shards up past its lease).
#[derive(Default)]
pub struct StorageHealth {
    // std Mutexes: read or replaced whole, never across an await.
    problem: Mutex<Option<CommitError>>,
    /// Set while the database does not answer `Storage::probe`: why, and since when.
    unreachable: Mutex<Option<(String, Instant)>>,
}

impl StorageHealth {
    /// Records the outcome of a probe sent at `sent` (see `probe`): a first failure dates
    /// the outage from when its probe was sent, not from when it gave up.
    pub fn probed(&self, outcome: Result<()>, sent: Instant) {
        let mut u = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
        match (outcome, u.as_mut()) {
            (Ok(()), _) => *u = None,
            (Err(e), Some((why, _))) => *why = format!("{e:#}"),
            (Err(e), None) => *u = Some((format!("{e:#}"), sent)),
        }
    }

    /// Why the database does not answer, and since when; None while it does.
    pub fn unreachable(&self) -> Option<(String, Instant)> {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

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
        storage: Arc<dyn Storage>,
        listener: Arc<dyn CommitListener>,
        health: Arc<StorageHealth>,
    ) -> Result<(mpsc::UnboundedSender<CommitJob>, Committer)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("dohost-committer".into())
            .spawn(move || {
                let mut state = State {
                    storage,
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
    storage: Arc<dyn Storage>,
    listener: Arc<dyn CommitListener>,
    health: Arc<StorageHealth>,
    /// Set while storage fails: the error, and when the database was last reopened.
    failing: Option<(CommitError, Instant)>,
}

impl State {
    fn run(&mut self, mut rx: mpsc::UnboundedReceiver<CommitJob>) {
        let mut batch = Vec::new();
        loop {
            let first = if self.failing.is_some() {
                // While storage fails, look again every so often even when no write comes,
                // so that health recovers once space is freed.
                match rx.try_recv() {
                    Ok(job) => job,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        std::thread::sleep(FAILING_POLL);
                        self.check_recovered();
                        continue;
                    }
                }
            } else {
                match rx.blocking_recv() {
                    Some(job) => job,
                    None => break,
                }
            };
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
            .partition(|job| job.target.generation() == job.generation);
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
        let writes: Vec<Write<'_>> = live
            .iter()
            .map(|job| Write {
                object: job.target.object(),
                writes: &job.writes,
            })
            .collect();
        let started = std::time::Instant::now();
        let result = self.storage.commit_batch(&writes);
        let count = writes.len();
        drop(writes);
        match result {
            Ok(sizes) => {
                self.listener.batch_committed(count, started.elapsed());
                if let Some((e, _)) = self.failing.take() {
                    tracing::info!(after = %e, "storage works again: writes are accepted");
                    self.health.set(None);
                }
                for job in live {
                    let object = job.target.object();
                    // The scheduler learns of an alarm only once it is durable, so an alarm
                    // set by an event that never committed cannot fire.
                    if let Some(alarm) = job.writes.alarm {
                        self.listener.alarm_committed(object, alarm);
                    }
                    let size = sizes.get(&object).copied().unwrap_or(0);
                    job.target.finish_commit(job.seq, &job.writes, size);
                    let _ = job.done.send(Ok(()));
                }
            }
            Err(failure) => {
                let error = commit_error::of(&failure);
                if failure.kind == FailureKind::ShardMoved {
                    // Only this shard: the node and its other shards go on.
                    tracing::warn!(error = %format!("{:#}", failure.error), "a shard moved away");
                } else if failure.kind == FailureKind::Fenced {
                    // Not a failure to recover from: another node owns the data now.
                    self.listener.fenced(&error.message);
                    self.health.set(Some(error.clone()));
                    self.failing = Some((error.clone(), Instant::now()));
                } else if failure.kind == FailureKind::Other {
                    tracing::error!(error = %format!("{:#}", failure.error), jobs = live.len(), "group commit failed");
                } else {
                    // Once per failure, not per batch: a full disk can refuse thousands.
                    if self.failing.is_none() {
                        tracing::error!(
                            error = %format!("{:#}", failure.error),
                            "storage failed: writes are refused until it works again \
                             (reads still work; recovery is tried every {:?})",
                            RECOVERY_INTERVAL
                        );
                        self.health.set(Some(error.clone()));
                    }
                    self.failing = Some((error.clone(), Instant::now()));
                }
                fail(live, error);
            }
        }
    }

    /// While failing and idle: once the backend recovers, an empty commit shows whether
    /// writes work again.
    fn check_recovered(&mut self) {
        if self.ready().is_err() {
            return;
        }
        match self.storage.commit_batch(&[]) {
            Ok(_) => {
                if let Some((e, _)) = self.failing.take() {
                    tracing::info!(after = %e, "storage works again: writes are accepted");
                    self.health.set(None);
                }
            }
            Err(_) => {
                if let Some((_, last)) = &mut self.failing {
                    *last = Instant::now();
                }
            }
        }
    }

    /// While storage is failing, refuses at once, or (once per `RECOVERY_INTERVAL`)
    /// reopens the database so that the next commit can show whether it works again.
    fn ready(&mut self) -> Result<(), CommitError> {
        let Some((error, last)) = &mut self.failing else {
            return Ok(());
        };
        if error.kind == CommitErrorKind::Fenced || last.elapsed() < RECOVERY_INTERVAL {
            return Err(commit_error::refusal(error));
        }
        *last = Instant::now();
        if let Err(e) = self.storage.recover() {
            tracing::debug!(error = %format!("{e:#}"), "storage has not recovered yet");
            return Err(commit_error::refusal(error));
        }
        Ok(())
    }
}

/// How often `probe` asks the backend whether its database answers.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Asks the backend every `PROBE_INTERVAL` whether its database answers (each probe
/// bounded by `storage_timeout_ms`), so that health says 503 while it does not even when
/// no write comes, and a cluster node can tell how long it has been cut off. Ends when
/// `stop` turns true or the storage is dropped (held only during a probe, so that a
/// stopped host closes its database at once).
pub async fn probe(
    storage: std::sync::Weak<dyn Storage>,
    health: Arc<StorageHealth>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Some(db) = storage.upgrade() else { return };
        let sent = Instant::now();
        let outcome = tokio::select! {
            outcome = db.probe() => outcome,
            _ = stop.wait_for(|s| *s) => return,
        };
        drop(db);
        let was = health.unreachable().is_some();
        match &outcome {
            Err(e) if !was => {
                tracing::warn!(error = %format!("{e:#}"), "the database does not answer")
            }
            Ok(()) if was => tracing::info!("the database answers again"),
            _ => {}
        }
        health.probed(outcome, sent);
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

fn fail(jobs: Vec<CommitJob>, error: CommitError) {
    for job in jobs {
        job.target.fail_commit(job.generation);
        let _ = job.done.send(Err(error.clone()));
    }
}

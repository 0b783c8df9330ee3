//! The live-object registry: the classes, and one actor per object ID, spawned by the first
//! event for it and removed when it has been idle long enough. Start-up, calls between
//! objects, the worker and placement are its other rooms.

mod calls;
mod cluster;
mod deliver;
pub mod deploy;
mod dispatch;
pub mod edit;
pub mod inspect;
mod placement;
pub mod remote;
mod start;
mod worker;

pub use dispatch::{Answer, Dispatch};
pub use placement::{ClusterPlacement, LocalPlacement, Owner, Placement};

use crate::backend::committer::{CommitError, Committer, StorageHealth};
use crate::config::Limits;
use crate::id::ObjectKey;
use crate::object::{ActorCell, ActorStorage, Class, Event, EventError, ObjectEnv, Registry};
use crate::services::calls::CallGraph;
use crate::services::metrics::Metrics;
use crate::services::scheduler::{Clock, Scheduler};
use crate::services::sockets::Sockets;
use crate::services::streams::Streams;
use crate::wasm::bindings::worker::WorkerPre;
use crate::wasm::engine::EpochTicker;
use crate::wasm::state::WorkerState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, watch};

struct ActorHandle {
    tx: mpsc::UnboundedSender<Event>,
    actor_id: u64,
    cell: Arc<ActorCell>,
}

impl ActorHandle {
    /// Queues an event, counted before it is queued so the actor cannot finish it first
    /// (the count is what keeps inline events behind queued ones).
    fn send(&self, event: Event) -> Result<(), mpsc::error::SendError<Event>> {
        self.cell.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.send(event).inspect_err(|_| {
            self.cell.queued.fetch_sub(1, Ordering::AcqRel);
        })
    }
}

/// The threads and tasks that run beside the actors, stopped together at shutdown.
struct Background {
    committer: Committer,
    _ticker: EpochTicker,
    stop_scheduler: watch::Sender<bool>,
}

/// Where a request comes from: the HTTP edge (which may run the event on its own task when
/// the object is idle), or a call from another object or the worker (always queued).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Via {
    Edge,
    Call,
}

/// Why a request got no response to send.
#[derive(Debug)]
pub enum FetchError {
    /// The event failed, or no instance could be made.
    Event(EventError),
    /// The event ran, but its writes could not be made durable: its answer is withheld.
    Commit(CommitError),
}

pub struct Runtime {
    classes: HashMap<String, Arc<Class>>,
    by_namespace: HashMap<u64, Arc<Class>>,
    /// What every actor is handed.
    env: Arc<ObjectEnv>,
    calls: Arc<CallGraph>,
    placement: Arc<dyn Placement>,
    // A std Mutex: held only to look up, insert or remove an entry and to queue an event
    // (an unbounded send never waits), never across an await.
    actors: Mutex<HashMap<ObjectKey, ActorHandle>>,
    next_actor: AtomicU64,
    /// Taken at shutdown: no new actor starts after that.
    storage: RwLock<Option<ActorStorage>>,
    alive: tokio::sync::Mutex<mpsc::Receiver<()>>,
    background: Mutex<Option<Background>>,
    storage_health: Arc<StorageHealth>,
    /// Set once another process took over the storage (its shards' epochs).
    fenced: tokio::sync::watch::Receiver<Option<Arc<str>>>,
    /// A cluster node's membership and coordinator, left at shutdown.
    cluster: Mutex<Option<cluster::ClusterNode>>,
    /// Shards objects are grouped in (storage's fencing unit; placement's too).
    shard_count: u32,
    /// What a request forwarded by another node of the cluster must carry.
    cluster_secret: Option<String>,
    worker: Option<WorkerPre<WorkerState>>,
    vars: Vec<(String, String)>,
    /// What compiles a class's new code (a deploy): the linker, and where compiled code is
    /// cached.
    linker: wasmtime::component::Linker<crate::wasm::state::ObjectState>,
    cache_dir: std::path::PathBuf,
    /// Each binding's component file, and a hash of the code it runs now (a reload
    /// deploys the files that changed).
    deployed: Mutex<HashMap<String, (std::path::PathBuf, [u8; 32])>>,
}

impl Runtime {
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.env.clock
    }

    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.env.scheduler
    }

    /// Alarm handlers that completed successfully since start.
    pub fn alarm_runs(&self) -> u64 {
        self.env.metrics.alarm_runs.get()
    }

    /// Alarm attempts that failed (each retry counts) since start.
    pub fn alarm_failures(&self) -> u64 {
        self.env.metrics.alarm_failures.get()
    }

    /// HTTP requests whose event ran on the request's own task (the object was idle with
    /// nothing queued) since start; the others went through the mailbox.
    pub fn inline_events(&self) -> u64 {
        self.env.metrics.inline_events.get()
    }

    /// Long guest events (past their first slices) holding a turn, and waiting for one.
    pub fn long_events(&self) -> (usize, usize) {
        let cpu = &self.env.shared.cpu;
        (cpu.running(), cpu.waiting())
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.env.metrics
    }

    /// Every metric in Prometheus' text format, the gauges read now (storage's sizes
    /// included: this blocks on storage).
    pub fn render_metrics(&self) -> String {
        let m = &self.env.metrics;
        match self.db().map(|db| db.stored_bytes()) {
            Some(Ok(sizes)) => {
                for class in self.classes.values() {
                    let bytes = sizes.get(&class.namespace.number).copied().unwrap_or(0);
                    m.storage_bytes
                        .with_label_values(&[class.binding.as_str()])
                        .set(bytes as i64);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "metrics: cannot read storage sizes")
            }
            None => {}
        }
        m.live_instances.set(self.env.slots.live() as i64);
        m.memory_budget_used
            .set(self.env.shared.memory.used() as i64);
        let (running, waiting) = self.long_events();
        m.long_events_running.set(running as i64);
        m.long_events_waiting.set(waiting as i64);
        m.websockets_open.set(self.env.sockets.count() as i64);
        m.streams_open.set(self.env.streams.count() as i64);
        m.calls_waiting.set(self.calls.waiting() as i64);
        let queued: usize = self.lock_actors().values().map(|h| h.cell.queued()).sum();
        m.mailbox_events.set(queued as i64);
        m.render()
    }

    /// Instances alive right now (slots of `max_live_objects` in use).
    pub fn live_instances(&self) -> usize {
        self.env.slots.live()
    }

    /// None while writes can be made durable; otherwise why not (the disk is full, ...).
    pub fn storage_health(&self) -> Option<String> {
        if let Some(e) = self.storage_health.problem() {
            return Some(e.to_string());
        }
        self.storage_health.unreachable().map(|(why, since)| {
            format!(
                "the database has not answered for {:.1} s: {why}",
                since.elapsed().as_secs_f64()
            )
        })
    }

    /// Resolves once another process has fenced this one off its storage, with why: the
    /// host must then stop serving (its writes are refused).
    pub async fn fenced(&self) -> Arc<str> {
        let mut rx = self.fenced.clone();
        let why = match rx.wait_for(|f| f.is_some()).await {
            Ok(why) => why.clone(),
            Err(_) => None,
        };
        match why {
            Some(why) => why,
            // The committer is gone: never fenced.
            None => std::future::pending().await,
        }
    }

    /// Every open WebSocket.
    pub fn sockets(&self) -> &Arc<Sockets> {
        &self.env.sockets
    }

    /// Every open stream.
    pub fn streams(&self) -> &Arc<Streams> {
        &self.env.streams
    }

    pub fn limits(&self) -> &Limits {
        &self.env.limits
    }

    pub fn class(&self, binding: &str) -> Option<&Arc<Class>> {
        self.classes.get(binding)
    }

    pub fn bindings(&self) -> Vec<&str> {
        let mut b: Vec<&str> = self.classes.keys().map(String::as_str).collect();
        b.sort();
        b
    }

    /// True when a worker component receives every public request.
    pub fn has_worker(&self) -> bool {
        self.worker.is_some()
    }

    /// How many objects have an actor right now.
    pub fn live_objects(&self) -> usize {
        self.lock_actors().len()
    }

    /// The storage, until shutdown takes it.
    fn db(&self) -> Option<Arc<dyn crate::backend::Storage>> {
        self.storage
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.db.clone())
    }

    fn db_shard_count(&self) -> u32 {
        self.shard_count
    }

    fn lock_actors(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, ActorHandle>> {
        self.actors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the object's instance now if it is idle (an admin and test operation: the
    /// next event rebuilds it; sockets stay open). False when it has no actor.
    pub fn evict(&self, binding: &str, name: &str) -> bool {
        let Some(class) = self.class(binding) else {
            return false;
        };
        self.evict_key(&ObjectKey {
            namespace: class.namespace.number,
            id: class.namespace.id_key.id_from_name(name),
        })
    }

    /// `evict`, for the object at `key`.
    pub(super) fn evict_key(&self, key: &ObjectKey) -> bool {
        match self.lock_actors().get(key) {
            Some(handle) => handle.send(Event::Evict).is_ok(),
            None => false,
        }
    }

    /// Stops every actor (each finishes its queued events and waits for its commits),
    /// then the committer and the epoch thread. The database is closed when this returns.
    pub async fn shutdown(&self) {
        if let Some(b) = self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = b.stop_scheduler.send(true);
        }
        let storage = self
            .storage
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let actors: Vec<ActorHandle> = self.lock_actors().drain().map(|(_, h)| h).collect();
        drop(actors);
        drop(storage);
        // Every actor holds an `alive` sender; recv returns None once all are gone.
        let _ = self.alive.lock().await.recv().await;
        // Taken only now: until every actor is gone the epoch must keep ticking, or a guest
        // still running (past the shutdown deadline) could never be interrupted.
        let background = self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(b) = background {
            let committer = b.committer;
            tokio::task::spawn_blocking(move || committer.join())
                .await
                .ok();
        }
        // Everything is durable: hand the shards over at once rather than when the lease
        // expires.
        let node = self
            .cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(node) = node {
            node.coordinator.abort();
            if let Err(e) = node.membership.leave().await {
                tracing::warn!(error = %format!("{e:#}"), "cannot leave the cluster cleanly; its lease will expire");
            }
        }
    }
}

impl Registry for Runtime {
    fn remove_if_idle(
        &self,
        key: &ObjectKey,
        actor_id: u64,
        rx: &mut mpsc::UnboundedReceiver<Event>,
    ) -> bool {
        let mut actors = self.lock_actors();
        if !rx.is_empty() {
            return false;
        }
        if actors.get(key).is_some_and(|h| h.actor_id == actor_id) {
            actors.remove(key);
        }
        rx.close();
        true
    }
}

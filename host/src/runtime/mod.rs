//! The live-object registry: the classes, and one actor per object ID, spawned by the first
//! event for it and removed when it has been idle long enough. Start-up, calls between
//! objects, the worker and placement are its other rooms.

mod calls;
mod placement;
mod start;
mod worker;

pub use placement::{LocalPlacement, Owner, Placement};

use crate::backend::committer::{CommitError, Committer, StorageHealth};
use crate::config::Limits;
use crate::id::{ObjectId, ObjectKey};
use crate::object::{
    Actor, ActorCell, ActorStorage, Class, Event, EventError, ObjectEnv, Outcome, Registry,
};
use crate::services::calls::CallGraph;
use crate::services::scheduler::{Clock, Scheduler};
use crate::services::sockets::{Sockets, Upgrade};
use crate::wasm::bindings::types as wit;
use crate::wasm::bindings::worker::WorkerPre;
use crate::wasm::engine::{EpochTicker, WorkerState};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};

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
    worker: Option<WorkerPre<WorkerState>>,
    vars: Vec<(String, String)>,
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
        self.env.counters.alarm_runs.load(Ordering::Relaxed)
    }

    /// Alarm attempts that failed (each retry counts) since start.
    pub fn alarm_failures(&self) -> u64 {
        self.env.counters.alarm_failures.load(Ordering::Relaxed)
    }

    /// HTTP requests whose event ran on the request's own task (the object was idle with
    /// nothing queued) since start; the others went through the mailbox.
    pub fn inline_events(&self) -> u64 {
        self.env.counters.inline_events.load(Ordering::Relaxed)
    }

    /// Instances alive right now (slots of `max_live_objects` in use).
    pub fn live_instances(&self) -> usize {
        self.env.slots.live()
    }

    /// None while writes can be made durable; otherwise why not (the disk is full, ...).
    pub fn storage_health(&self) -> Option<String> {
        self.storage_health.problem().map(|e| e.to_string())
    }

    /// Every open WebSocket.
    pub fn sockets(&self) -> &Arc<Sockets> {
        &self.env.sockets
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

    fn lock_actors(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, ActorHandle>> {
        self.actors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the object's instance now if it is idle (an admin and test operation: the
    /// next event rebuilds it; sockets stay open). False when it has no actor.
    pub fn evict(&self, binding: &str, name: &str) -> bool {
        let Some(class) = self.class(binding) else {
            return false;
        };
        let key = ObjectKey {
            namespace: class.namespace.number,
            id: class.namespace.id_key.id_from_name(name),
        };
        match self.lock_actors().get(&key) {
            Some(handle) => handle.send(Event::Evict).is_ok(),
            None => false,
        }
    }

    /// Delivers an HTTP request to the object and answers once its response may leave: the
    /// output gate is here, so no caller can answer before the writes behind the response
    /// are durable. A request via the edge that finds the object live, idle and with
    /// nothing queued runs on the caller's task (see `ActorCell`).
    pub async fn fetch(
        self: &Arc<Self>,
        class: &Arc<Class>,
        id: ObjectId,
        name: Option<String>,
        request: wit::Request,
        upgrade: bool,
        via: Via,
    ) -> Result<(wit::Response, Option<Upgrade>), FetchError> {
        let outcome = self.run_fetch(class, id, name, request, upgrade, via).await;
        let accepted = outcome.accepted;
        let forget = |a: Option<Upgrade>| {
            if let Some(a) = a {
                self.env.sockets.remove(a.socket.id);
            }
        };
        if let Some(durable) = outcome.durable
            && let Err(e) = durable.await
        {
            forget(accepted);
            return Err(FetchError::Commit(e));
        }
        match outcome.result {
            Ok(response) => Ok((response, accepted)),
            Err(e) => {
                forget(accepted);
                Err(FetchError::Event(e))
            }
        }
    }

    /// Runs the request's event; its outcome is not durable yet.
    async fn run_fetch(
        self: &Arc<Self>,
        class: &Arc<Class>,
        id: ObjectId,
        name: Option<String>,
        request: wit::Request,
        upgrade: bool,
        via: Via,
    ) -> Outcome {
        let key = ObjectKey {
            namespace: class.namespace.number,
            id,
        };
        let cell = match via {
            Via::Edge => self.lock_actors().get(&key).map(|h| h.cell.clone()),
            Via::Call => None,
        };
        let request = match cell {
            Some(cell) => match cell.try_fetch_inline(request, upgrade).await {
                Ok(rx) => {
                    self.env
                        .counters
                        .inline_events
                        .fetch_add(1, Ordering::Relaxed);
                    // Not held while waiting: a deferred answer's sender lives in the
                    // actor, which must be free to go (and drop it) when its task ends.
                    drop(cell);
                    return rx.await.unwrap_or_else(|_| stopped());
                }
                Err(request) => request,
            },
            None => request,
        };
        let (reply, rx) = oneshot::channel();
        let event = Event::Fetch {
            request: Box::new(request),
            upgrade,
            reply,
        };
        if let Err(e) = self.send(class, id, name, event) {
            return Outcome::failed(e);
        }
        rx.await.unwrap_or_else(|_| stopped())
    }

    /// Queues an event (a socket's message, an alarm) for the object at `key`.
    pub fn deliver(self: &Arc<Self>, key: ObjectKey, event: Event) -> Result<(), EventError> {
        let class = self
            .by_namespace
            .get(&key.namespace)
            .cloned()
            .ok_or_else(|| {
                EventError::Unavailable(format!(
                    "no class of namespace {} is served here",
                    key.namespace
                ))
            })?;
        self.send(&class, key.id, None, event)
    }

    /// Queues `event` for the object's actor, spawning the actor if there is none. All
    /// sends happen under the registry lock, which is what makes eviction race-free: an
    /// actor removes itself only while holding the lock and seeing an empty mailbox.
    fn send(
        self: &Arc<Self>,
        class: &Arc<Class>,
        id: ObjectId,
        name: Option<String>,
        event: Event,
    ) -> Result<(), EventError> {
        let key = ObjectKey {
            namespace: class.namespace.number,
            id,
        };
        if let Owner::Elsewhere(node) = self.placement.owner(&key) {
            return Err(EventError::Unavailable(format!(
                "this object is served by node {node}"
            )));
        }
        let mut actors = self.lock_actors();
        let event = match actors.get(&key) {
            Some(handle) => match handle.send(event) {
                Ok(()) => return Ok(()),
                // The actor died (its task panicked): replace it.
                Err(mpsc::error::SendError(event)) => {
                    actors.remove(&key);
                    event
                }
            },
            None => event,
        };
        let storage = self
            .storage
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| EventError::Unavailable("the host is shutting down".to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Actor::new(self.env.clone(), storage, class.clone(), key, name);
        let cell = Arc::new(ActorCell::new(actor));
        let actor_id = self.next_actor.fetch_add(1, Ordering::Relaxed);
        let handle = ActorHandle {
            tx,
            actor_id,
            cell: cell.clone(),
        };
        let _ = handle.send(event);
        actors.insert(key, handle);
        drop(actors);
        let registry: Arc<dyn Registry> = self.clone();
        tokio::spawn(Actor::run(cell, rx, actor_id, registry));
        Ok(())
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

/// The outcome of a request whose object went away without answering it.
fn stopped() -> Outcome {
    Outcome::failed(EventError::Failed(
        "the object stopped before answering".to_string(),
    ))
}

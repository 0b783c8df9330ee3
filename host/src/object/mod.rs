//! One actor per live object: a task that owns the object's wasmtime store and runs its
//! events from a mailbox one at a time, to the end, then hands their writes to the
//! committer and their outputs back gated on durability.

use crate::backend::committer::CommitTarget;
use crate::backend::committer::{CommitError, CommitErrorKind, CommitJob, CommitResult};
use crate::backend::{ObjectMeta, Storage};
use crate::config::Limits;
use crate::id::{Namespace, ObjectKey};
use crate::services::objstore::StorageLimits;
use crate::services::objstore::{InflightWrites, ObjectStore};
use crate::services::scheduler::{Clock, Scheduler};
use crate::services::slots::Slots;
use crate::services::sockets::{Sockets, Upgrade};
use crate::wasm::bindings::ObjectPre;
use crate::wasm::bindings::{Object, types as wit};
use crate::wasm::engine::{
    CpuLimitExceeded, MemoryLimitExceeded, ObjectState, new_store, start_event,
};
use crate::wasm::objects::ObjectCalls;
use crate::wasm::storage::StorageCtx;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

/// Resolves when an event's writes (and every earlier write of its object) are durable.
pub type Durable = Shared<BoxFuture<'static, CommitResult>>;

/// Something for an object to handle. Every variant is at most two words plus a tag:
/// each mailbox allocates a block of 32 events up front, per live object.
pub enum Event {
    Fetch {
        request: Box<wit::Request>,
        /// The request asks for a WebSocket upgrade the host can complete.
        upgrade: bool,
        reply: oneshot::Sender<Outcome>,
    },
    /// A message, close or error on one of the object's WebSockets.
    Socket(Box<SocketEvent>),
    /// Drop the instance now if idle (admin, tests); the actor and sockets stay.
    Evict,
    /// The object's alarm came due; `retry` counts earlier failed attempts.
    Alarm { retry: u32 },
}

/// Retries of a failing alarm before it is given up, and the first retry's delay (each
/// further retry waits twice as long).
pub const MAX_ALARM_RETRIES: u32 = 6;
pub const ALARM_RETRY_BASE_MS: u64 = 2000;

/// How an event ended. Its output may be released only once `durable` resolves Ok.
pub struct Outcome {
    pub result: Result<wit::Response, EventError>,
    pub durable: Option<Durable>,
    /// The WebSocket the fetch accepted (or an object it called accepted for it), for the
    /// HTTP edge to complete the upgrade.
    pub accepted: Option<Upgrade>,
}

impl Outcome {
    pub fn failed(e: EventError) -> Self {
        Outcome {
            result: Err(e),
            durable: None,
            accepted: None,
        }
    }
}

/// Why an event produced no response.
#[derive(Debug, Clone)]
pub enum EventError {
    /// The guest trapped (panic, CPU or memory limit, ...); its writes were dropped.
    Failed(String),
    /// No instance could be made right now (too many live objects, shutting down).
    Unavailable(String),
}

/// One object class, ready to instantiate.
pub struct Class {
    pub binding: String,
    pub class_name: String,
    pub namespace: Namespace,
    pub vars: Vec<(String, String)>,
    pub pre: ObjectPre<ObjectState>,
}

/// What every actor needs of the host, handed down once at start rather than the whole
/// runtime.
pub struct ObjectEnv {
    pub engine: wasmtime::Engine,
    pub limits: Limits,
    pub storage_limits: Arc<StorageLimits>,
    pub clock: Arc<dyn Clock>,
    pub sockets: Arc<Sockets>,
    pub slots: Arc<Slots>,
    pub scheduler: Arc<Scheduler>,
    pub counters: Counters,
    /// How instances reach other objects (the runtime).
    pub calls: Arc<dyn ObjectCalls>,
}

/// Counts the host reports (tests and, later, metrics read them).
#[derive(Default)]
pub struct Counters {
    /// Alarm handlers that completed successfully.
    pub alarm_runs: AtomicU64,
    /// Alarm attempts that failed (each retry counts).
    pub alarm_failures: AtomicU64,
    /// HTTP requests whose event ran on the request's own task rather than the mailbox.
    pub inline_events: AtomicU64,
}

/// The registry that holds an actor, which an idle actor asks to let it go.
pub trait Registry: Send + Sync + 'static {
    /// Removes the actor if nothing is queued for it (under the registry's lock, which
    /// every send takes too); true when it was removed and must end.
    fn remove_if_idle(
        &self,
        key: &ObjectKey,
        actor_id: u64,
        rx: &mut mpsc::UnboundedReceiver<Event>,
    ) -> bool;
}

/// What an actor reads and commits through; taken away at shutdown, so that the database
/// closes once the last actor is gone.
#[derive(Clone)]
pub struct ActorStorage {
    pub db: Arc<dyn Storage>,
    pub commits: mpsc::UnboundedSender<CommitJob>,
    /// Held by every actor; shutdown waits until all clones are dropped.
    pub alive: mpsc::Sender<()>,
}

/// A constructed instance of the object.
struct Live {
    store: Store<ObjectState>,
    bindings: Object,
    handle: ResourceAny,
    /// The object's commit generation this instance was built against.
    generation: u64,
    /// This instance's slot among `max_live_objects`; dropped after the store.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

pub struct Actor {
    env: Arc<ObjectEnv>,
    storage: ActorStorage,
    class: Arc<Class>,
    key: ObjectKey,
    name: Option<String>,
    /// The name is in the database (or there is none to store).
    name_stored: bool,
    tag: Arc<str>,
    /// Its writes on their way to disk (made with the first instance, kept across them).
    inflight: Option<Arc<InflightWrites>>,
    live: Option<Live>,
    last_commit: Option<Durable>,
    /// Clients waiting on deferred responses, by handle, with their deadline.
    deferred: HashMap<u64, (oneshot::Sender<Outcome>, Instant)>,
    next_handle: u64,
    /// WebSocket sends waiting for their event's durability, in order (started on first use).
    outbox: Option<mpsc::UnboundedSender<OutboxBatch>>,
    /// The task ended: this actor is out of the registry and must run nothing more.
    closed: bool,
}

/// An actor as the registry and the HTTP edge hold it. Its task runs the mailbox; an HTTP
/// request that finds the object idle with nothing queued runs on its own connection's task
/// instead, saving the hops to the actor's task and back (the lock keeps one event at a
/// time, the queue count keeps arrival order).
pub struct ActorCell {
    actor: tokio::sync::Mutex<Actor>,
    /// Events sent to the mailbox and not finished yet; counted before they are sent.
    pub(crate) queued: AtomicUsize,
    /// An event ran inline since the task last looked: the object is not idle.
    touched: AtomicBool,
    /// Wakes the task when an inline event changed what it waits for (a deferred answer's
    /// deadline, or a new instance to give up under pressure).
    poke: Notify,
}

impl ActorCell {
    pub fn new(actor: Actor) -> Self {
        ActorCell {
            actor: tokio::sync::Mutex::new(actor),
            queued: AtomicUsize::new(0),
            touched: AtomicBool::new(false),
            poke: Notify::new(),
        }
    }

    /// Runs one event from the mailbox. Its future lives on the heap, so an idle actor's
    /// task (which lives as long as its object) stays small.
    async fn handle_queued(&self, event: Event) {
        let mut actor = self.actor.lock().await;
        if actor
            .deferred
            .values()
            .any(|(_, deadline)| *deadline <= Instant::now())
        {
            actor.expire_deferred();
        }
        Box::pin(actor.handle(event)).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }

    /// Runs a fetch on the calling task if the object is idle, nothing is queued for it
    /// and it holds no deferred requests; otherwise hands the request back for the
    /// mailbox. The receiver answers like the mailbox's reply would.
    pub async fn try_fetch_inline(
        &self,
        request: wit::Request,
        upgrade: bool,
    ) -> Result<oneshot::Receiver<Outcome>, wit::Request> {
        if self.queued.load(Ordering::Acquire) != 0 {
            return Err(request);
        }
        let Ok(actor) = self.actor.try_lock() else {
            return Err(request);
        };
        // Checked again under the lock: an event counted before we took it has not run.
        if actor.closed || !actor.deferred.is_empty() || self.queued.load(Ordering::Acquire) != 0 {
            return Err(request);
        }
        self.touched.store(true, Ordering::Release);
        let was_live = actor.live.is_some();
        let (reply, rx) = oneshot::channel();
        let mut run = InlineRun {
            actor,
            finished: false,
        };
        run.actor.fetch(request, upgrade, reply).await;
        run.finished = true;
        let actor = &run.actor;
        // The task decided what to wait for before this event: wake it to look again if
        // the event deferred an answer (a deadline to watch) or built an instance (one it
        // must offer up under pressure).
        if !actor.deferred.is_empty() || (!was_live && actor.live.is_some()) {
            self.poke.notify_one();
        }
        Ok(rx)
    }
}

/// An event running inline, on a task that may drop it half-way (its client went away).
struct InlineRun<'a> {
    actor: tokio::sync::MutexGuard<'a, Actor>,
    finished: bool,
}

impl Drop for InlineRun<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Dropping a guest call mid-way leaves its store unusable: drop the instance,
            // and with it the event's uncommitted writes (its client never got an answer).
            // The next event rebuilds from storage, as after a trap.
            self.actor
                .drop_instance("its request was cancelled mid-event");
        }
    }
}

/// One event's WebSocket sends, with the durability they wait for.
type OutboxBatch = (
    Option<Durable>,
    Vec<(u64, crate::services::sockets::Outgoing)>,
);

/// What happened on a WebSocket, for the object's handlers (by socket ID).
pub enum SocketEvent {
    Message(u64, wit::WebsocketMessage),
    /// Code, reason, and whether the close was clean.
    Close(u64, u16, String, bool),
    Error(u64, String),
    /// The object closed the socket itself: no handler runs, but the registry entry goes
    /// only now, after the messages the client sent before the close were handled.
    Forget(u64),
}

impl Actor {
    pub fn new(
        env: Arc<ObjectEnv>,
        storage: ActorStorage,
        class: Arc<Class>,
        key: ObjectKey,
        name: Option<String>,
    ) -> Self {
        let short = &key.id.to_string()[..12];
        let tag: Arc<str> = match &name {
            Some(n) => format!("{}/{n}", class.binding).into(),
            None => format!("{}/{short}", class.binding).into(),
        };
        Actor {
            env,
            storage,
            class,
            key,
            name_stored: name.is_none(),
            name,
            tag,
            inflight: None,
            live: None,
            last_commit: None,
            deferred: HashMap::new(),
            next_handle: 0,
            outbox: None,
            closed: false,
        }
    }

    /// Discards the instance; clients waiting on its deferred responses get 503, since the
    /// in-memory state that would have answered them is gone.
    fn drop_instance(&mut self, why: &str) {
        // A socket accepted by an event that never finished has no connection to serve it.
        if let Some(mut live) = self.live.take() {
            let data = live.store.data_mut();
            let own = data.websockets.accepted.take().map(|a| a.id);
            let forwarded = data.objects.take_upgrade().map(|u| u.socket.id);
            for id in own.into_iter().chain(forwarded) {
                self.env.sockets.remove(id);
            }
        }
        for (_, (reply, _)) in self.deferred.drain() {
            let _ = reply.send(Outcome::failed(EventError::Unavailable(format!(
                "the object was reset before answering this deferred request ({why})"
            ))));
        }
    }

    /// Forgets deferred requests whose client went away (its connection closed): the
    /// object's `respond` and `is-open` then see them as gone, like expired ones.
    fn forget_gone_deferred(&mut self) {
        let mut gone = Vec::new();
        self.deferred.retain(|handle, (reply, _)| {
            let open = !reply.is_closed();
            if !open {
                gone.push(*handle);
            }
            open
        });
        if let Some(live) = self.live.as_mut() {
            for handle in gone {
                live.store.data_mut().requests.pending.remove(&handle);
            }
        }
    }

    /// Starts an event on the live instance: the CPU budget, and per-interface state
    /// (`upgrade`: the event is a fetch whose client asked for a WebSocket).
    fn begin_event(&mut self, fetch: Option<u64>, upgrade: bool) {
        if !self.deferred.is_empty() {
            self.forget_gone_deferred();
        }
        let live = self
            .live
            .as_mut()
            .expect("an event runs on a live instance");
        start_event(&mut live.store);
        let data = live.store.data_mut();
        data.requests.begin(fetch);
        data.websockets.begin(upgrade);
        data.objects.begin(upgrade);
    }

    /// Answers the deferred requests whose deadline passed with 503.
    fn expire_deferred(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .deferred
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(h, _)| *h)
            .collect();
        for handle in expired {
            if let Some((reply, _)) = self.deferred.remove(&handle) {
                let _ = reply.send(Outcome::failed(EventError::Unavailable(format!(
                    "the object did not answer this deferred request within {:?} \
                     (deferred_timeout)",
                    self.env.limits.deferred_timeout
                ))));
            }
            if let Some(live) = self.live.as_mut() {
                live.store.data_mut().requests.pending.remove(&handle);
            }
        }
    }

    /// Releases the answers given to deferred requests during the event just ended, gated
    /// on that event's durability.
    fn release_responses(&mut self, durable: &Option<Durable>) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let responses = std::mem::take(&mut live.store.data_mut().requests.responses);
        for (handle, response) in responses {
            if let Some((reply, _)) = self.deferred.remove(&handle) {
                let _ = reply.send(Outcome {
                    result: Ok(response),
                    durable: durable.clone(),
                    accepted: None,
                });
            }
        }
    }

    /// The actor's task: runs the mailbox's events in order, gives the instance up under
    /// pressure, expires deferred requests, and ends the actor after `idle_timeout` without
    /// events (its writes durable first).
    pub async fn run(
        cell: Arc<ActorCell>,
        mut rx: mpsc::UnboundedReceiver<Event>,
        actor_id: u64,
        registry: Arc<dyn Registry>,
    ) {
        let env = cell.actor.lock().await.env.clone();
        let idle = env.limits.idle_timeout;
        loop {
            // Fast path for a busy object: its next event is already queued, so skip arming
            // the idle timer and the pressure wake-up (a busy object keeps its instance
            // anyway). Deferred deadlines are still honoured, and the task still yields
            // to others when its budget runs out.
            match rx.try_recv() {
                Ok(event) => {
                    cell.handle_queued(event).await;
                    tokio::task::consume_budget().await;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let (may_give_up, next_deadline) = {
                let actor = cell.actor.lock().await;
                (
                    // An instance holding deferred requests keeps them in its memory: it
                    // is not given up.
                    actor.live.is_some() && actor.deferred.is_empty(),
                    actor.deferred.values().map(|(_, d)| *d).min(),
                )
            };
            let pressure = env.slots.pressure();
            let received = tokio::select! {
                r = tokio::time::timeout(idle, rx.recv()) => r,
                _ = pressure.notified(), if may_give_up => {
                    // Another object waits for an instance slot: give ours up unless
                    // events ran inline since we last looked (the object is busy), in
                    // which case the next idle object is asked instead. The actor (and
                    // its mailbox and in-flight writes) stays; the next event rebuilds.
                    let mut actor = cell.actor.lock().await;
                    if !cell.touched.swap(false, Ordering::AcqRel) && actor.deferred.is_empty() {
                        actor.live = None;
                    } else {
                        pressure.notify_one();
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(next_deadline.unwrap_or_else(Instant::now)),
                    if next_deadline.is_some() => {
                    cell.actor.lock().await.expire_deferred();
                    continue;
                }
                // An inline event deferred an answer or built an instance: look again.
                _ = cell.poke.notified() => continue,
            };
            match received {
                Ok(Some(event)) => cell.handle_queued(event).await,
                Ok(None) => break,
                Err(_) => {
                    let mut actor = cell.actor.lock().await;
                    if cell.touched.swap(false, Ordering::AcqRel) || !actor.deferred.is_empty() {
                        continue;
                    }
                    // Evict only once our writes are durable: a new actor for this ID reads
                    // from the database alone.
                    actor.settle().await;
                    if registry.remove_if_idle(&actor.key, actor_id, &mut rx) {
                        tracing::debug!(object = %actor.tag, "evicted idle object");
                        actor.closed = true;
                        break;
                    }
                }
            }
        }
        let mut actor = cell.actor.lock().await;
        actor.closed = true;
        actor.settle().await;
        // The cell can outlive this task (an edge request holding it): free the instance
        // slot and answer deferred requests now, as dropping the actor used to.
        actor.drop_instance("the object stopped");
    }

    async fn settle(&mut self) {
        if let Some(d) = self.last_commit.take() {
            let _ = d.await;
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Fetch {
                request,
                upgrade,
                reply,
            } => self.fetch(*request, upgrade, reply).await,
            Event::Socket(event) => self.socket_event(*event).await,
            Event::Evict => {
                if self.deferred.is_empty() {
                    self.live = None;
                }
            }
            Event::Alarm { retry } => self.alarm(retry).await,
        }
    }

    async fn alarm(&mut self, retry: u32) {
        if let Err(e) = self.ensure_live().await {
            let why = match e {
                EventError::Failed(m) | EventError::Unavailable(m) => m,
            };
            self.alarm_failed(retry, &why);
            return;
        }
        let now = self.env.clock.now_ms();
        let live = self.live.as_mut().expect("instance just ensured");
        match live.store.data().storage.store.get_alarm() {
            Ok(Some(at)) if at <= now => {}
            // Replaced by a later one, or deleted, since it was scheduled: nothing to do.
            Ok(_) => return,
            Err(e) => {
                self.alarm_failed(retry, &format!("{e:?}"));
                return;
            }
        }
        self.begin_event(None, false);
        let live = self.live.as_mut().expect("instance just ensured");
        let info = wit::AlarmInfo {
            retry_count: retry,
            is_retry: retry > 0,
        };
        let result = live
            .bindings
            .dohost_object_handler()
            .durable_object()
            .call_alarm(&mut live.store, live.handle, info)
            .await;
        live.store.data().stdout.flush_partial();
        live.store.data().stderr.flush_partial();
        match result {
            Ok(Ok(())) => {
                let store = &mut live.store.data_mut().storage.store;
                if !store.event_changed_alarm() {
                    // Done: clear it, atomically with the handler's writes.
                    let _ = store.delete_alarm();
                }
                let durable = self.commit_writes();
                self.release_outputs(&durable);
                self.env.counters.alarm_runs.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(message)) => {
                // A failed alarm's writes are dropped so that its retry starts from the
                // same state.
                live.store.data_mut().storage.store.discard_event();
                live.store.data_mut().websockets.discard();
                // Answers given by a failed handler are withdrawn with its writes.
                let requests = &mut live.store.data_mut().requests;
                for (handle, _) in std::mem::take(&mut requests.responses) {
                    requests.pending.insert(handle);
                }
                self.alarm_failed(retry, &message);
            }
            Err(err) => {
                let why = describe_failure(&err, live.store.data().limiter.hit);
                tracing::warn!(object = %self.tag, error = %format!("{err:?}"), "alarm handler trapped: {why}; instance discarded");
                self.drop_instance("the alarm handler trapped");
                self.alarm_failed(retry, &why);
            }
        }
    }

    fn alarm_failed(&mut self, retry: u32, why: &str) {
        self.env
            .counters
            .alarm_failures
            .fetch_add(1, Ordering::Relaxed);
        let Some(inflight) = self.inflight.clone() else {
            return;
        };
        if retry < MAX_ALARM_RETRIES {
            let delay = ALARM_RETRY_BASE_MS << retry;
            tracing::warn!(object = %self.tag, retry = retry + 1, delay_ms = delay, "alarm failed: {why}; retrying");
            let at = self.env.clock.now_ms() + delay;
            self.env.scheduler.retry(inflight.object, at, retry + 1);
            // Stored too, so that a restart resumes the same attempt instead of starting
            // the count again.
            self.submit(crate::backend::WriteSet {
                alarm_retry: Some(crate::backend::AlarmRetry {
                    count: retry + 1,
                    at,
                }),
                ..Default::default()
            });
        } else {
            tracing::error!(object = %self.tag, "alarm failed {} times, giving up: {why}", retry + 1);
            // Delete it durably, so that a restart does not bring it back.
            self.submit(crate::backend::WriteSet {
                alarm: Some(None),
                ..Default::default()
            });
        }
    }

    fn inflight(&mut self) -> anyhow::Result<Arc<InflightWrites>> {
        if let Some(s) = &self.inflight {
            return Ok(s.clone());
        }
        let meta = self.storage.db.object_meta(&self.key)?;
        let (size, stored_name) = (meta.size, meta.name);
        match (&self.name, stored_name) {
            (Some(_), Some(_)) => self.name_stored = true,
            // Woken by an alarm or a socket: the object keeps the name it was reached by.
            (None, Some(stored)) => {
                self.tag = format!("{}/{stored}", self.class.binding).into();
                self.name = Some(stored);
                self.name_stored = true;
            }
            (_, None) => {}
        }
        let inflight = InflightWrites::new(self.key, size);
        self.inflight = Some(inflight.clone());
        Ok(inflight)
    }

    /// Runs a WebSocket handler: like any event, its writes commit together and its sends
    /// leave once they are durable; a trap discards the instance.
    async fn socket_event(&mut self, event: SocketEvent) {
        let closed = match &event {
            SocketEvent::Forget(ws) => {
                self.env.sockets.remove(*ws);
                return;
            }
            SocketEvent::Close(ws, ..) => Some(*ws),
            _ => None,
        };
        self.run_socket_handler(event).await;
        if let Some(ws) = closed {
            self.env.sockets.remove(ws);
        }
    }

    async fn run_socket_handler(&mut self, event: SocketEvent) {
        if let Err(e) = self.ensure_live().await {
            tracing::warn!(object = %self.tag, error = ?e, "WebSocket event lost: no instance");
            return;
        }
        self.begin_event(None, false);
        let live = self.live.as_mut().expect("instance just ensured");
        let h = live.bindings.dohost_object_handler().durable_object();
        let result = match event {
            SocketEvent::Message(ws, m) => {
                h.call_websocket_message(&mut live.store, live.handle, ws, &m)
                    .await
            }
            SocketEvent::Close(ws, code, reason, clean) => {
                h.call_websocket_close(&mut live.store, live.handle, ws, code, &reason, clean)
                    .await
            }
            SocketEvent::Error(ws, error) => {
                h.call_websocket_error(&mut live.store, live.handle, ws, &error)
                    .await
            }
            SocketEvent::Forget(_) => unreachable!("handled without the instance"),
        };
        live.store.data().stdout.flush_partial();
        live.store.data().stderr.flush_partial();
        match result {
            Ok(()) => {
                let durable = self.commit_writes();
                self.release_outputs(&durable);
            }
            Err(err) => {
                let why = describe_failure(&err, live.store.data().limiter.hit);
                tracing::warn!(object = %self.tag, error = %format!("{err:?}"), "WebSocket handler failed: {why}; instance discarded");
                live.store.data_mut().websockets.discard();
                self.drop_instance("a WebSocket handler trapped");
            }
        }
    }

    /// Hands a successful event's writes to the committer; returns what its outputs wait on
    /// (its own commit, or the latest earlier one when it wrote nothing: it may have read
    /// writes that are not durable yet).
    fn commit_writes(&mut self) -> Option<Durable> {
        let mut writes = self
            .live
            .as_mut()
            .and_then(|l| l.store.data_mut().storage.store.take_event_writes());
        if !self.name_stored
            && let Some(name) = &self.name
        {
            // The first event of an object reached by name records the name with its
            // writes (its outputs wait for that, like for any write).
            writes.get_or_insert_with(Default::default).name = Some(Arc::from(name.as_str()));
            self.name_stored = true;
        }
        match writes {
            None => self.last_commit.clone(),
            Some(writes) => self.submit(writes),
        }
    }

    /// Releases a successful event's outputs besides its reply, gated on `durable`.
    fn release_outputs(&mut self, durable: &Option<Durable>) {
        self.release_responses(durable);
        self.release_sends(durable);
    }

    /// Hands the event's WebSocket sends to the object's outbox, which releases them in
    /// order, each batch once its event's writes are durable.
    fn release_sends(&mut self, durable: &Option<Durable>) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let sends = std::mem::take(&mut live.store.data_mut().websockets.sends);
        if sends.is_empty() {
            return;
        }
        let outbox = self.outbox.get_or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<OutboxBatch>();
            let sockets = self.env.sockets.clone();
            tokio::spawn(async move {
                while let Some((durable, sends)) = rx.recv().await {
                    if let Some(d) = durable
                        && d.await.is_err()
                    {
                        // The writes behind these messages were lost: so are they.
                        continue;
                    }
                    for (ws, message) in sends {
                        sockets.deliver(ws, message);
                    }
                }
            });
            tx
        });
        let _ = outbox.send((durable.clone(), sends));
    }

    async fn fetch(
        &mut self,
        request: wit::Request,
        upgrade: bool,
        reply: oneshot::Sender<Outcome>,
    ) {
        if let Err(e) = self.ensure_live().await {
            let _ = reply.send(Outcome::failed(e));
            return;
        }
        self.next_handle += 1;
        let handle = self.next_handle;
        self.begin_event(Some(handle), upgrade);
        let live = self.live.as_mut().expect("instance just ensured");
        let result = live
            .bindings
            .dohost_object_handler()
            .durable_object()
            .call_fetch(&mut live.store, live.handle, &request)
            .await;
        self.finish(result, handle, reply);
    }

    /// Ends a fetch: commits its writes on success, discards the instance on a trap, and
    /// answers the client now, or later if the fetch deferred its answer.
    fn finish(
        &mut self,
        result: wasmtime::Result<wit::Response>,
        handle: u64,
        reply: oneshot::Sender<Outcome>,
    ) {
        let live = self.live.as_mut().expect("event ran on an instance");
        live.store.data().stdout.flush_partial();
        live.store.data().stderr.flush_partial();
        match result {
            Ok(value) => {
                let data = live.store.data_mut();
                let deferred = data.requests.deferred;
                data.requests.current = None;
                let own = data.websockets.accepted.take().map(|socket| Upgrade {
                    object: self.key,
                    socket,
                });
                let forwarded = data.objects.take_upgrade();
                // The object's own socket wins over one a callee accepted for it.
                let accepted = match (own, forwarded) {
                    (Some(own), forwarded) => {
                        if let Some(f) = forwarded {
                            self.env.sockets.remove(f.socket.id);
                        }
                        Some(own)
                    }
                    (None, forwarded) => forwarded,
                };
                let durable = self.commit_writes();
                if deferred {
                    if let Some(a) = accepted {
                        self.env.sockets.remove(a.socket.id);
                    }
                    let deadline = Instant::now() + self.env.limits.deferred_timeout;
                    self.deferred.insert(handle, (reply, deadline));
                } else {
                    let _ = reply.send(Outcome {
                        result: Ok(value),
                        durable: durable.clone(),
                        accepted,
                    });
                }
                // After the reply is registered: the event may have answered itself.
                self.release_outputs(&durable);
            }
            Err(err) => {
                let why = describe_failure(&err, live.store.data().limiter.hit);
                tracing::warn!(object = %self.tag, error = %format!("{err:?}"), "event failed: {why}; instance discarded");
                // After a trap the instance is unusable; its store (and with it the event's
                // uncommitted writes) is dropped and the next event builds a fresh one.
                live.store.data_mut().websockets.discard();
                if let Some(u) = live.store.data_mut().objects.take_upgrade() {
                    self.env.sockets.remove(u.socket.id);
                }
                self.drop_instance("an event trapped");
                let _ = reply.send(Outcome::failed(EventError::Failed(why)));
            }
        }
    }

    fn submit(&mut self, writes: crate::backend::WriteSet) -> Option<Durable> {
        let shared = self
            .inflight
            .clone()
            .expect("an instance implies shared state");
        let (generation, seq) = shared.begin_commit(&writes);
        let (done, rx) = oneshot::channel();
        let job = CommitJob {
            target: shared as Arc<dyn CommitTarget>,
            generation,
            seq,
            writes,
            done,
        };
        let durable: Durable = if self.storage.commits.send(job).is_err() {
            futures::future::ready(Err(CommitError::new(
                CommitErrorKind::Stopped,
                "the host is shutting down",
            )))
            .boxed()
            .shared()
        } else {
            async move {
                rx.await.unwrap_or_else(|_| {
                    Err(CommitError::new(
                        CommitErrorKind::Stopped,
                        "the committer stopped before this write",
                    ))
                })
            }
            .boxed()
            .shared()
        };
        self.last_commit = Some(durable.clone());
        Some(durable)
    }

    /// Makes sure a constructed instance exists, building one (and running the
    /// constructor) if needed.
    async fn ensure_live(&mut self) -> Result<(), EventError> {
        let shared = self
            .inflight()
            .map_err(|e| EventError::Failed(format!("cannot read the object's storage: {e:#}")))?;
        let generation = shared.generation();
        if self
            .live
            .as_ref()
            .is_some_and(|l| l.generation != generation)
        {
            // A commit of this object failed: rebuild from what is on disk.
            self.live = None;
            self.last_commit = None;
            // The failed commit may have been the one recording the name.
            self.name_stored = self.name.is_none()
                || matches!(
                    self.storage.db.object_meta(&self.key),
                    Ok(ObjectMeta { name: Some(_), .. })
                );
        }
        if self.live.is_some() {
            return Ok(());
        }
        let limits = &self.env.limits;
        let store_limits = self.env.storage_limits.clone();
        let permit = self
            .env
            .slots
            .object_permit()
            .await
            .map_err(|e| EventError::Unavailable(e.0))?;
        let clock = self.env.clock.clone();
        let ctx = StorageCtx {
            store: ObjectStore::new(self.storage.db.clone(), shared, store_limits, clock.clone()),
        };
        let objects = crate::wasm::objects::ObjectsCtx::new(self.env.calls.clone(), Some(self.key));
        let websockets =
            crate::wasm::websockets::WebSocketsCtx::new(self.env.sockets.clone(), self.key);
        let mut store: Store<ObjectState> = new_store(
            &self.env.engine,
            ObjectState::new(self.tag.clone(), ctx, objects, websockets, limits, clock),
        );
        let bindings = match self.class.pre.instantiate_async(&mut store).await {
            Ok(b) => b,
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::error!(object = %self.tag, error = %msg, "cannot instantiate");
                // Slots are counted before instantiation, so the pool should never be full;
                // if it is anyway, it is capacity (503), not a broken object.
                if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some()
                {
                    return Err(EventError::Unavailable(format!(
                        "too many live objects (max_live_objects = {}); try again shortly",
                        limits.max_live_objects
                    )));
                }
                return Err(EventError::Failed(format!(
                    "cannot instantiate the object: {msg}"
                )));
            }
        };
        let ctx = wit::ObjectContext {
            id: self.key.id.to_string(),
            name: self.name.clone(),
            binding: self.class.binding.clone(),
            class_name: self.class.class_name.clone(),
            env: self.class.vars.clone(),
        };
        let constructed = bindings
            .dohost_object_handler()
            .durable_object()
            .call_constructor(&mut store, &ctx)
            .await;
        match constructed {
            Ok(handle) => {
                self.live = Some(Live {
                    store,
                    bindings,
                    handle,
                    generation,
                    _permit: permit,
                });
                Ok(())
            }
            Err(err) => {
                store.data().stdout.flush_partial();
                store.data().stderr.flush_partial();
                let why = describe_failure(&err, store.data().limiter.hit);
                tracing::warn!(object = %self.tag, error = %format!("{err:?}"), "constructor failed: {why}");
                Err(EventError::Failed(format!("the constructor failed: {why}")))
            }
        }
    }
}

/// A short account of why an event failed, for the caller; the full error goes to the log.
pub(crate) fn describe_failure(err: &wasmtime::Error, memory_hit: Option<usize>) -> String {
    if let Some(e) = err.downcast_ref::<CpuLimitExceeded>() {
        return e.to_string();
    }
    if let Some(e) = err.downcast_ref::<MemoryLimitExceeded>() {
        return e.to_string();
    }
    if let Some(asked) = memory_hit {
        return format!("memory limit exceeded (asked for {asked} bytes)");
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!("the object called exit (status {})", exit.0);
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => "stack overflow".to_string(),
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "the object panicked or aborted (see the host log)".to_string()
        }
        Some(trap) => format!("trap: {trap}"),
        // Anything else carries the guest's backtrace and host internals: those stay in
        // the log, which the caller's line points to.
        None => "the object failed (see the host log)".to_string(),
    }
}

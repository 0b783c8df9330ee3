//! The live-object registry: the classes, and one actor per object ID, spawned by the first
//! event for it and removed when it has been idle long enough.

use crate::backend::committer::{CommitJob, CommitListener, Committer, StorageHealth};
use crate::backend::redb::ObjectPrefix;
use crate::backend::redb::{Db, Namespace};
use crate::config::{Config, Limits};
use crate::id::ObjectId;
use crate::object::{Actor, ActorCell, Event, EventError, Outcome};
use crate::services::objstore::StorageLimits;
use crate::services::scheduler::{AlarmWaker, Clock, Scheduler, SystemClock};
use crate::wasm::bindings::worker::WorkerPre;
use crate::wasm::bindings::{ObjectPre, types as wit};
use crate::wasm::engine::WorkerState;
use crate::wasm::engine::{self, EpochTicker, ObjectState};
use crate::wasm::objects::ObjectsCtx;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

/// While an event waits for an instance slot, how often it asks another idle object to give
/// one up (the one asked may have declined, or given its slot to another waiter).
const PRESSURE_RETRY: Duration = Duration::from_millis(50);

/// One object class, ready to instantiate.
pub struct Class {
    pub binding: String,
    pub class_name: String,
    pub namespace: Namespace,
    pub vars: Vec<(String, String)>,
    pub pre: ObjectPre<ObjectState>,
}

/// Identifies a live object across classes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ObjectKey {
    pub namespace: u64,
    pub id: ObjectId,
}

/// What actors need from the host while it runs; taken away at shutdown so that the
/// database closes once the last actor is gone.
#[derive(Clone)]
pub struct Services {
    pub db: Db,
    pub commits: mpsc::UnboundedSender<CommitJob>,
    /// Held by every actor; shutdown waits until all clones are dropped.
    _alive: mpsc::Sender<()>,
}

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

pub struct Runtime {
    engine: wasmtime::Engine,
    classes: HashMap<String, Arc<Class>>,
    limits: Limits,
    storage_limits: Arc<StorageLimits>,
    // A std Mutex: held only to look up, insert or remove an entry and to queue an event
    // (an unbounded send never waits), never across an await.
    objects: Mutex<HashMap<ObjectKey, ActorHandle>>,
    services: RwLock<Option<Services>>,
    alive: tokio::sync::Mutex<mpsc::Receiver<()>>,
    committer: Mutex<Option<Committer>>,
    ticker: Mutex<Option<EpochTicker>>,
    next_actor: AtomicU64,
    by_namespace: HashMap<u64, Arc<Class>>,
    clock: Arc<dyn Clock>,
    scheduler: Arc<Scheduler>,
    stop_scheduler: watch::Sender<bool>,
    /// One permit per object instance slot of the pooling allocator.
    instances: Arc<Semaphore>,
    /// One permit per worker instance slot (the pool holds both kinds).
    worker_slots: Arc<Semaphore>,
    /// Whether writes can be made durable right now (the committer keeps it).
    storage_health: Arc<StorageHealth>,
    /// Signalled when an object waits for an instance slot: idle actors give theirs up.
    pressure: Notify,
    alarm_runs: AtomicU64,
    alarm_failures: AtomicU64,
    /// HTTP requests whose event ran on the request's own task rather than the mailbox.
    inline_events: AtomicU64,
    /// Object → the object it is waiting on in a call: the graph deadlocks are found in.
    // A std Mutex: held for a short walk of the graph, never across an await.
    waits_for: Mutex<HashMap<ObjectKey, ObjectKey>>,
    worker: Option<WorkerPre<WorkerState>>,
    vars: Vec<(String, String)>,
    sockets: Arc<crate::services::sockets::Sockets>,
}

/// Why a call from one object (or the worker) to another failed; the caller may handle it.
#[derive(Debug, Clone)]
pub enum CallError {
    UnknownBinding(String),
    InvalidId(String),
    Deadlock(String),
    ObjectFailed(String),
    Unavailable(String),
}

/// Removes the caller's edge from the waits-for graph when its call ends.
struct WaitGuard {
    rt: Arc<Runtime>,
    caller: ObjectKey,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.rt
            .waits_for
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.caller);
    }
}

/// A WebSocket accepted by an object for a request that may have passed through other
/// objects or the worker: the socket, and the object it belongs to.
pub struct Upgrade {
    pub class: Arc<Class>,
    pub object: ObjectKey,
    pub socket: crate::services::sockets::Accepted,
}

/// Tells the scheduler of alarms once they are durable.
struct SchedulerListener(Arc<Scheduler>);

impl CommitListener for SchedulerListener {
    fn alarm_committed(&self, object: ObjectPrefix, at: Option<u64>) {
        self.0.set(object, at);
    }
}

/// Wakes objects for the scheduler without keeping the runtime alive.
struct RuntimeWaker(Weak<Runtime>);

impl AlarmWaker for RuntimeWaker {
    fn wake(&self, object: ObjectPrefix, retry_count: u32) {
        let Some(rt) = self.0.upgrade() else { return };
        let Some(class) = rt.by_namespace.get(&object.namespace()).cloned() else {
            tracing::warn!(
                namespace = object.namespace(),
                "alarm of a class that is not served; left in place"
            );
            return;
        };
        if let Err(e) = rt.send(
            &class,
            object.id(),
            None,
            Event::Alarm { retry: retry_count },
        ) {
            tracing::warn!(error = ?e, "cannot deliver an alarm");
        }
    }
}

impl Runtime {
    /// Opens the database, compiles (or loads from cache) every class and starts the
    /// background threads. Errors name the file or setting to fix.
    pub fn start(config: &Config) -> Result<Arc<Runtime>> {
        Self::start_with_clock(config, Arc::new(SystemClock))
    }

    /// Like `start`, with the clock alarms and guests read (tests pass a manual one). Must be
    /// called within a tokio runtime: it spawns the alarm scheduler.
    pub fn start_with_clock(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<Runtime>> {
        config.validate()?;
        let engine = engine::build_engine(&config.limits)?;
        let linker = engine::build_linker(&engine)?;
        let cache_dir = config.data_dir.join("cache");
        // One compilation per distinct file, even when several bindings share a class.
        let mut compiled: HashMap<std::path::PathBuf, ObjectPre<ObjectState>> = HashMap::new();
        for class in &config.classes {
            if !compiled.contains_key(&class.component) {
                let component = engine::load_component(&engine, &class.component, &cache_dir)?;
                let pre = engine::prepare(&linker, &component, &class.component)?;
                compiled.insert(class.component.clone(), pre);
            }
        }
        let worker = match &config.worker {
            Some(path) => {
                let wl = engine::build_worker_linker(&engine)?;
                let component = engine::load_component(&engine, path, &cache_dir)?;
                Some(engine::prepare_worker(&wl, &component, path)?)
            }
            None => None,
        };
        let db = Db::open(&config.data_dir)?;
        if let Some(migrations) = &config.migrations {
            let bound: Vec<(String, String)> = config
                .classes
                .iter()
                .map(|c| (c.binding.clone(), c.class_name.clone()))
                .collect();
            let report = crate::backend::redb::migrate::migrate(
                &db,
                &config.script,
                migrations,
                &bound,
                false,
            )?;
            for step in &report.steps {
                tracing::info!("migration applied: {step}");
            }
        }
        let mut classes = HashMap::new();
        for class in &config.classes {
            let namespace = match &config.migrations {
                None => db
                    .ensure_class(&config.script, &class.class_name)
                    .with_context(|| format!("cannot register class {}", class.class_name))?,
                Some(_) => db
                    .class(&config.script, &class.class_name)?
                    .with_context(|| format!("class {} does not exist", class.class_name))?,
            };
            classes.insert(
                class.binding.clone(),
                Arc::new(Class {
                    binding: class.binding.clone(),
                    class_name: class.class_name.clone(),
                    namespace,
                    vars: config.vars.clone(),
                    pre: compiled[&class.component].clone(),
                }),
            );
        }
        let scheduler = Scheduler::new(clock.clone());
        for (object, at, retry) in db.all_alarms()? {
            match retry {
                // A retry pending at the last stop resumes as the same attempt.
                Some(r) => scheduler.retry(object, r.at, r.count),
                None => scheduler.set(object, Some(at)),
            }
        }
        let by_namespace = classes
            .values()
            .map(|c| (c.namespace.number, c.clone()))
            .collect();
        let storage_health = Arc::new(StorageHealth::default());
        let (commits, committer) = Committer::start(
            db.clone(),
            Arc::new(SchedulerListener(scheduler.clone())),
            storage_health.clone(),
        )?;
        let ticker = EpochTicker::start(engine.clone())?;
        let (alive_tx, alive_rx) = mpsc::channel(1);
        let l = &config.limits;
        let (stop_scheduler, stop_rx) = watch::channel(false);
        let runtime = Arc::new(Runtime {
            engine,
            classes,
            limits: config.limits.clone(),
            storage_limits: Arc::new(StorageLimits {
                max_key_bytes: l.max_key_bytes,
                max_value_bytes: l.max_value_bytes,
                max_keys_per_call: l.max_keys_per_call,
                max_object_bytes: l.max_object_bytes,
                min_alarm_interval_ms: l.min_alarm_interval.as_millis() as u64,
            }),
            objects: Mutex::new(HashMap::new()),
            services: RwLock::new(Some(Services {
                db,
                commits,
                _alive: alive_tx,
            })),
            alive: tokio::sync::Mutex::new(alive_rx),
            committer: Mutex::new(Some(committer)),
            ticker: Mutex::new(Some(ticker)),
            next_actor: AtomicU64::new(1),
            by_namespace,
            clock,
            scheduler: scheduler.clone(),
            stop_scheduler,
            instances: Arc::new(Semaphore::new(l.max_live_objects as usize)),
            worker_slots: Arc::new(Semaphore::new(l.max_worker_instances as usize)),
            storage_health,
            pressure: Notify::new(),
            alarm_runs: AtomicU64::new(0),
            alarm_failures: AtomicU64::new(0),
            inline_events: AtomicU64::new(0),
            waits_for: Mutex::new(HashMap::new()),
            worker,
            vars: config.vars.clone(),
            sockets: Arc::new(crate::services::sockets::Sockets::new(l.ws_send_queue)),
        });
        let waker = Arc::new(RuntimeWaker(Arc::downgrade(&runtime)));
        tokio::spawn(scheduler.run(waker, stop_rx));
        Ok(runtime)
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.scheduler
    }

    pub fn pressure(&self) -> &Notify {
        &self.pressure
    }

    /// Alarm handlers that completed successfully since start.
    pub fn alarm_runs(&self) -> u64 {
        self.alarm_runs.load(Ordering::Relaxed)
    }

    pub fn count_alarm_run(&self) {
        self.alarm_runs.fetch_add(1, Ordering::Relaxed);
    }

    /// Alarm attempts that failed (each retry counts) since start.
    pub fn alarm_failures(&self) -> u64 {
        self.alarm_failures.load(Ordering::Relaxed)
    }

    pub fn count_alarm_failure(&self) {
        self.alarm_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// HTTP requests whose event ran on the request's own task (the object was idle with
    /// nothing queued) since start; the others went through the mailbox.
    pub fn inline_events(&self) -> u64 {
        self.inline_events.load(Ordering::Relaxed)
    }

    /// Instances alive right now (slots of `max_live_objects` in use).
    pub fn live_instances(&self) -> usize {
        self.limits.max_live_objects as usize - self.instances.available_permits()
    }

    /// None while writes can be made durable; otherwise why not (the disk is full, ...).
    pub fn storage_health(&self) -> Option<String> {
        self.storage_health.problem().map(|e| e.to_string())
    }

    /// Every open WebSocket.
    pub fn sockets(&self) -> &Arc<crate::services::sockets::Sockets> {
        &self.sockets
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
        match self.lock_objects().get(&key) {
            Some(handle) => handle.send(Event::Evict).is_ok(),
            None => false,
        }
    }

    /// True when a worker component receives every public request.
    pub fn has_worker(&self) -> bool {
        self.worker.is_some()
    }

    /// Runs a public request through a fresh instance of the worker component. With
    /// `upgrade`, the worker may pass the client's WebSocket upgrade on to an object through
    /// `objects.fetch`; the socket that object accepted comes back with the response.
    pub async fn run_worker(
        self: &Arc<Self>,
        request: wit::Request,
        upgrade: bool,
    ) -> Result<(wit::Response, Option<Upgrade>), EventError> {
        let pre = self
            .worker
            .as_ref()
            .ok_or_else(|| EventError::Unavailable("no worker is configured".into()))?;
        let _permit = self.worker_permit().await?;
        let mut objects = ObjectsCtx::new(Arc::downgrade(self), None);
        objects.begin(upgrade);
        let mut store = engine::new_store(
            &self.engine,
            WorkerState::new(objects, &self.limits, self.clock.clone()),
        );
        let result = async {
            let worker = pre.instantiate_async(&mut store).await?;
            worker
                .dohost_object_worker_handler()
                .call_fetch(&mut store, &request, &self.vars)
                .await
        }
        .await;
        store.data().stdout.flush_partial();
        store.data().stderr.flush_partial();
        let forwarded = store.data_mut().objects.take_upgrade();
        match result {
            Ok(response) => Ok((response, forwarded)),
            Err(e) => {
                if let Some(u) = forwarded {
                    self.sockets.remove(u.socket.id);
                }
                let why = crate::object::describe_failure(&e, store.data().limiter.hit);
                tracing::warn!(error = %format!("{e:?}"), "worker failed: {why}");
                Err(EventError::Failed(format!("the worker failed: {why}")))
            }
        }
    }

    /// A call from `caller` (None: the worker) to the object `id` of `binding`. Refuses a
    /// call that would close a cycle of objects waiting on each other, and a name that
    /// does not give `id` (an object's name is what it was derived from, never a label a
    /// caller picks). With `upgrade` the callee may accept the caller's client's WebSocket.
    pub async fn call(
        self: &Arc<Self>,
        caller: Option<ObjectKey>,
        binding: &str,
        id: &str,
        name: Option<String>,
        request: wit::Request,
        upgrade: bool,
    ) -> Result<(wit::Response, Option<Upgrade>), CallError> {
        let class = self
            .class(binding)
            .cloned()
            .ok_or_else(|| CallError::UnknownBinding(format!("no binding named {binding:?}")))?;
        let id = class
            .namespace
            .id_key
            .id_from_string(id)
            .map_err(|e| CallError::InvalidId(format!("{e} (binding {binding:?})")))?;
        if let Some(name) = &name
            && class.namespace.id_key.id_from_name(name) != id
        {
            return Err(CallError::InvalidId(format!(
                "the name {name:?} does not give the ID {id} in binding {binding:?}: pass the \
                 name the ID was made from, or none"
            )));
        }
        let target = ObjectKey {
            namespace: class.namespace.number,
            id,
        };
        let _guard = match caller {
            Some(caller) => Some(self.wait_on(caller, target, binding)?),
            None => None,
        };
        let outcome = self.fetch(&class, id, name, request, upgrade, false).await;
        let accepted = outcome.accepted;
        let forget = |a: Option<Upgrade>| {
            if let Some(a) = a {
                self.sockets.remove(a.socket.id);
            }
        };
        if let Some(durable) = outcome.durable
            && let Err(e) = durable.await
        {
            forget(accepted);
            return Err(CallError::ObjectFailed(format!(
                "the called object's write failed: {e}"
            )));
        }
        match outcome.result {
            Ok(response) if response.status == 101 => Ok((response, accepted)),
            Ok(response) => {
                forget(accepted);
                Ok((response, None))
            }
            Err(e) => {
                forget(accepted);
                Err(match e {
                    EventError::Failed(m) => CallError::ObjectFailed(m),
                    EventError::Unavailable(m) => CallError::Unavailable(m),
                })
            }
        }
    }

    fn wait_on(
        self: &Arc<Self>,
        caller: ObjectKey,
        target: ObjectKey,
        binding: &str,
    ) -> Result<WaitGuard, CallError> {
        let mut graph = self.waits_for.lock().unwrap_or_else(|p| p.into_inner());
        let mut at = target;
        // Follow who the target waits on; reaching the caller closes a cycle. The walk is
        // bounded by the number of waiting objects, since each waits on one other.
        for _ in 0..=graph.len() {
            if at == caller {
                return Err(CallError::Deadlock(format!(
                    "calling {binding}/{} would deadlock: it is waiting, directly or through \
                     other objects, on the caller, which is busy until this call returns",
                    &target.id.to_string()[..12]
                )));
            }
            match graph.get(&at) {
                Some(next) => at = *next,
                None => break,
            }
        }
        graph.insert(caller, target);
        Ok(WaitGuard {
            rt: self.clone(),
            caller,
        })
    }

    /// Waits for an object instance slot; while waiting, asks idle objects to give theirs
    /// up, one at a time: `notify_one` wakes the object that has waited longest since its
    /// last mailbox event (about the least recently used), so one slot costs one eviction,
    /// not every idle instance. The wait is bounded by `slot_wait`, and refused at once
    /// when it could never end: an object waiting on a call keeps its slot (its instance
    /// is mid-event), so when every slot is held by such an object, no slot frees up until
    /// one of their callees gets one.
    pub async fn instance_permit(&self) -> Result<OwnedSemaphorePermit, EventError> {
        if let Ok(p) = self.instances.clone().try_acquire_owned() {
            return Ok(p);
        }
        let max = self.limits.max_live_objects;
        let deadline = Instant::now() + self.limits.slot_wait;
        loop {
            let calling = self
                .waits_for
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len();
            if calling >= max as usize {
                return Err(EventError::Unavailable(format!(
                    "every instance slot (max_live_objects = {max}) is held by an object \
                     waiting on a call to another object; try again shortly"
                )));
            }
            self.pressure.notify_one();
            let now = Instant::now();
            if now >= deadline {
                return Err(EventError::Unavailable(format!(
                    "no instance slot became free within {:?} (max_live_objects = {max}, \
                     slot_wait_ms); try again shortly",
                    self.limits.slot_wait
                )));
            }
            tokio::select! {
                p = self.instances.clone().acquire_owned() => {
                    return Ok(p.expect("the instance semaphore is never closed"));
                }
                _ = tokio::time::sleep(PRESSURE_RETRY.min(deadline - now)) => {}
            }
        }
    }

    /// Waits, at most `slot_wait`, for a worker instance slot.
    async fn worker_permit(&self) -> Result<OwnedSemaphorePermit, EventError> {
        let acquire = self.worker_slots.clone().acquire_owned();
        match tokio::time::timeout(self.limits.slot_wait, acquire).await {
            Ok(p) => Ok(p.expect("the worker semaphore is never closed")),
            Err(_) => Err(EventError::Unavailable(format!(
                "no worker slot became free within {:?} (max_worker_instances = {}); try \
                 again shortly",
                self.limits.slot_wait, self.limits.max_worker_instances
            ))),
        }
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn storage_limits(&self) -> Arc<StorageLimits> {
        self.storage_limits.clone()
    }

    pub fn class(&self, binding: &str) -> Option<&Arc<Class>> {
        self.classes.get(binding)
    }

    pub fn bindings(&self) -> Vec<&str> {
        let mut b: Vec<&str> = self.classes.keys().map(String::as_str).collect();
        b.sort();
        b
    }

    /// How many objects have an actor right now.
    pub fn live_objects(&self) -> usize {
        self.lock_objects().len()
    }

    fn lock_objects(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, ActorHandle>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers an HTTP request to the object and waits for its outcome (not for
    /// durability: the caller awaits `Outcome::durable` before releasing the response).
    /// A request `from_edge` that finds the object live, idle and with nothing queued runs
    /// on the caller's task (see `ActorCell`); calls from other objects always queue.
    pub async fn fetch(
        self: &Arc<Self>,
        class: &Arc<Class>,
        id: ObjectId,
        name: Option<String>,
        request: wit::Request,
        upgrade: bool,
        from_edge: bool,
    ) -> Outcome {
        let key = ObjectKey {
            namespace: class.namespace.number,
            id,
        };
        let cell = if from_edge {
            self.lock_objects().get(&key).map(|h| h.cell.clone())
        } else {
            None
        };
        let request = match cell {
            Some(cell) => match cell.try_fetch_inline(request, upgrade).await {
                Ok(rx) => {
                    self.inline_events.fetch_add(1, Ordering::Relaxed);
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

    /// Queues `event` for the object's actor, spawning the actor if there is none. All
    /// sends happen under the registry lock, which is what makes eviction race-free: an
    /// actor removes itself only while holding the lock and seeing an empty mailbox.
    pub(crate) fn send(
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
        let mut objects = self.lock_objects();
        let event = match objects.get(&key) {
            Some(handle) => match handle.send(event) {
                Ok(()) => return Ok(()),
                // The actor died (its task panicked): replace it.
                Err(mpsc::error::SendError(event)) => {
                    objects.remove(&key);
                    event
                }
            },
            None => event,
        };
        let services = self
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| EventError::Unavailable("the host is shutting down".to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Actor::new(self.clone(), services, class.clone(), key, name);
        let cell = Arc::new(ActorCell::new(actor));
        let actor_id = self.next_actor.fetch_add(1, Ordering::Relaxed);
        let handle = ActorHandle {
            tx,
            actor_id,
            cell: cell.clone(),
        };
        let _ = handle.send(event);
        objects.insert(key, handle);
        drop(objects);
        tokio::spawn(Actor::run(cell, rx, actor_id));
        Ok(())
    }

    /// Called by an idle actor: removes it from the registry if nothing is queued for it.
    pub fn remove_if_idle(
        &self,
        key: &ObjectKey,
        actor_id: u64,
        rx: &mut mpsc::UnboundedReceiver<Event>,
    ) -> bool {
        let mut objects = self.lock_objects();
        if !rx.is_empty() {
            return false;
        }
        if objects.get(key).is_some_and(|h| h.actor_id == actor_id) {
            objects.remove(key);
        }
        rx.close();
        true
    }

    /// Stops every actor (each finishes its queued events and waits for its commits),
    /// then the committer and the epoch thread. The database is closed when this returns.
    pub async fn shutdown(&self) {
        let _ = self.stop_scheduler.send(true);
        let services = self
            .services
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let actors: Vec<ActorHandle> = self.lock_objects().drain().map(|(_, h)| h).collect();
        drop(actors);
        drop(services);
        // Every actor holds an `_alive` sender; recv returns None once all are gone.
        let _ = self.alive.lock().await.recv().await;
        let committer = self
            .committer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(c) = committer {
            tokio::task::spawn_blocking(move || c.join()).await.ok();
        }
        self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// The outcome of a request whose object went away without answering it.
fn stopped() -> Outcome {
    Outcome::failed(EventError::Failed(
        "the object stopped before answering".to_string(),
    ))
}

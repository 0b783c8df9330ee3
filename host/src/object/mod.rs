//! One actor per live object: a task that owns the object's wasmtime store and runs its
//! events from a mailbox one at a time, to the end, then hands their writes to the
//! committer and their outputs back gated on durability.
//!
//! Rooms: `actor` (the mailbox loop), `cell` (the inline fast path), `instance` (building
//! and dropping the instance), `event` (the one way an event runs, and each kind's ending),
//! `output` (commits, deferred answers and the socket outbox).

mod actor;
mod cell;
mod edit;
mod event;

pub use edit::{Edit, EditOp};
mod instance;
mod output;

use crate::backend::Storage;
use crate::backend::committer::CommitTarget;
use crate::backend::committer::{CommitError, CommitErrorKind, CommitJob, CommitResult};
use crate::config::Limits;
use crate::id::{Namespace, ObjectKey};
use crate::services::handoff::Handoff;
use crate::services::metrics::Metrics;
use crate::services::objstore::StorageLimits;
use crate::services::objstore::{InflightWrites, ObjectStore};
use crate::services::scheduler::{Clock, Scheduler};
use crate::services::slots::Slots;
use crate::services::sockets::Sockets;
use crate::wasm::bindings::ObjectPre;
use crate::wasm::bindings::{Object, types as wit};
use crate::wasm::objects::ObjectCalls;
use crate::wasm::state::{ObjectImports, ObjectState, end_call, new_store, start_event};
use crate::wasm::storage::StorageCtx;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::sync::Arc;
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
    /// The object's shard left this node (a cluster): drop the instance and everything
    /// known of its storage, so that nothing here answers from what another node may have
    /// changed since; if the shard comes back, the object is rebuilt from the database.
    /// With a sender, the shard is being handed over: its writes are made durable first,
    /// and the sender told once they are.
    Disown(Option<oneshot::Sender<()>>),
    /// The object's alarm came due; `retry` counts earlier failed attempts. `firing` is
    /// dropped once the handler's writes are durable.
    Alarm {
        retry: u32,
        firing: crate::services::scheduler::Firing,
    },
    /// An operator's change (the admin API).
    Edit(Box<Edit>),
}

/// Retries of a failing alarm before it is given up, and the first retry's delay (each
/// further retry waits twice as long).
pub const MAX_ALARM_RETRIES: u32 = 6;
pub const ALARM_RETRY_BASE_MS: u64 = 2000;

/// How an event ended. Its output may be released only once `durable` resolves Ok.
pub struct Outcome {
    pub result: Result<wit::Response, EventError>,
    pub durable: Option<Durable>,
    /// True when `durable` commits this event's own writes: once it resolves Ok they
    /// passed the storage's fence, so no other node wrote the object since this one loaded
    /// it, and the answer is good even if the node has lost the object's shard meanwhile.
    pub own_writes: bool,
    /// The WebSocket the fetch accepted or the stream it opened (or one an object it called
    /// handed it), for the HTTP edge to connect its client to.
    pub accepted: Option<Handoff>,
}

impl Outcome {
    pub fn failed(e: EventError) -> Self {
        Outcome {
            result: Err(e),
            durable: None,
            own_writes: false,
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
    /// Whether its objects have a SQL database (not for classes declared with
    /// `new_classes`).
    pub sql: bool,
    /// The class's code; replaced by a deploy (`Class::deploy`), after which each object's
    /// next event runs on a fresh instance of the new code.
    code: std::sync::RwLock<Code>,
}

/// A class's compiled code and which version of it this is (0 at start, one more per
/// deploy).
#[derive(Clone)]
pub struct Code {
    pub pre: ObjectPre<ObjectState>,
    pub version: u64,
    /// The linear memory an instance starts with, which it holds against the memory budget
    /// from its first moment (worked out once here, not at every instance build).
    pub initial_memory: Option<usize>,
}

impl Code {
    fn new(pre: ObjectPre<ObjectState>, version: u64) -> Code {
        let initial_memory = crate::wasm::engine::initial_memory(pre.instance_pre().component())
            .and_then(|b| usize::try_from(b).ok());
        Code {
            pre,
            version,
            initial_memory,
        }
    }
}

impl Class {
    pub fn new(
        binding: String,
        class_name: String,
        namespace: Namespace,
        vars: Vec<(String, String)>,
        sql: bool,
        pre: ObjectPre<ObjectState>,
    ) -> Class {
        Class {
            binding,
            class_name,
            namespace,
            vars,
            sql,
            code: std::sync::RwLock::new(Code::new(pre, 0)),
        }
    }

    pub fn code(&self) -> Code {
        self.code.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the code; answers the new version.
    pub fn deploy(&self, pre: ObjectPre<ObjectState>) -> u64 {
        let mut code = self.code.write().unwrap_or_else(|p| p.into_inner());
        *code = Code::new(pre, code.version + 1);
        code.version
    }
}

/// What every actor needs of the host, handed down once at start rather than the whole
/// runtime.
pub struct ObjectEnv {
    pub engine: wasmtime::Engine,
    pub limits: Limits,
    pub storage_limits: Arc<StorageLimits>,
    pub clock: Arc<dyn Clock>,
    pub sockets: Arc<Sockets>,
    pub streams: Arc<crate::services::streams::Streams>,
    pub slots: Arc<Slots>,
    pub scheduler: Arc<Scheduler>,
    pub metrics: Arc<Metrics>,
    /// The host's memory budget, which instances' linear memories count against, and the
    /// turns long events take on the CPU.
    pub shared: crate::wasm::state::Shared,
    /// Which failures are logged in full (see `TrapLog`).
    pub trap_log: crate::services::trap_log::TrapLog,
    /// How instances reach other objects (the runtime).
    pub calls: Arc<dyn ObjectCalls>,
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
struct Instance {
    store: Store<ObjectState>,
    bindings: Object,
    handle: ResourceAny,
    /// The object's commit generation this instance was built against.
    generation: u64,
    /// The version of its class's code it runs.
    code_version: u64,
    /// This instance's slot: among `max_live_objects`, or among `max_deferring_objects`
    /// once it holds deferred requests (see `Slots`); dropped after the store.
    permit: tokio::sync::OwnedSemaphorePermit,
    /// `permit` is a deferring slot.
    deferring: bool,
}

pub struct Actor {
    env: Arc<ObjectEnv>,
    storage: ActorStorage,
    class: Arc<Class>,
    key: ObjectKey,
    name: Option<String>,
    /// The name is in the database (or there is none to store).
    name_stored: bool,
    /// How the host log names the object: `binding/name`, or `binding/` and the ID's start.
    label: Arc<str>,
    /// Its writes on their way to disk (made with the first instance, kept across them).
    inflight: Option<Arc<InflightWrites>>,
    live: Option<Instance>,
    last_commit: Option<Durable>,
    /// Clients waiting on deferred responses, by handle, with their deadline.
    deferred: HashMap<u64, (oneshot::Sender<Outcome>, Instant)>,
    next_handle: u64,
    /// WebSocket sends and stream chunks waiting for their event's durability, in order
    /// (started on first use).
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
    /// Events sent to the mailbox and not started yet; counted before they are sent, counted
    /// down under the actor lock when one starts.
    pub(crate) queued: AtomicUsize,
    /// An event ran inline since the task last looked: the object is not idle.
    touched: AtomicBool,
    /// Wakes the task when an inline event changed what it waits for (a deferred answer's
    /// deadline, or a new instance to give up under pressure).
    poke: Notify,
}

/// One event's WebSocket sends and stream chunks, with the durability they wait for.
struct OutboxBatch {
    durable: Option<Durable>,
    sends: Vec<(u64, crate::services::sockets::Outgoing)>,
    writes: Vec<(u64, crate::services::streams::Chunk)>,
}

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

//! The WIT `objects` interface (IDs and calls to other objects): its per-store state and
//! linker wiring. The host impl is in `host.rs`; calls go through `ObjectCalls`, which the
//! runtime implements.

mod host;

use crate::id::{IdKey, ObjectKey};
use crate::services::sockets::Upgrade;
use crate::wasm::bindings::objects as wit;
use crate::wasm::bindings::types::{Request, Response};
use futures::future::BoxFuture;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

/// Why a call from one object (or the worker) to another failed; the caller may handle it.
#[derive(Debug, Clone)]
pub enum CallError {
    UnknownBinding(String),
    InvalidId(String),
    Deadlock(String),
    ObjectFailed(String),
    Unavailable(String),
}

/// What the objects interface needs of the host: bindings' ID keys, and calls.
pub trait ObjectCalls: Send + Sync + 'static {
    /// The ID key of `binding`, if it exists (None also while the host stops).
    fn id_key(&self, binding: &str) -> Option<IdKey>;

    /// A call from `caller` (None: the worker) to object `id` of `binding`; with `upgrade`
    /// the callee may accept the caller's client's WebSocket (it comes back with the 101).
    fn call(
        &self,
        caller: Option<ObjectKey>,
        binding: String,
        id: String,
        name: Option<String>,
        request: Request,
        upgrade: bool,
    ) -> BoxFuture<'static, Result<(Response, Option<Upgrade>), CallError>>;
}

/// Who is calling, for deadlock detection, and the host to call through.
pub struct ObjectsCtx {
    calls: Arc<dyn ObjectCalls>,
    /// The calling object; None for the stateless worker (nothing ever waits on a worker).
    pub caller: Option<ObjectKey>,
    /// The current event's client asked for a WebSocket upgrade that no call has passed on
    /// yet: the first call forwarding an upgrade request may let its callee accept it.
    upgrade_offered: bool,
    /// The socket a callee accepted for the current event's client.
    upgrade: Option<Upgrade>,
    /// The store's CPU turn, given up while a call waits: the callee may need it.
    pub turn: crate::wasm::cpu_gate::Turn,
}

impl ObjectsCtx {
    pub fn new(calls: Arc<dyn ObjectCalls>, caller: Option<ObjectKey>) -> Self {
        ObjectsCtx {
            calls,
            caller,
            upgrade_offered: false,
            upgrade: None,
            turn: Default::default(),
        }
    }

    /// Starts an event; `upgrade` when its client asked for a WebSocket upgrade.
    pub fn begin(&mut self, upgrade: bool) {
        self.upgrade_offered = upgrade;
        self.upgrade = None;
    }

    /// The socket a callee accepted during this event, for the edge to connect.
    pub fn take_upgrade(&mut self) -> Option<Upgrade> {
        self.upgrade_offered = false;
        self.upgrade.take()
    }
}

/// Adds the objects import, reached through `get` from the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut ObjectsCtx,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<ObjectsCtx>>(linker, get)
}

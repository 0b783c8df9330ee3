//! The WIT `objects` interface (IDs and calls to other objects): its per-store state and
//! linker wiring. The host impl is in `host.rs`; calls go through `Runtime::call`.

mod host;

use crate::runtime::{ObjectKey, Runtime, Upgrade};
use crate::wasm::bindings::objects as wit;
use std::sync::Weak;
use wasmtime::component::{HasSelf, Linker};

/// Who is calling, for deadlock detection, and the runtime to call through.
pub struct ObjectsCtx {
    pub runtime: Weak<Runtime>,
    /// The calling object; None for the stateless worker (nothing ever waits on a worker).
    pub caller: Option<ObjectKey>,
    /// The current event's client asked for a WebSocket upgrade that no call has passed on
    /// yet: the first call forwarding an upgrade request may let its callee accept it.
    upgrade_offered: bool,
    /// The socket a callee accepted for the current event's client.
    upgrade: Option<Upgrade>,
}

impl ObjectsCtx {
    pub fn new(runtime: Weak<Runtime>, caller: Option<ObjectKey>) -> Self {
        ObjectsCtx {
            runtime,
            caller,
            upgrade_offered: false,
            upgrade: None,
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

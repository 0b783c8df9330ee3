//! The WIT `objects` interface (IDs and calls to other objects): its per-store state and
//! linker wiring. The host impl is in `host.rs`; calls go through `ObjectCalls`, which the
//! runtime implements.

mod host;

use crate::id::{IdKey, ObjectKey};
use crate::services::handoff::{Handoff, STREAM_HEADER};
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
    /// A stream the callee opened comes back with its response.
    fn call(
        &self,
        caller: Option<ObjectKey>,
        binding: String,
        id: String,
        name: Option<String>,
        request: Request,
        upgrade: bool,
    ) -> BoxFuture<'static, Result<(Response, Option<Handoff>), CallError>>;
}

/// Who is calling, for deadlock detection, and the host to call through.
pub struct ObjectsCtx {
    calls: Arc<dyn ObjectCalls>,
    /// The calling object; None for the stateless worker (nothing ever waits on a worker).
    pub caller: Option<ObjectKey>,
    /// The current event's client asked for a WebSocket upgrade that no call has passed on
    /// yet: the first call forwarding an upgrade request may let its callee accept it.
    upgrade_offered: bool,
    /// The socket a callee accepted for the current event's client, or the stream the
    /// latest call's callee opened.
    handoff: Option<Handoff>,
    /// The store's CPU turn, given up while a call waits: the callee may need it.
    pub turn: crate::wasm::cpu_gate::Turn,
}

impl ObjectsCtx {
    pub fn new(calls: Arc<dyn ObjectCalls>, caller: Option<ObjectKey>) -> Self {
        ObjectsCtx {
            calls,
            caller,
            upgrade_offered: false,
            handoff: None,
            turn: Default::default(),
        }
    }

    /// Starts an event; `upgrade` when its client asked for a WebSocket upgrade.
    pub fn begin(&mut self, upgrade: bool) {
        self.upgrade_offered = upgrade;
        self.handoff = None;
    }

    /// What a callee handed this event for its answer `response`: the socket it accepted,
    /// or the stream it opened if `response` still carries the stream's mark (see
    /// `STREAM_HEADER`, which never leaves the host).
    pub fn take_handoff(&mut self, response: &mut Response) -> Option<Handoff> {
        self.upgrade_offered = false;
        let mark = self.handoff.as_ref().and_then(Handoff::stream_mark);
        let carried = response
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(STREAM_HEADER) && Some(v) == mark.as_ref());
        response
            .headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case(STREAM_HEADER));
        let handoff = self.handoff.take()?;
        (mark.is_none() || carried).then_some(handoff)
    }
}

/// Adds the objects import, reached through `get` from the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut ObjectsCtx,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<ObjectsCtx>>(linker, get)
}

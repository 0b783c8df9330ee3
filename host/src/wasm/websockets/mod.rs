//! The WIT `websockets` interface: per-instance state (the socket accepted by the current
//! fetch, messages queued by the current event) and linker wiring; the host impl is in
//! `host.rs` and the sockets themselves in `crate::services::sockets`.

mod host;

use crate::id::ObjectKey;
use crate::services::sockets::{Accepted, Outgoing, Sockets};
use crate::wasm::bindings::websockets as wit;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

pub struct WebSocketsCtx {
    pub sockets: Arc<Sockets>,
    pub object: ObjectKey,
    /// True while a fetch of an upgrade request runs.
    pub upgrade: bool,
    /// The socket the current fetch accepted.
    pub accepted: Option<Accepted>,
    /// Messages and closes queued by the current event, in order.
    pub sends: Vec<(u64, Outgoing)>,
    /// Their payloads' bytes (a broadcast's shared buffer counted once per recipient), and
    /// the most one event may queue.
    queued_bytes: usize,
    max_queued_bytes: usize,
}

impl WebSocketsCtx {
    pub fn new(sockets: Arc<Sockets>, object: ObjectKey, max_queued_bytes: usize) -> Self {
        WebSocketsCtx {
            sockets,
            object,
            upgrade: false,
            accepted: None,
            sends: Vec::new(),
            queued_bytes: 0,
            max_queued_bytes,
        }
    }

    /// Starts an event; `upgrade` says whether it is a fetch of an upgrade request.
    pub fn begin(&mut self, upgrade: bool) {
        self.upgrade = upgrade;
        self.accepted = None;
        self.sends.clear();
        self.queued_bytes = 0;
    }

    /// Drops what a failed event did: its queued messages, and its accepted socket.
    pub fn discard(&mut self) {
        self.sends.clear();
        self.queued_bytes = 0;
        // Dropping an accepted socket removes it from the registry.
        self.accepted = None;
    }
}

/// Adds the websockets import, reached through `get` from the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut WebSocketsCtx,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<WebSocketsCtx>>(linker, get)
}

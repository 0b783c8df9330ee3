//! The WIT `websockets` interface: per-instance state (the socket accepted by the current
//! fetch, messages queued by the current event) and linker wiring; the host impl is in
//! `host.rs` and the sockets themselves in `crate::services::sockets`.

mod host;

use crate::id::ObjectKey;
use crate::services::sockets::{Accepted, Outgoing, Sockets};
use crate::wasm::bindings::websockets as wit;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

/// What one queued message costs the event's allowance besides its payload: its entry in
/// the event's queue. A broadcast's recipients share one payload, so without this an empty
/// message broadcast in a loop would cost nothing while its entries grew without bound.
pub const SEND_ENTRY_BYTES: usize = std::mem::size_of::<(u64, Outgoing)>();

pub struct WebSocketsCtx {
    pub sockets: Arc<Sockets>,
    pub object: ObjectKey,
    /// True while a fetch of an upgrade request runs.
    pub upgrade: bool,
    /// The socket the current fetch accepted.
    pub accepted: Option<Accepted>,
    /// Messages and closes queued by the current event, in order.
    pub sends: Vec<(u64, Outgoing)>,
    /// What they hold, in bytes (each payload once, however many recipients share it, and
    /// `SEND_ENTRY_BYTES` per queued message), and the most one event may queue.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdKey;
    use crate::services::memory::MemoryBudget;
    use crate::services::sockets::Connected;
    use crate::wasm::bindings::types::WebsocketMessage;
    use wit::Host;

    const MIB: usize = 1024 * 1024;

    /// An object with `n` connected sockets, and its context with an allowance of `max`.
    fn room(n: usize, max: usize) -> (WebSocketsCtx, Vec<Connected>) {
        let sockets = Arc::new(Sockets::new(16, 16 * MIB, MemoryBudget::new(usize::MAX)));
        let object = ObjectKey {
            namespace: 1,
            id: IdKey::new([3; 32]).id_from_name("room"),
        };
        let connected = (0..n)
            .map(|_| sockets.register(object, Vec::new()).connect())
            .collect();
        let mut ctx = WebSocketsCtx::new(sockets, object, max);
        ctx.begin(false);
        (ctx, connected)
    }

    /// Guards against a broadcast counting its one shared buffer once per recipient: 1 MiB
    /// to 1,000 sockets (1,000 MiB counted that way) fits an allowance of 8 MiB.
    #[test]
    fn a_broadcast_counts_its_shared_buffer_once() {
        let (mut ctx, _open) = room(1000, 8 * MIB);
        let sent = ctx
            .broadcast(WebsocketMessage::Binary(vec![1; MIB]), None, None)
            .unwrap();
        assert_eq!(sent, Ok(1000));
        assert_eq!(ctx.sends.len(), 1000);
        assert_eq!(ctx.queued_bytes, MIB + 1000 * SEND_ENTRY_BYTES);
    }

    /// Each recipient's entry still counts: empty broadcasts in a loop run out of allowance,
    /// and the one that does not fit queues nothing (all or none).
    #[test]
    fn empty_broadcasts_run_out_and_the_last_queues_nothing() {
        let (mut ctx, _open) = room(100, 64 * 1024);
        let mut refused = None;
        for _ in 0..1000 {
            match ctx
                .broadcast(WebsocketMessage::Binary(Vec::new()), None, None)
                .unwrap()
            {
                Ok(n) => assert_eq!(n, 100),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let refused = refused.expect("the allowance runs out");
        assert!(refused.contains("memory_bytes"), "{refused}");
        assert_eq!(
            ctx.sends.len() % 100,
            0,
            "a refused broadcast queues no one"
        );
        assert!(ctx.queued_bytes <= 64 * 1024);
    }
}

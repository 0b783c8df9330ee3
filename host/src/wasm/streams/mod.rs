//! The WIT `streams` interface: per-instance state (the stream the current fetch opened, the
//! chunks queued by the current event) and linker wiring; the host impl is in `host.rs` and
//! the streams themselves in `crate::services::streams`.

mod host;

use crate::id::ObjectKey;
use crate::services::streams::{Chunk, Opened, Streams};
use crate::wasm::bindings::streams as wit;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

pub struct StreamsCtx {
    pub streams: Arc<Streams>,
    pub object: ObjectKey,
    /// True while a fetch runs: only a fetch can open its response as a stream.
    fetch: bool,
    /// The stream the current fetch opened.
    pub opened: Option<Opened>,
    /// Chunks and ends queued by the current event, in order.
    pub writes: Vec<(u64, Chunk)>,
    /// Streams this event closed: they take no more chunks, though the end has not left.
    closed: HashSet<u64>,
    /// Chunks and bytes this event queued for each stream: with what the stream's client
    /// has not read yet, they must fit its queue (`stream_queue`, `stream_queue_bytes`).
    per_stream: HashMap<u64, (usize, usize)>,
    /// The queued chunks' bytes, and the most one event may queue.
    queued_bytes: usize,
    max_queued_bytes: usize,
}

impl StreamsCtx {
    pub fn new(streams: Arc<Streams>, object: ObjectKey, max_queued_bytes: usize) -> Self {
        StreamsCtx {
            streams,
            object,
            fetch: false,
            opened: None,
            writes: Vec::new(),
            closed: HashSet::new(),
            per_stream: HashMap::new(),
            queued_bytes: 0,
            max_queued_bytes,
        }
    }

    /// Starts an event; `fetch` says whether it is a fetch.
    pub fn begin(&mut self, fetch: bool) {
        self.fetch = fetch;
        self.opened = None;
        self.writes.clear();
        self.closed.clear();
        self.per_stream.clear();
        self.queued_bytes = 0;
    }

    /// Drops what a failed event did: its queued chunks, and the stream it opened.
    pub fn discard(&mut self) {
        self.writes.clear();
        self.closed.clear();
        self.per_stream.clear();
        self.queued_bytes = 0;
        // Dropping an opened stream removes it from the registry.
        self.opened = None;
    }
}

/// Adds the streams import, reached through `get` from the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut StreamsCtx,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<StreamsCtx>>(linker, get)
}

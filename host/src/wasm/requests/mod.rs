//! The WIT `requests` interface (deferred responses): the per-instance record of which
//! request is being handled, which are deferred and which were answered during the event.
//! The actor holds the waiting clients and settles them after each event.

mod host;

use crate::wasm::bindings::requests as wit;
use crate::wasm::bindings::types::Response;
use std::collections::BTreeSet;
use wasmtime::component::{HasSelf, Linker};

#[derive(Default)]
pub struct RequestsCtx {
    /// The handle of the request the current `fetch` handles, if the event is a fetch.
    pub current: Option<u64>,
    /// True once the current fetch called `defer`.
    pub deferred: bool,
    /// Deferred requests still waiting (as the guest may answer them).
    pub pending: BTreeSet<u64>,
    /// Answers given during the current event, released after its commit.
    pub responses: Vec<(u64, Response)>,
}

impl RequestsCtx {
    /// Starts an event; `current` is the handle of the fetch it handles, if any.
    pub fn begin(&mut self, current: Option<u64>) {
        self.current = current;
        self.deferred = false;
        self.responses.clear();
    }
}

/// Adds the requests import, reached through `get` from the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut RequestsCtx,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<RequestsCtx>>(linker, get)
}

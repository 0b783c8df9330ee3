//! The WIT `alarms` interface: its linker wiring. Its host impl (`host.rs`) works on the
//! same `StorageCtx` as storage, because an alarm change is part of the event's
//! transactional writes (a rolled-back transaction or a failed event undoes it).

mod host;

use crate::wasm::bindings::alarms as wit;
use crate::wasm::storage::StorageCtx;
use wasmtime::component::{HasSelf, Linker};

/// Adds the alarms import, reached through `get` from the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut StorageCtx,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<StorageCtx>>(linker, get)
}

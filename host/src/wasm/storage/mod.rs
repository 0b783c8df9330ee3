//! The WIT `storage` interface: its per-instance state and its linker wiring. The generated
//! trait's impl is in `host.rs`; the logic is in `crate::services::objstore`.

mod host;

pub use host::to_wit;

use crate::services::objstore::ObjectStore;
use crate::wasm::bindings::storage as wit;
use wasmtime::component::{HasSelf, Linker};

/// The storage state of one instance.
pub struct StorageCtx {
    pub store: ObjectStore,
}

/// Adds the storage import, reached through `get` from the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut StorageCtx,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<StorageCtx>>(linker, get)
}

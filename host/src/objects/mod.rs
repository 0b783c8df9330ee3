//! The WIT `objects` interface (IDs and calls to other objects): its per-store state and
//! linker wiring. The host impl is in `host.rs`; calls go through `Runtime::call`.

mod host;

use crate::bindings::objects as wit;
use crate::runtime::{ObjectKey, Runtime};
use std::sync::Weak;
use wasmtime::component::{HasSelf, Linker};

/// Who is calling, for deadlock detection, and the runtime to call through.
pub struct ObjectsCtx {
    pub runtime: Weak<Runtime>,
    /// The calling object; None for the stateless worker (nothing ever waits on a worker).
    pub caller: Option<ObjectKey>,
}

/// Adds the objects import, reached through `get` from the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut ObjectsCtx,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<ObjectsCtx>>(linker, get)
}

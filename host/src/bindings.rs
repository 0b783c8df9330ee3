//! The host's one `bindgen!`: Rust types and traits for the `dohost:object` WIT package.
//!
//! Imports are synchronous and trappable: storage answers from memory or a quick redb read,
//! so there is nothing to await, and the outer `wasmtime::Result` is kept for host bugs
//! while the WIT `result` carries what the guest should handle. Exports are async so that
//! epoch interruption can yield a long-running guest back to the executor.

wasmtime::component::bindgen!({
    world: "object",
    path: "../wit",
    imports: { default: trappable },
    exports: { default: async },
});

pub use dohost::object::alarms;
pub use dohost::object::storage;
pub use dohost::object::types;
pub use exports::dohost::object::handler;

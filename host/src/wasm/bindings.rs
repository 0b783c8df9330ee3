//! The host's bindings of the `dohost:object` WIT package: the object world, and the worker
//! world sharing its types and its `objects` import.
//!
//! Imports are trappable — the outer `wasmtime::Result` is kept for host bugs while the WIT
//! `result` carries what the guest should handle — and synchronous, except those that may
//! wait: `objects.fetch` (another object) and the storage reads (a database backend answers
//! over the network). Exports are async so that epoch interruption can yield a
//! long-running guest back to the executor.

wasmtime::component::bindgen!({
    world: "object",
    path: "../wit",
    imports: {
        "dohost:object/objects.fetch": async | trappable,
        "dohost:object/storage.get": async | trappable,
        "dohost:object/storage.get-many": async | trappable,
        "dohost:object/storage.put": async | trappable,
        "dohost:object/storage.put-many": async | trappable,
        "dohost:object/storage.delete": async | trappable,
        "dohost:object/storage.delete-many": async | trappable,
        "dohost:object/storage.list": async | trappable,
        "dohost:object/alarms.get-alarm": async | trappable,
        "dohost:object/sql.exec": async | trappable,
        "dohost:object/sql.query": async | trappable,
        "dohost:object/sql.database-size": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: { "dohost:object/sql.cursor": crate::wasm::sql::Cursor },
});

/// The worker world. Its `types` and `objects` are the object world's, so one host impl of
/// `objects` serves both.
pub mod worker {
    wasmtime::component::bindgen!({
        world: "worker",
        path: "../wit",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "dohost:object/types": super::dohost::object::types,
            "dohost:object/objects": super::dohost::object::objects,
        },
    });
}

pub use dohost::object::alarms;
pub use dohost::object::objects;
pub use dohost::object::requests;
pub use dohost::object::sql;
pub use dohost::object::storage;
pub use dohost::object::streams;
pub use dohost::object::types;
pub use dohost::object::websockets;
pub use exports::dohost::object::handler;

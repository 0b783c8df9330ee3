//! The wasmtime side: the engine, component loading and caching, each store's state and
//! limits, the bindings, and one module per WIT interface.

pub mod alarms;
pub mod bindings;
pub mod cpu_gate;
pub mod engine;
pub mod failure;
pub mod guest_log;
pub mod objects;
pub mod requests;
pub mod sql;
pub mod state;
pub mod storage;
pub mod streams;
pub mod websockets;

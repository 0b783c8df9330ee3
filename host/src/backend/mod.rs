//! The storage backend: what is durable, and the committer that makes it so. Knows nothing
//! of wasmtime or of objects' instances.

pub mod committer;
pub mod redb;

//! Services the objects' interfaces stand on, with no wasmtime in them: the object store
//! (an object's view of its storage), the alarm scheduler and its clock, the socket and
//! stream registries, the call graph, instance slots, the HTTP client nodes of a cluster
//! talk to each other with, and the check of a presented secret.

pub mod by_object;
pub mod calls;
pub mod guest_output;
pub mod handoff;
pub mod memory;
pub mod metrics;
pub mod objstore;
pub mod peer;
pub mod scheduler;
pub mod secret;
pub mod slots;
pub mod sockets;
pub mod streams;
pub mod trap_log;
pub mod windows;

//! Services the objects' interfaces stand on, with no wasmtime in them: the object store
//! (an object's view of its storage), the alarm scheduler and its clock, the socket registry, the
//! call graph and instance slots.

pub mod calls;
pub mod objstore;
pub mod scheduler;
pub mod slots;
pub mod sockets;

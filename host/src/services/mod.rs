//! Services the objects' interfaces stand on, with no wasmtime in them: the object store
//! (an object's view of its storage), the alarm scheduler and its clock, the socket registry.

pub mod objstore;
pub mod scheduler;
pub mod sockets;

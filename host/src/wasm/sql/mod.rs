//! The WIT `sql` interface: its cursors and its linker wiring. The generated traits' impls
//! are in `host.rs`; the database is `crate::services::objstore::sql`.

mod host;

use crate::wasm::bindings::sql as wit;
use crate::wasm::state::ObjectState;
use rusqlite::types::Value;
use std::collections::VecDeque;
use wasmtime::component::{HasSelf, Linker};

/// A statement's result held for the guest, handed out a few rows at a time.
pub struct Cursor {
    columns: Vec<String>,
    rows: VecDeque<Vec<Value>>,
    rows_read: u64,
    rows_written: u64,
    /// What the rows count against the instance's allowance for held results.
    bytes: usize,
}

/// Adds the sql import; its state is the object's store data itself (the storage it runs
/// in, the CPU budget that stops it, the resource table holding its cursors).
pub fn add_to_linker(linker: &mut Linker<ObjectState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<ObjectState, HasSelf<ObjectState>>(linker, |s| s)
}

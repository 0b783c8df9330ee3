//! `impl requests::Host for RequestsCtx`.

use super::RequestsCtx;
use crate::wasm::bindings::requests as wit;
use crate::wasm::bindings::types::Response;

impl wit::Host for RequestsCtx {
    fn defer(&mut self) -> wasmtime::Result<Option<u64>> {
        let Some(handle) = self.current else {
            return Ok(None);
        };
        if !self.deferred {
            self.deferred = true;
            self.pending.insert(handle);
        }
        Ok(Some(handle))
    }

    fn respond(&mut self, handle: u64, response: Response) -> wasmtime::Result<bool> {
        if !self.pending.remove(&handle) {
            return Ok(false);
        }
        self.responses.push((handle, response));
        Ok(true)
    }

    fn pending(&mut self) -> wasmtime::Result<Vec<u64>> {
        Ok(self.pending.iter().copied().collect())
    }

    fn is_open(&mut self, handle: u64) -> wasmtime::Result<bool> {
        // `pending` loses a handle when it is answered, expires, or its client goes away
        // (the actor prunes those before each event).
        Ok(self.pending.contains(&handle))
    }
}

//! `impl streams::Host for StreamsCtx`.

use super::StreamsCtx;
use crate::services::streams::Chunk;
use crate::wasm::bindings::streams as wit;

type Res<T> = wasmtime::Result<Result<T, String>>;

impl StreamsCtx {
    /// The stream is this object's, open, its client still there, and not closed by this
    /// event: it can take chunks.
    fn check(&self, id: u64) -> Result<(), String> {
        if !self.closed.contains(&id) && self.streams.owns_open(&self.object, id) {
            Ok(())
        } else {
            Err(format!(
                "stream {id} is not open on this object (closed, or its client went away)"
            ))
        }
    }

    /// Queues `chunk` for `id` with the event's other output, within the event's allowance
    /// (its instance's memory limit): chunks wait in the host until the event's writes are
    /// durable, so an event must not be able to pile them up without bound.
    fn queue(&mut self, id: u64, chunk: Chunk, len: usize) -> Result<(), String> {
        if self.queued_bytes + len > self.max_queued_bytes {
            return Err(format!(
                "this event's queued chunks would exceed {} bytes (its memory limit, \
                 memory_bytes); write less per event",
                self.max_queued_bytes
            ));
        }
        self.queued_bytes += len;
        self.writes.push((id, chunk));
        Ok(())
    }
}

impl wit::Host for StreamsCtx {
    fn open(&mut self, tags: Vec<String>) -> Res<u64> {
        if !self.fetch {
            return Ok(Err("a stream can only be opened during a fetch".into()));
        }
        if self.opened.is_some() {
            return Ok(Err(
                "this fetch already opened its response as a stream".into()
            ));
        }
        match self.streams.open(self.object, tags) {
            Ok(opened) => {
                let id = opened.id;
                self.opened = Some(opened);
                Ok(Ok(id))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    fn write(&mut self, id: u64, chunk: Vec<u8>) -> Res<()> {
        if let Err(e) = self.check(id) {
            return Ok(Err(e));
        }
        if chunk.is_empty() {
            // Nothing to send; an empty chunk would end a chunked body early on the wire.
            return Ok(Ok(()));
        }
        let len = chunk.len();
        Ok(self.queue(id, Chunk::Data(chunk.into()), len))
    }

    fn close(&mut self, id: u64) -> Res<()> {
        if let Err(e) = self.check(id) {
            return Ok(Err(e));
        }
        self.closed.insert(id);
        self.writes.push((id, Chunk::End));
        Ok(Ok(()))
    }

    fn get_streams(&mut self, tag: Option<String>) -> wasmtime::Result<Vec<u64>> {
        let mut ids = self.streams.list(&self.object, tag.as_deref());
        ids.retain(|id| !self.closed.contains(id));
        Ok(ids)
    }

    fn get_tags(&mut self, id: u64) -> wasmtime::Result<Vec<String>> {
        Ok(self.streams.tags(&self.object, id))
    }

    fn is_open(&mut self, id: u64) -> wasmtime::Result<bool> {
        Ok(self.check(id).is_ok())
    }
}

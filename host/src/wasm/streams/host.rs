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
        // Refused here, where the object can handle it: the queue could never take this
        // event's chunks at once, so the stream would be cut however fast its client reads.
        // (A client that has not read what came before is still cut at delivery: the
        // object's later writes fail, and the client reconnects rather than miss a chunk.)
        let (chunks, bytes) = self.per_stream.get(&id).copied().unwrap_or_default();
        let queue = self.streams.queue_limits();
        if chunks + 1 > queue.chunks || bytes + len > queue.bytes {
            return Err(format!(
                "stream {id} cannot take this chunk: this event's chunks for it would come to \
                 {} bytes in {} chunks, more than its queue holds ({} bytes: \
                 stream_queue_bytes; {} chunks: stream_queue); write the rest in a later event",
                bytes + len,
                chunks + 1,
                queue.bytes,
                queue.chunks
            ));
        }
        self.per_stream.insert(id, (chunks + 1, bytes + len));
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

//! `impl websockets::Host for WebSocketsCtx`.

use super::{SEND_ENTRY_BYTES, WebSocketsCtx};
use crate::services::sockets::{
    CLOSE_APPLICATION, CLOSE_NORMAL, MAX_ATTACHMENT_BYTES, MAX_TAG_BYTES, MAX_TAGS, Outgoing,
};
use crate::wasm::bindings::types::WebsocketMessage;
use crate::wasm::bindings::websockets as wit;

type Res<T> = wasmtime::Result<Result<T, String>>;

impl WebSocketsCtx {
    /// The socket is this object's and still open: it can take messages.
    fn check(&self, ws: u64) -> Result<(), String> {
        if self.sockets.owns_open(&self.object, ws) {
            Ok(())
        } else {
            Err(format!("WebSocket {ws} is not open on this object"))
        }
    }

    /// The socket is this object's, open or closing: its tags and attachment are readable.
    fn check_readable(&self, ws: u64) -> Result<(), String> {
        if self.sockets.owns(&self.object, ws) {
            Ok(())
        } else {
            Err(format!("WebSocket {ws} is not a socket of this object"))
        }
    }
}

/// A guest's message as the host queues it.
fn outgoing(message: WebsocketMessage) -> Outgoing {
    match message {
        WebsocketMessage::Text(t) => Outgoing::text(t),
        WebsocketMessage::Binary(b) => Outgoing::Binary(b.into()),
    }
}

impl WebSocketsCtx {
    fn over_allowance(&self) -> String {
        format!(
            "this event's queued sends would exceed {} bytes (its memory limit, \
             memory_bytes); send less per event",
            self.max_queued_bytes
        )
    }

    /// Takes `bytes` of the event's allowance (its instance's memory limit), if they fit:
    /// sends wait in the host until the event's writes are durable, so an event must not
    /// be able to pile them up without bound.
    fn take(&mut self, bytes: usize) -> Result<(), String> {
        match self.queued_bytes.checked_add(bytes) {
            Some(total) if total <= self.max_queued_bytes => {
                self.queued_bytes = total;
                Ok(())
            }
            _ => Err(self.over_allowance()),
        }
    }

    /// Queues `out` for `ws` with the event's other sends, within the event's allowance.
    fn queue(&mut self, ws: u64, out: Outgoing) -> Result<(), String> {
        self.take(out.queued_bytes() + SEND_ENTRY_BYTES)?;
        self.sends.push((ws, out));
        Ok(())
    }
}

impl wit::Host for WebSocketsCtx {
    fn accept(&mut self, tags: Vec<String>) -> Res<u64> {
        if !self.upgrade {
            return Ok(Err(
                "this request is not a WebSocket upgrade (or not a fetch)".into(),
            ));
        }
        if self.accepted.is_some() {
            return Ok(Err("this request's WebSocket was already accepted".into()));
        }
        if tags.len() > MAX_TAGS || tags.iter().any(|t| t.len() > MAX_TAG_BYTES) {
            return Ok(Err(format!(
                "at most {MAX_TAGS} tags of at most {MAX_TAG_BYTES} bytes each"
            )));
        }
        let accepted = self.sockets.register(self.object, tags);
        let id = accepted.id;
        self.accepted = Some(accepted);
        Ok(Ok(id))
    }

    fn send(&mut self, ws: u64, message: WebsocketMessage) -> Res<()> {
        if let Err(e) = self.check(ws) {
            return Ok(Err(e));
        }
        let out = outgoing(message);
        if let Err(e) = self.queue(ws, out) {
            return Ok(Err(e));
        }
        Ok(Ok(()))
    }

    fn broadcast(
        &mut self,
        message: WebsocketMessage,
        tag: Option<String>,
        except: Option<u64>,
    ) -> Res<u32> {
        // One buffer, shared by every recipient's queue.
        let out = outgoing(message);
        let recipients: Vec<u64> = self
            .sockets
            .list(&self.object, tag.as_deref())
            .into_iter()
            .filter(|ws| Some(*ws) != except)
            .collect();
        // The recipients share the payload, so it counts once; each recipient's entry
        // counts too. All or none: past the event's allowance, no recipient gets it.
        let entries = SEND_ENTRY_BYTES.saturating_mul(recipients.len());
        if let Err(e) = self.take(out.queued_bytes().saturating_add(entries)) {
            return Ok(Err(e));
        }
        let sent = recipients.len() as u32;
        self.sends
            .extend(recipients.into_iter().map(|ws| (ws, out.clone())));
        Ok(Ok(sent))
    }

    fn close(&mut self, ws: u64, code: u16, reason: String) -> Res<()> {
        if let Err(e) = self.check(ws) {
            return Ok(Err(e));
        }
        if !(code == CLOSE_NORMAL || CLOSE_APPLICATION.contains(&code)) {
            return Ok(Err(format!("close code {code} is not 1000 or 3000-4999")));
        }
        if reason.len() > 123 {
            return Ok(Err("a close reason is at most 123 bytes".into()));
        }
        // Counted like a message: a socket stays open until the event's sends leave, so
        // one event could otherwise close it again and again.
        if let Err(e) = self.queue(ws, Outgoing::Close(code, reason)) {
            return Ok(Err(e));
        }
        Ok(Ok(()))
    }

    fn get_websockets(&mut self, tag: Option<String>) -> wasmtime::Result<Vec<u64>> {
        Ok(self.sockets.list(&self.object, tag.as_deref()))
    }

    fn get_tags(&mut self, ws: u64) -> wasmtime::Result<Vec<String>> {
        Ok(if self.check_readable(ws).is_ok() {
            self.sockets.tags(ws)
        } else {
            Vec::new()
        })
    }

    fn serialize_attachment(&mut self, ws: u64, value: Vec<u8>) -> Res<()> {
        if let Err(e) = self.check(ws) {
            return Ok(Err(e));
        }
        if value.len() > MAX_ATTACHMENT_BYTES {
            return Ok(Err(format!(
                "attachment of {} bytes is over the limit of {MAX_ATTACHMENT_BYTES}",
                value.len()
            )));
        }
        self.sockets.set_attachment(ws, value);
        Ok(Ok(()))
    }

    fn deserialize_attachment(&mut self, ws: u64) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(if self.check_readable(ws).is_ok() {
            self.sockets.attachment(ws)
        } else {
            None
        })
    }

    fn set_auto_response(&mut self, pair: Option<(String, String)>) -> wasmtime::Result<()> {
        self.sockets.set_auto_response(self.object, pair);
        Ok(())
    }

    fn get_auto_response_timestamp(&mut self, ws: u64) -> wasmtime::Result<Option<u64>> {
        Ok(self.sockets.auto_response_at(ws))
    }
}

//! One WebSocket connection at the edge: client messages become events of the socket's
//! object (waking it if evicted); what the object sends goes to the client.

use super::convert::error_chain;
use crate::object::{Event, SocketEvent};
use crate::runtime::Dispatch;
use crate::services::handoff::Handoff;
use crate::services::sockets::{
    CLOSE_ABNORMAL, CLOSE_NO_STATUS, CLOSE_QUEUE_OVERFLOW, CLOSE_TOO_BIG, Outgoing,
};
use crate::wasm::bindings::types::WebsocketMessage;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;

/// Runs one accepted connection until either side closes it: client messages become events
/// of the object (waking it if evicted), queued messages go to the client.
pub async fn run_connection(rt: Arc<dyn Dispatch>, upgrade: Handoff, socket: WebSocket) {
    let (object, accepted) = match upgrade {
        Handoff::Socket { object, socket } => (object, socket),
        Handoff::RelayedSocket(upstream) => {
            return super::forward_ws::relay(socket, *upstream).await;
        }
        // `respond` sends streams as bodies, never here.
        Handoff::Stream(_) | Handoff::RelayedStream(_) => return,
    };
    let crate::services::sockets::Connected {
        id,
        mut out,
        queued,
        kill,
    } = accepted.connect();
    let sockets = rt.sockets().clone();
    let (mut sink, mut stream) = socket.split();
    let deliver = |event: Event| {
        if let Err(e) = rt.clone().deliver(object, event) {
            tracing::warn!(socket = id, error = ?e, "cannot deliver a WebSocket event");
        }
    };
    enum End {
        /// The object closed the socket (it knows; no close event).
        ClosedByObject(u16, String),
        /// The client closed, or the connection ended: tell the object.
        Closed(u16, String, bool),
        /// A message over the limit.
        TooBig,
        /// The client could not keep up.
        Overflow,
        /// The connection failed: tell the object, and that it closed.
        Failed(String),
    }
    // The writer, the reader and the overflow signal race; a writer stuck on a client that
    // does not read is abandoned when the kill comes.
    let messages = &rt.metrics().websocket_messages;
    let (sent, received) = (
        messages.with_label_values(&["out"]),
        messages.with_label_values(&["in"]),
    );
    let writer = async {
        loop {
            let outgoing = out.recv().await;
            let len = outgoing.as_ref().map_or(0, Outgoing::queued_bytes);
            let message = match outgoing {
                // Valid UTF-8 by construction (a WIT string, a host string): checked again
                // here rather than trusted, which costs a scan and no copy.
                Some(Outgoing::Text(t)) => match axum::extract::ws::Utf8Bytes::try_from(t) {
                    Ok(t) => Message::Text(t),
                    Err(_) => {
                        queued.written(len);
                        continue;
                    }
                },
                Some(Outgoing::Binary(b)) => Message::Binary(b),
                Some(Outgoing::Close(code, reason)) => return End::ClosedByObject(code, reason),
                None => return End::Closed(CLOSE_ABNORMAL, "closed".into(), false),
            };
            let written = sink.send(message).await;
            queued.written(len);
            if written.is_err() {
                return End::Closed(CLOSE_ABNORMAL, "the connection broke".into(), false);
            }
            sent.inc();
        }
    };
    let reader = async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) => {
                    received.inc();
                    if !sockets.auto_respond(id, t.as_str(), rt.now_ms()) {
                        deliver(Event::Socket(Box::new(SocketEvent::Message(
                            id,
                            WebsocketMessage::Text(t.to_string()),
                        ))));
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    received.inc();
                    deliver(Event::Socket(Box::new(SocketEvent::Message(
                        id,
                        WebsocketMessage::Binary(b.to_vec()),
                    ))))
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (f.code, f.reason.to_string()))
                        .unwrap_or((CLOSE_NO_STATUS, String::new()));
                    return End::Closed(code, reason, true);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if is_too_big(&e) {
                        return End::TooBig;
                    }
                    return End::Failed(format!("{e:#}"));
                }
                None => {
                    return End::Closed(
                        CLOSE_ABNORMAL,
                        "the connection closed without a close frame".into(),
                        false,
                    );
                }
            }
        }
    };
    let kill = async {
        match kill.await {
            Ok(()) => End::Overflow,
            // The sender went with the registry entry: not a kill.
            Err(_) => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        e = writer => e,
        e = reader => e,
        e = kill => e,
    };
    // What to tell the client, and what to tell the object.
    type Frame = Option<(u16, String)>;
    type Ended = Option<(u16, String, bool)>;
    let (frame, ended): (Frame, Ended) = match end {
        End::ClosedByObject(code, reason) => (Some((code, reason)), None),
        End::Closed(code, reason, clean) => (None, Some((code, reason, clean))),
        End::TooBig => (
            Some((CLOSE_TOO_BIG, "message too big".into())),
            Some((CLOSE_TOO_BIG, "message too big".into(), false)),
        ),
        End::Overflow => (
            Some((CLOSE_QUEUE_OVERFLOW, "send queue overflow".into())),
            Some((CLOSE_QUEUE_OVERFLOW, "send queue overflow".into(), false)),
        ),
        End::Failed(error) => {
            deliver(Event::Socket(Box::new(SocketEvent::Error(
                id,
                error.clone(),
            ))));
            (None, Some((CLOSE_ABNORMAL, error, false)))
        }
    };
    if let Some((code, reason)) = frame {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        // Best effort, bounded: a client that does not read may never take the frame.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), sink.send(frame)).await;
    }
    // The entry goes only after the object has handled every message queued before this
    // point (they may read the socket's attachment): the last event for it removes it.
    sockets.mark_closed(id);
    let last = match ended {
        Some((code, reason, was_clean)) => SocketEvent::Close(id, code, reason, was_clean),
        None => SocketEvent::Forget(id),
    };
    if let Err(e) = rt.clone().deliver(object, Event::Socket(Box::new(last))) {
        tracing::warn!(socket = id, error = ?e, "cannot deliver a WebSocket close");
        sockets.remove(id);
    }
}

/// A message over `max_ws_message_bytes` (tungstenite's capacity error, however wrapped).
fn is_too_big(e: &axum::Error) -> bool {
    error_chain(e).any(|c| {
        matches!(
            c.downcast_ref::<tungstenite::Error>(),
            Some(tungstenite::Error::Capacity(_))
        )
    })
}

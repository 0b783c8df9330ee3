//! What an answer hands its client besides its bytes: a WebSocket an object accepted for the
//! client's upgrade, or a stream an object opened as the response's body; either may come
//! from another node of a cluster, relayed.

use super::peer::Upstream;
use super::sockets::Accepted;
use super::streams::Opened;
use crate::id::ObjectKey;

/// The header that marks, in the response a call returns to its caller, the stream the
/// callee opened: the caller's answer carries the stream on only while it still carries
/// this header (the host takes it off before the answer leaves). Between nodes it marks a
/// response whose body is a stream.
pub const STREAM_HEADER: &str = "x-dohost-stream";

pub enum Handoff {
    /// A WebSocket accepted by an object on this node.
    Socket { object: ObjectKey, socket: Accepted },
    /// A WebSocket accepted by an object another node serves (a call to it passed the
    /// upgrade on): the client is relayed to this WebSocket to that node.
    RelayedSocket(Box<Upstream>),
    /// A stream opened by an object on this node.
    Stream(Opened),
    /// A stream opened by an object another node serves: its body, relayed.
    RelayedStream(Box<hyper::body::Incoming>),
}

impl Handoff {
    /// Whether an answer of `status` can carry this: a WebSocket only a 101, a stream
    /// anything else.
    pub fn fits(&self, status: u16) -> bool {
        match self {
            Handoff::Socket { .. } | Handoff::RelayedSocket(_) => status == 101,
            Handoff::Stream(_) | Handoff::RelayedStream(_) => status != 101,
        }
    }

    pub fn is_stream(&self) -> bool {
        matches!(self, Handoff::Stream(_) | Handoff::RelayedStream(_))
    }

    /// The value of `STREAM_HEADER` that marks this stream in a response.
    pub fn stream_mark(&self) -> Option<String> {
        match self {
            Handoff::Stream(opened) => Some(opened.id.to_string()),
            Handoff::RelayedStream(_) => Some("relayed".into()),
            _ => None,
        }
    }
}

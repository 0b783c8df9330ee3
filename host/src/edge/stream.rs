//! One streamed response at the edge: its head and first chunk, then the chunks its object
//! writes, until the object ends it, the client goes or is cut; a server-sent events stream
//! gets a comment line whenever it stays silent for `sse_keepalive`.

use super::convert::to_http;
use super::error::HttpError;
use crate::runtime::Dispatch;
use crate::services::handoff::Handoff;
use crate::services::streams::{Chunk, StreamEnds};
use crate::wasm::bindings::types as wit;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::time::Duration;

/// What a server-sent events client skips: a comment line, written to a silent stream.
pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// Marks a response whose body is a stream (in its extensions): the cluster's call route
/// tells the calling node so, which then relays the body instead of reading it whole.
#[derive(Clone, Copy)]
pub struct Streamed;

/// The response for a stream an object opened (here or, relayed, on another node): the
/// object's status and headers, its returned body first, then the stream.
pub fn respond(
    rt: &dyn Dispatch,
    mut response: wit::Response,
    handoff: Handoff,
    abort: Option<super::listener::ConnectionAbort>,
) -> Result<Response, HttpError> {
    let first = Bytes::from(std::mem::take(&mut response.body));
    // The length is not known: the body goes chunked.
    response
        .headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
    let mut http = to_http(response)?;
    let sse = http
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let keepalive = Some(rt.limits().sse_keepalive).filter(|d| sse && !d.is_zero());
    let first = futures::stream::iter((!first.is_empty()).then(|| Ok(first)));
    let body = match handoff {
        Handoff::Stream(opened) => {
            Body::from_stream(first.chain(chunks(opened.connect(abort.map(|a| a.0)), keepalive)))
        }
        Handoff::RelayedStream(incoming) => {
            // The node that serves the object sends the keep-alives.
            let relayed = http_body_util::BodyDataStream::new(*incoming)
                .map(|r| r.map_err(std::io::Error::other));
            Body::from_stream(first.chain(relayed))
        }
        Handoff::Socket { .. } | Handoff::RelayedSocket(_) => {
            return Err(HttpError::ObjectFailed(
                "a WebSocket was handed to an answer that is not a 101".into(),
            ));
        }
    };
    *http.body_mut() = body;
    http.extensions_mut().insert(Streamed);
    Ok(http)
}

/// The chunks of a stream as its object writes them, until it ends it; cut (an error,
/// which aborts the response) when its client is too slow. Dropped when the client goes,
/// which takes the stream out of the registry. With `keepalive`, one timer per stream,
/// pushed back at each chunk, writes a comment whenever it stays silent that long.
fn chunks(
    ends: StreamEnds,
    keepalive: Option<Duration>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    let silence = keepalive.map(|after| (after, Box::pin(tokio::time::sleep(after))));
    futures::stream::unfold(Some((ends, silence)), |state| async move {
        let (mut ends, mut silence) = state?;
        let bytes = tokio::select! {
            biased;
            _ = &mut ends.kill => {
                let cut = std::io::Error::other(
                    "stream cut: its client read too slowly (stream_queue, \
                     stream_queue_bytes), or a chunk for it was lost",
                );
                return Some((Err(cut), None));
            }
            chunk = ends.out.recv() => match chunk? {
                Chunk::Data(bytes) => {
                    ends.queued.written(bytes.len());
                    bytes
                }
                Chunk::End => return None,
            },
            () = silent(&mut silence) => Bytes::from_static(KEEPALIVE),
        };
        if let Some((after, timer)) = silence.as_mut() {
            timer.as_mut().reset(tokio::time::Instant::now() + *after);
        }
        Some((Ok(bytes), Some((ends, silence))))
    })
}

/// Resolves when the stream's keep-alive timer fires; never without one.
async fn silent(silence: &mut Option<(Duration, Pin<Box<tokio::time::Sleep>>)>) {
    match silence {
        Some((_, timer)) => timer.as_mut().await,
        None => std::future::pending().await,
    }
}

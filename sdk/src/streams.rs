//! Streamed responses and server-sent events: a `fetch` opens its response as a [`Stream`],
//! and this or any later event writes to it by handle; [`SseEvent`] frames server-sent
//! events.
//!
//! ```no_run
//! # use dohost_sdk::{Request, Response, Result, SseEvent, State};
//! # struct Feed { state: State }
//! # impl Feed { fn fetch(&mut self, req: Request) -> Result<Response> {
//! match req.path() {
//!     "/subscribe" => {
//!         // Status and headers leave at once; the body is the stream's first chunk.
//!         self.state.open_stream(&["feed"])?;
//!         Ok(Response::event_stream(""))
//!     }
//!     "/publish" => {
//!         let event = SseEvent::new(req.text()?).event("news");
//!         for stream in self.state.get_streams(Some("feed")) {
//!             // Leaves once this event's writes are durable.
//!             stream.send_event(&event)?;
//!         }
//!         Ok(Response::text("sent"))
//!     }
//!     _ => Ok(Response::empty(404)),
//! }
//! # } }
//! ```

use crate::__private::bindings::dohost::object::streams as wit;
use crate::{Error, Response, Result, State};

/// One of the object's open streamed responses, stable across hibernation. The host holds
/// it: the object may be evicted and the stream stays open; a later event writes to it
/// through [`State::get_streams`] or a handle it kept ([`Stream::from_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stream {
    id: u64,
}

impl Stream {
    /// The handle of a stream whose ID the object kept (in storage, say).
    pub fn from_id(id: u64) -> Stream {
        Stream { id }
    }

    /// The stream's host-wide identifier.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Writes a chunk; it leaves once the current event's writes are durable, after the
    /// chunks written before it. Fails once the stream is closed or its client went away.
    pub fn write(&self, chunk: &[u8]) -> Result<()> {
        wit::write(self.id, chunk).map_err(Error::msg)
    }

    /// Writes text.
    pub fn write_text(&self, text: &str) -> Result<()> {
        self.write(text.as_bytes())
    }

    /// Writes one server-sent event.
    pub fn send_event(&self, event: &SseEvent) -> Result<()> {
        self.write_text(&event.to_string())
    }

    /// Ends the stream after the chunks written before.
    pub fn close(&self) -> Result<()> {
        wit::close(self.id).map_err(Error::msg)
    }

    /// True while the stream is open and its client still reads it.
    pub fn is_open(&self) -> bool {
        wit::is_open(self.id)
    }

    /// The tags the stream was opened with.
    pub fn tags(&self) -> Vec<String> {
        wit::get_tags(self.id)
    }
}

impl State {
    /// Opens the response of the request being handled as a stream, with tags; the `fetch`
    /// then returns the stream's status and headers (e.g. [`Response::event_stream`]),
    /// whose body is the stream's first chunk. Fails outside a `fetch`, for a second
    /// stream in one fetch, and past the host's limits on open streams.
    pub fn open_stream(&self, tags: &[&str]) -> Result<Stream> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        wit::open(&tags).map(|id| Stream { id }).map_err(Error::msg)
    }

    /// The object's open streams, or those carrying `tag`: streams that were closed or
    /// whose client went away are not among them.
    pub fn get_streams(&self, tag: Option<&str>) -> Vec<Stream> {
        wit::get_streams(tag)
            .into_iter()
            .map(|id| Stream { id })
            .collect()
    }
}

impl Response {
    /// 200 `text/event-stream` (not cached, not buffered by proxies), with `first` as the
    /// body's first chunk: the answer to a request whose response was opened as a stream
    /// for server-sent events. The host writes a comment line to a silent one every
    /// `sse_keepalive_ms`.
    pub fn event_stream(first: impl Into<String>) -> Response {
        Response::text(first)
            .with_header("content-type", "text/event-stream")
            .with_header("cache-control", "no-cache")
            .with_header("x-accel-buffering", "no")
    }
}

/// One server-sent event, framed as the `EventSource` API reads it.
///
/// ```
/// use dohost_sdk::SseEvent;
/// let framed = SseEvent::new("line one\nline two").id("7").event("note").to_string();
/// assert_eq!(framed, "id: 7\nevent: note\ndata: line one\ndata: line two\n\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
    retry_ms: Option<u64>,
}

impl SseEvent {
    /// An event carrying `data` (a multi-line value is sent as one `data:` line each, and
    /// arrives whole).
    pub fn new(data: impl Into<String>) -> SseEvent {
        SseEvent {
            data: data.into(),
            ..SseEvent::default()
        }
    }

    /// Sets its ID: a client that reconnects sends the last one it had as `Last-Event-ID`
    /// ([`Request::last_event_id`](crate::Request::last_event_id)). Line breaks in it are
    /// dropped, as they would end the field.
    pub fn id(mut self, id: impl Into<String>) -> SseEvent {
        self.id = Some(single_line(id.into()));
        self
    }

    /// Sets its type (`addEventListener(type, ...)` in a browser; `message` without one).
    pub fn event(mut self, event: impl Into<String>) -> SseEvent {
        self.event = Some(single_line(event.into()));
        self
    }

    /// Asks the client to wait this long before reconnecting.
    pub fn retry_ms(mut self, ms: u64) -> SseEvent {
        self.retry_ms = Some(ms);
        self
    }
}

impl std::fmt::Display for SseEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(id) = &self.id {
            writeln!(f, "id: {id}")?;
        }
        if let Some(event) = &self.event {
            writeln!(f, "event: {event}")?;
        }
        if let Some(ms) = self.retry_ms {
            writeln!(f, "retry: {ms}")?;
        }
        // CRLF, LF and CR all end a line in the format.
        let data = self.data.replace("\r\n", "\n").replace('\r', "\n");
        for line in data.split('\n') {
            writeln!(f, "data: {line}")?;
        }
        writeln!(f)
    }
}

fn single_line(s: String) -> String {
    s.replace(['\r', '\n'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_data_is_one_data_line_each_and_fields_stay_on_one_line() {
        let framed = SseEvent::new("a\r\nb\rc\n")
            .id("1\n2")
            .event("x\ry")
            .retry_ms(500)
            .to_string();
        assert_eq!(
            framed,
            "id: 12\nevent: xy\nretry: 500\ndata: a\ndata: b\ndata: c\ndata: \n\n"
        );
        assert_eq!(SseEvent::new("").to_string(), "data: \n\n");
    }
}

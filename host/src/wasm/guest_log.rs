//! Guest stdout and stderr: each line goes to the host's log, tagged with the object,
//! within the object's allowance (`GuestOutput`).

use crate::services::guest_output::{GuestOutput, Verdict};
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A line longer than this is logged in pieces, so a guest printing without newlines cannot
/// grow the host's buffer without bound.
const MAX_LINE_BYTES: usize = 16 * 1024;

/// One of an instance's output streams.
#[derive(Clone)]
pub struct GuestLog {
    inner: Arc<Mutex<LineBuffer>>,
}

struct LineBuffer {
    object: Arc<str>,
    stream: &'static str,
    buf: Vec<u8>,
    output: Arc<GuestOutput>,
}

impl GuestLog {
    pub fn new(object: Arc<str>, stream: &'static str, output: Arc<GuestOutput>) -> Self {
        GuestLog {
            inner: Arc::new(Mutex::new(LineBuffer {
                object,
                stream,
                buf: Vec::new(),
                output,
            })),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut lb = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        lb.buf.extend_from_slice(bytes);
        while let Some(nl) = lb.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = lb.buf.drain(..=nl).collect();
            lb.emit(&line[..line.len() - 1]);
        }
        if lb.buf.len() > MAX_LINE_BYTES {
            let chunk = std::mem::take(&mut lb.buf);
            lb.emit(&chunk);
        }
    }

    /// Logs what is left without a newline (at the end of an event).
    pub fn flush_partial(&self) {
        let mut lb = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !lb.buf.is_empty() {
            let chunk = std::mem::take(&mut lb.buf);
            lb.emit(&chunk);
        }
    }
}

impl LineBuffer {
    fn emit(&self, line: &[u8]) {
        let object = &self.object;
        match self
            .output
            .line(object, line.len(), std::time::Instant::now())
        {
            Verdict::Drop { first: false } => return,
            Verdict::Drop { first: true } => {
                tracing::warn!(
                    target: "dohost::guest", object = %object,
                    "this object printed more than {} bytes this minute \
                     (guest_log_bytes_per_minute): the rest of the minute's output is dropped",
                    self.output.bytes_per_window()
                );
                return;
            }
            Verdict::Log { dropped: Some(d) } => {
                tracing::warn!(
                    target: "dohost::guest", object = %object,
                    "{} lines ({} bytes) of this object's output were dropped \
                     (guest_log_bytes_per_minute)",
                    d.lines, d.bytes
                );
            }
            Verdict::Log { dropped: None } => {}
        }
        let line = String::from_utf8_lossy(line);
        tracing::info!(target: "dohost::guest", object = %object, stream = self.stream, "{line}");
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

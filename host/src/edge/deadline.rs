//! A connection's write deadline: a client that stops reading its answers (a slow reader
//! pinning a large answer in memory, or a stalled stream) is cut off once its writes have
//! made no progress for `write_timeout`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Wraps a connection so that a write (or flush) left pending for `timeout` fails with
/// `TimedOut`, which makes hyper (or the WebSocket on the upgraded connection) close it.
/// The timer starts when a write first has to wait and stops at any progress, so a client
/// that reads slowly but steadily is never cut.
pub struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Passes a ready result through (progress: the stall is over); on pending, starts or
    /// checks the stall's timer.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {} ms (write_timeout_ms): closing it",
                    timeout.as_millis()
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that never reads: writes fill the pipe, then fail once stalled past the
    /// timeout; a peer that reads keeps the writer going.
    #[tokio::test]
    async fn a_write_stalled_past_the_timeout_fails() {
        let (near, _far) = tokio::io::duplex(1024);
        let mut writer = WriteDeadline::new(near, Duration::from_millis(50));
        let chunk = vec![7u8; 4096];
        let failed = writer.write_all(&chunk).await.unwrap_err();
        assert_eq!(failed.kind(), io::ErrorKind::TimedOut);
        assert!(failed.to_string().contains("write_timeout_ms"), "{failed}");

        let (near, mut far) = tokio::io::duplex(1024);
        let mut writer = WriteDeadline::new(near, Duration::from_millis(300));
        let chunk = vec![7u8; 32 * 1024];
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            // Slower than the timeout in all, but never stalled that long at once.
            let mut buf = [0u8; 512];
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                match tokio::io::AsyncReadExt::read(&mut far, &mut buf)
                    .await
                    .unwrap()
                {
                    0 => return got.len(),
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        writer.write_all(&chunk).await.unwrap();
        writer.shutdown().await.unwrap();
        drop(writer);
        assert_eq!(reader.await.unwrap(), chunk.len());
    }
}

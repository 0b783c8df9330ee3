//! The public listener: accepts HTTP/1.1 connections within bounds — a cap on open
//! connections (HTTP connections and WebSockets; past it a plain 503 and close), a deadline
//! for each request's headers that also closes idle keep-alive connections, a deadline on
//! writes that make no progress — and drains them on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::deadline::WriteDeadline;

/// The open connections and their cap (`max_connections`): each HTTP connection, and each
/// WebSocket once upgraded, holds one slot until it closes.
#[derive(Clone)]
pub struct Connections {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Connections {
    pub fn new(max: usize) -> Self {
        Connections {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A slot for one more connection, if the cap allows.
    pub fn try_open(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// The refusal's words, for HTTP and WebSocket alike.
    pub fn refusal(&self) -> String {
        format!(
            "too many open connections ({} is the limit: max_connections); retry shortly",
            self.max
        )
    }
}

/// The bounds every public connection is served within.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionBounds {
    /// How long a request's headers may take (also the idle keep-alive timeout).
    pub header_timeout: Duration,
    /// How long the connection's writes may make no progress (a client that stopped
    /// reading) before it is closed.
    pub write_timeout: Duration,
}

/// Closes one connection at once when cancelled (in each request's extensions): a stream
/// cut because its client stopped reading tears its connection down rather than wait for
/// hyper to poll a body that the client is not taking.
#[derive(Clone, Default)]
pub struct ConnectionAbort(pub CancellationToken);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits
/// for the open connections to finish (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    connections: Connections,
    bounds: ConnectionBounds,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    // HTTP/1 only, for real: hyper-util's `auto` builder sniffs the HTTP/2 preface even when
    // told `http1_only`, and HTTP/2 connections would have none of the bounds below. hyper
    // closes a connection that opens with the HTTP/2 preface, unanswered.
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper starts this deadline when it waits for a request's headers, and for each next
    // one on a kept-alive connection: the idle timeout too. Before that (a client that sends
    // nothing) the first-request deadline below applies.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout);
    // Shutdown asks every connection to finish its request and close; the senders held by
    // the connection tasks tell when they all have.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let (open_tx, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = connections.try_open() else {
            tokio::spawn(refuse(stream, connections.refusal()));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let inner = hyper_util::service::TowerToHyperService::new(app.clone());
        let served = Arc::new(AtomicBool::new(false));
        let abort = ConnectionAbort::default();
        let service = {
            let (served, connections, abort) = (served.clone(), connections.clone(), abort.clone());
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                served.store(true, Ordering::Release);
                // A WebSocket handshake takes its socket's slot from these (see
                // `edge::websocket_upgrade`); other requests need nothing.
                if req.headers().contains_key(hyper::header::UPGRADE) {
                    req.extensions_mut().insert(connections.clone());
                }
                req.extensions_mut().insert(abort.clone());
                hyper::service::Service::call(&inner, req)
            })
        };
        let io = TokioIo::new(WriteDeadline::new(stream, bounds.write_timeout));
        let connection = builder.serve_connection(io, service).with_upgrades();
        let (mut stop, open) = (stop.clone(), open_tx.clone());
        tokio::spawn(async move {
            tokio::pin!(connection);
            // A connection whose first request's headers have not arrived within the
            // header timeout is dropped (closed).
            let first = async {
                tokio::time::sleep(bounds.header_timeout).await;
                if served.load(Ordering::Acquire) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::pin!(first);
            let mut graceful = false;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    () = &mut first => break,
                    () = abort.0.cancelled() => break,
                    Ok(_) = stop.wait_for(|s| *s), if !graceful => {
                        graceful = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(slot);
            drop(open);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(open_tx);
    let _ = all_closed.recv().await;
}

/// Answers a connection over the cap with 503 and closes it, without reading its request
/// (a client that does not read the answer is dropped after a second).
async fn refuse(mut stream: TcpStream, why: String) {
    let body = format!("{why}\n");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

//! The public listener: accepts connections within bounds — a cap on open connections
//! (HTTP connections and WebSockets; past it a plain 503 and close), a deadline for each
//! request's headers that also closes idle keep-alive connections — and drains them on
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits
/// for the open connections to finish (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    connections: Connections,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1 only: HTTP/2 connections would have no header or idle timeout.
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
    // hyper starts this deadline when it waits for a request's headers once it knows the
    // protocol, and for each next one on a kept-alive connection: the idle timeout too.
    // Before that (a client that sends nothing, or a protocol preface byte by byte) the
    // first-request deadline below applies.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
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
        let service = {
            let (served, connections) = (served.clone(), connections.clone());
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                served.store(true, Ordering::Release);
                // A WebSocket handshake takes its socket's slot from these (see
                // `edge::websocket_upgrade`); other requests need nothing.
                if req.headers().contains_key(hyper::header::UPGRADE) {
                    req.extensions_mut().insert(connections.clone());
                }
                hyper::service::Service::call(&inner, req)
            })
        };
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A connection whose first request's headers have not arrived within the
            // header timeout is dropped (closed).
            let first = async {
                tokio::time::sleep(header_timeout).await;
                if served.load(Ordering::Acquire) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = connection => {}
                () = first => {}
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
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

//! dohost: Durable Objects on your own machines.
//!
//! An object class is a WebAssembly component (see `wit/dohost.wit`); dohost serves it over
//! HTTP, runs exactly one live instance per object ID, delivers its events one at a time and
//! gives it transactional storage — an embedded redb database, or PostgreSQL — durable
//! before any output.
//!
//! ## Layout
//! Folders are floors; imports only point down the list (a request can be followed by
//! reading it top to bottom):
//! - [`edge`]: the public HTTP routes and their errors, request/response conversion, the
//!   health check, and each WebSocket connection's task. It sees the runtime only through
//!   the small `Dispatch` trait (bindings, requests, sockets).
//! - [`runtime`]: the registry (object key → actor), start-up, delivery (the output gate
//!   is in `Runtime::fetch`), calls between objects, the worker, and the `Placement` seam
//!   (`LocalPlacement` for one node, `ClusterPlacement` for a cluster node).
//! - [`object`]: an object's actor: its mailbox loop, the inline fast path, the instance
//!   lifecycle, one `run_event` path for every kind of event, and its outputs (commits,
//!   deferred answers, the socket outbox). It is handed an `ObjectEnv`, not the runtime.
//! - [`wasm`]: the engine and component cache, each store's state and limits, the one
//!   `bindgen!`, and one module per WIT interface (`storage`, `alarms`, `objects`,
//!   `requests`, `websockets`).
//! - [`services`]: no wasmtime: the object store (an object's view of its storage), the
//!   alarm scheduler and its clock, the socket registry, the call graph, instance slots.
//! - [`cluster`]: a cluster node's coordination through etcd (lease and membership, shard
//!   claims, the ownership loop that fences shards in storage). Below the runtime, above
//!   the backend.
//! - [`backend`]: the `Storage` trait and its two backends (redb embedded; PostgreSQL with
//!   fenced commits), the migration rules they share, and the committer, which knows only
//!   the trait.
//! - [`config`]: classes, addresses and every limit; the wrangler.json-shaped file;
//!   migration entries. [`id`]: object IDs, keys and namespaces.

pub mod admin;
pub mod backend;
pub mod cluster;
pub mod config;
pub mod edge;
pub mod id;
pub mod object;
pub mod runtime;
pub mod services;
pub mod wasm;

pub use config::{ClassConfig, Config, Limits};
pub use runtime::Runtime;

use std::future::Future;
use std::sync::Arc;

/// Serves `runtime` on `listener` until `shutdown` resolves, then stops: the server stops
/// accepting while the runtime stops its objects (queued events finish; deferred requests
/// are answered 503). Everything gets `shutdown_timeout`; past it this returns anyway, and
/// nothing acknowledged is lost (a response leaves only once its writes are durable). On a
/// clean stop the database is closed when this returns.
pub async fn serve(
    runtime: Arc<Runtime>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = runtime.limits().shutdown_timeout;
    // When the stop was asked for, so both halves below share one deadline.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    // Another process taking over the storage stops this one as a shutdown would, and
    // makes `serve` fail.
    let fenced = Arc::new(std::sync::OnceLock::<Arc<str>>::new());
    let shutdown = {
        let (runtime, fenced) = (runtime.clone(), fenced.clone());
        async move {
            tokio::select! {
                () = shutdown => {}
                why = runtime.fenced() => {
                    tracing::error!(
                        error = %why,
                        "another dohost took over this storage: stopping (this process can \
                         no longer write; point each dohost at its own database, or run a \
                         cluster)"
                    );
                    let _ = fenced.set(why);
                }
            }
            let _ = stop_tx.send(Some(tokio::time::Instant::now() + grace));
        }
    };
    let stop_at = || {
        let mut rx = stop_rx.clone();
        async move {
            match rx.wait_for(|d| d.is_some()).await {
                Ok(at) => at.expect("waited for Some"),
                // The server ended on its own (its listener failed): stop now.
                Err(_) => tokio::time::Instant::now() + grace,
            }
        }
    };
    let limits = runtime.limits();
    let connections = edge::listener::Connections::new(limits.max_connections);
    let app = edge::router(runtime.clone() as Arc<dyn runtime::Dispatch>);
    let bounds = edge::listener::ConnectionBounds {
        header_timeout: limits.header_timeout,
        write_timeout: limits.write_timeout,
    };
    let serving = edge::listener::serve(listener, app, connections, bounds, shutdown);
    let stopping = async {
        stop_at().await;
        runtime.shutdown().await;
        // Every write is durable and every chunk released: streams end now rather than
        // hold their connections until the deadline.
        runtime.streams().end_where(|_| true);
    };
    let finished = tokio::select! {
        ((), ()) = async { tokio::join!(serving, stopping) } => Some(()),
        _ = async { tokio::time::sleep_until(stop_at().await).await } => None,
    };
    if let Some(why) = fenced.get() {
        anyhow::bail!("fenced off the storage by another dohost: {why}");
    }
    match finished {
        Some(()) => Ok(()),
        None => {
            tracing::warn!(
                "requests still in flight after {grace:?} (shutdown_timeout); stopping anyway"
            );
            Ok(())
        }
    }
}

/// Like `run`, with the clock that alarms and guests read (tests pass a manual one).
pub async fn run_with_clock(
    config: Config,
    clock: Arc<dyn services::scheduler::Clock>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let runtime = Runtime::start_with_clock(&config, clock)?;
    serve(runtime, listener, shutdown).await
}

/// Starts a runtime from `config` and serves it on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let runtime = Runtime::start(&config)?;
    serve(runtime, listener, shutdown).await
}

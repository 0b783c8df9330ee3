//! dohost: Durable Objects on your own machines.
//!
//! An object class is a WebAssembly component (see `wit/dohost.wit`); dohost serves it over
//! HTTP, runs exactly one live instance per object ID, delivers its events one at a time and
//! gives it transactional storage in an embedded redb database, durable before any output.
//!
//! ## Layout
//! - [`config`]: classes, addresses and every limit; [`config_file`]: the wrangler.json-shaped
//!   file; [`migrations`]: class migrations.
//! - [`runtime`]: the registry of live objects, one actor each; start-up and shutdown.
//! - [`actor`]: an object's actor: its wasmtime store, its mailbox, the output gate.
//! - [`engine`]: wasmtime settings, component loading and caching, store data, CPU and
//!   memory limits.
//! - [`bindings`]: the one `bindgen!` of the WIT package.
//! - [`storage`], [`alarms`]: the WIT storage and alarms interfaces, over [`objstore`].
//! - [`objects`]: the WIT objects interface (IDs, calls to other objects, deadlock checks);
//!   [`requests`]: deferred responses.
//! - [`websockets`]: the WIT websockets interface, over [`sockets`] (the registry of open
//!   sockets and each connection's task; sockets outlive instances).
//! - [`scheduler`]: when each alarm is due, and the injectable clock.
//! - [`objstore`]: an object's storage view (durable data, in-flight and event writes,
//!   transactions); knows nothing of wasmtime.
//! - [`committer`]: group commit of many events in one redb transaction and one fsync.
//! - [`db`]: the redb tables, schema version and class namespaces.
//! - [`id`]: object IDs.
//! - [`http`]: the public HTTP routes.
//! - [`guest_log`]: guest stdout/stderr into the host's log.

pub mod backend;
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
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(Some(tokio::time::Instant::now() + grace));
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
    let app = edge::router(runtime.clone());
    let serving = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .into_future();
    let stopping = async {
        stop_at().await;
        runtime.shutdown().await;
    };
    let finished = tokio::select! {
        (served, ()) = async { tokio::join!(serving, stopping) } => Some(served),
        _ = async { tokio::time::sleep_until(stop_at().await).await } => None,
    };
    match finished {
        Some(served) => served.map_err(Into::into),
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

//! The admin listener: a second HTTP server, on loopback by default and never on the public
//! port, for operators — Prometheus metrics at `/metrics`, a view of objects (`objects`)
//! and changes to them (`edits`), behind a bearer token when one is configured and a guard
//! against web pages (`guard`), and the web inspector at `/`, a page that uses them.

mod backup;
pub mod client;
mod edits;
mod guard;
mod objects;

use crate::runtime::Runtime;
use crate::services::secret::same;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The largest component a deploy takes (Python and JavaScript components run to tens of
/// megabytes).
pub const MAX_COMPONENT_BYTES: usize = 256 << 20;

/// Backups written at once: each holds a copy of the whole database on the data
/// directory's disk until its download ends; one more is refused (503, `Retry-After`).
pub const MAX_CONCURRENT_BACKUPS: usize = 1;

/// Deploys running at once: each holds its component (up to `MAX_COMPONENT_BYTES`) and its
/// compilation in memory; one more is refused (503, `Retry-After`) before its body is read.
pub const MAX_CONCURRENT_DEPLOYS: usize = 2;

/// The `Retry-After` of those refusals, in seconds.
const BUSY_RETRY_AFTER_SECS: u32 = 5;

/// Where the admin listener listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8788";

/// Who the admin listener answers.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Required as `Authorization: Bearer TOKEN` when set.
    pub token: Option<String>,
    /// Host names the listener answers to besides IP addresses and `localhost`
    /// (`--admin-host`): any other `Host` is refused, so a page cannot rebind a name of its
    /// own to the listener.
    pub hosts: Vec<String>,
}

/// `--admin`: an address, or `off`; None means off.
pub fn parse_addr(value: &str) -> anyhow::Result<Option<SocketAddr>> {
    if value == "off" {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--admin {value:?}: expected HOST:PORT or off ({e})"))
}

/// The token in `file`: its first line, which must not be empty.
pub fn read_token(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read the admin token file {}: {e}", file.display()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_string();
    anyhow::ensure!(
        !token.is_empty(),
        "the admin token file {} is empty",
        file.display()
    );
    Ok(token)
}

#[derive(Clone)]
pub(crate) struct AdminState {
    runtime: Arc<Runtime>,
    token: Option<Arc<str>>,
    /// Permits for `MAX_CONCURRENT_BACKUPS` and `MAX_CONCURRENT_DEPLOYS`.
    backups: Arc<Semaphore>,
    deploys: Arc<Semaphore>,
}

pub fn router(runtime: Arc<Runtime>, access: Access) -> Router {
    let state = AdminState {
        runtime,
        token: access.token.map(Arc::from),
        backups: Arc::new(Semaphore::new(MAX_CONCURRENT_BACKUPS)),
        deploys: Arc::new(Semaphore::new(MAX_CONCURRENT_DEPLOYS)),
    };
    let hosts = guard::Hosts(
        access
            .hosts
            .into_iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
    );
    let api = Router::new()
        .route("/metrics", get(metrics))
        .route("/backup", get(backup::backup))
        .route("/classes", get(objects::classes))
        .route("/classes/{binding}/objects", get(objects::objects))
        .route(
            "/classes/{binding}/deploy",
            post(edits::deploy)
                .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
                // Outside the handler, so a deploy past the bound is refused before its
                // body is read.
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    edits::bounded_deploys,
                )),
        )
        .route(
            "/objects/{binding}/{id}/entries",
            get(objects::entries).delete(edits::delete_all),
        )
        .route(
            "/objects/{binding}/{id}/entries/{*key}",
            put(edits::put).delete(edits::delete),
        )
        .route(
            "/objects/{binding}/{id}/alarm",
            get(objects::alarm)
                .put(edits::set_alarm)
                .delete(edits::delete_alarm),
        )
        .route("/objects/{binding}/{id}/alarm/run", post(edits::run_alarm))
        .route("/objects/{binding}/{id}/evict", post(edits::evict))
        .route("/objects/{binding}/{id}/sql", post(edits::sql))
        .route("/objects/{binding}/{id}/sockets", get(edits::sockets))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorized,
        ));
    // The inspector page holds no data (it asks the API, with the token, for everything).
    Router::new()
        .route("/", get(inspector))
        .merge(api)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            hosts,
            guard::same_site,
        ))
}

/// Serves the admin listener on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, runtime: Arc<Runtime>, access: Access) {
    if let Err(e) = axum::serve(listener, router(runtime, access)).await {
        tracing::error!(error = %e, "the admin listener stopped");
    }
}

/// Refuses a request without the configured token (401, naming the scheme expected).
async fn authorized(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            let mut refused = (
                StatusCode::UNAUTHORIZED,
                "the admin API needs `Authorization: Bearer TOKEN` (--admin-token-file)\n",
            )
                .into_response();
            refused
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return refused;
        }
    }
    next.run(req).await
}

/// A refusal because `what` runs as often at once as it may: 503, `Retry-After`, and the
/// error as the admin API words its others (`{"error": …}`).
fn busy(what: String) -> Response {
    let mut refused = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({ "error": what })),
    )
        .into_response();
    refused.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(BUSY_RETRY_AFTER_SECS),
    );
    refused
}

/// `GET /`: the web inspector.
async fn inspector() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("inspector.html"))
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let runtime = s.runtime.clone();
    let Ok(text) = tokio::task::spawn_blocking(move || runtime.render_metrics()).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

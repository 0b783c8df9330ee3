//! The public HTTP edge: the default routes `/{binding}/{name}/{path}`, request and response
//! conversion, and errors that tell the caller what went wrong.

use crate::object::EventError;
use crate::runtime::{Runtime, Upgrade};
use crate::wasm::bindings::types as wit;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Longest object name accepted in a URL, in bytes; names are hashed into IDs, so this only
/// bounds the work a hostile URL can cause.
pub const MAX_NAME_BYTES: usize = 2048;

/// What the edge answers when it cannot deliver a request, or the object failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the limit of {0} bytes (max_body_bytes)")]
    BodyTooLarge(usize),
    #[error("object error: {0}")]
    ObjectFailed(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("the write could not be made durable: {0}")]
    CommitFailed(String),
    /// The disk is full: writes are refused until space is freed (reads still work).
    #[error("the write could not be made durable: {0}")]
    InsufficientStorage(String),
}

/// What `Retry-After` tells a client refused for lack of capacity (a slot, a worker): the
/// condition is usually gone within a second.
pub const RETRY_AFTER_SECS: u32 = 1;

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::ObjectFailed(_) | HttpError::CommitFailed(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        };
        let mut body = self.to_string();
        body.push('\n');
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// Where the health check answers; `.` cannot start a binding, so no object is shadowed.
pub const HEALTH_PATH: &str = "/.well-known/dohost/health";

/// The public router.
pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new()
        .route(HEALTH_PATH, axum::routing::get(health))
        .fallback(handle)
        .with_state(runtime)
}

/// 200 "ok" while the host can make writes durable; 503 with the reason while it cannot
/// (the disk is full, say), so that a health check notices what reads alone would not.
async fn health(State(rt): State<Arc<Runtime>>) -> Response {
    match rt.storage_health() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(problem) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("unhealthy: {problem}\n"),
        )
            .into_response(),
    }
}

async fn handle(State(rt): State<Arc<Runtime>>, req: Request) -> Result<Response, HttpError> {
    let (mut parts, body) = req.into_parts();
    // A WebSocket upgrade is offered to the object (or the worker, which may pass it on
    // to an object) like any request; the object accepts it through its websockets import
    // and answers 101.
    let upgrade = if parts
        .headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
    {
        WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .ok()
    } else {
        None
    };
    if rt.has_worker() {
        return handle_with_worker(rt, parts, body, upgrade).await;
    }
    let path = parts.uri.path();
    let mut segments = path.trim_start_matches('/').splitn(3, '/');
    let binding = segments.next().unwrap_or_default();
    let name = segments.next().unwrap_or_default();
    let rest = segments.next();
    if binding.is_empty() {
        return Err(HttpError::NotFound(format!(
            "no object here: use /{{binding}}/{{name}}/{{path}}; bindings: {}",
            rt.bindings().join(", ")
        )));
    }
    let Some(class) = rt.class(binding).cloned() else {
        return Err(HttpError::NotFound(format!(
            "unknown binding {binding:?}; bindings: {}",
            rt.bindings().join(", ")
        )));
    };
    if name.is_empty() {
        return Err(HttpError::BadRequest(format!(
            "missing object name: use /{binding}/{{name}}/{{path}}"
        )));
    }
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .map_err(|_| HttpError::BadRequest("the object name is not valid UTF-8".into()))?
        .into_owned();
    if name.len() > MAX_NAME_BYTES {
        return Err(HttpError::BadRequest(format!(
            "object name of {} bytes is over the limit of {MAX_NAME_BYTES}",
            name.len()
        )));
    }
    let body = read_body(&rt, &parts, body).await?;
    let request = to_wit(&parts, rest.unwrap_or(""), body)?;
    let id = class.namespace.id_key.id_from_name(&name);
    let outcome = rt
        .fetch(&class, id, Some(name), request, upgrade.is_some(), true)
        .await;
    let accepted = outcome.accepted;
    // The output gate: nothing leaves before the writes it may depend on are durable.
    if let Some(durable) = outcome.durable
        && let Err(e) = durable.await
    {
        forget(&rt, accepted);
        return Err(commit_error(e));
    }
    match outcome.result {
        Ok(response) => respond(rt, response, accepted, upgrade),
        Err(e) => {
            forget(&rt, accepted);
            Err(event_error(e))
        }
    }
}

/// With a worker configured, every public request goes to it, path and all.
async fn handle_with_worker(
    rt: Arc<Runtime>,
    parts: axum::http::request::Parts,
    body: Body,
    upgrade: Option<WebSocketUpgrade>,
) -> Result<Response, HttpError> {
    let body = read_body(&rt, &parts, body).await?;
    let path = parts.uri.path().trim_start_matches('/').to_string();
    let request = to_wit(&parts, &path, body)?;
    let (response, accepted) = rt
        .run_worker(request, upgrade.is_some())
        .await
        .map_err(event_error)?;
    respond(rt, response, accepted, upgrade)
}

/// Sends an answer: a 101 connects the client to the socket an object accepted (its own,
/// or through the worker or other objects); any other status drops such a socket.
fn respond(
    rt: Arc<Runtime>,
    response: wit::Response,
    accepted: Option<Upgrade>,
    upgrade: Option<WebSocketUpgrade>,
) -> Result<Response, HttpError> {
    match (response.status, accepted, upgrade) {
        (101, Some(accepted), Some(ws)) => {
            let socket_id = accepted.socket.id;
            let sockets = rt.sockets().clone();
            let limit = rt.limits().max_ws_message_bytes;
            Ok(ws
                .max_message_size(limit)
                .max_frame_size(limit)
                .on_failed_upgrade(move |_| sockets.remove(socket_id))
                .on_upgrade(move |socket| {
                    crate::services::sockets::run_connection(
                        rt,
                        accepted.class,
                        accepted.object,
                        accepted.socket,
                        socket,
                    )
                }))
        }
        (101, accepted, _) => {
            forget(&rt, accepted);
            Err(HttpError::ObjectFailed(
                "the object answered 101 without accepting the WebSocket".into(),
            ))
        }
        (_, accepted, _) => {
            forget(&rt, accepted);
            to_http(response)
        }
    }
}

/// Drops a socket accepted for a request that is not answered with 101 after all.
fn forget(rt: &Runtime, accepted: Option<Upgrade>) {
    if let Some(a) = accepted {
        rt.sockets().remove(a.socket.id);
    }
}

/// A refused write: 507 when the disk is full (it will pass once space is freed), else 500.
fn commit_error(e: crate::backend::committer::CommitError) -> HttpError {
    match e.kind {
        crate::backend::committer::CommitErrorKind::DiskFull => {
            HttpError::InsufficientStorage(e.to_string())
        }
        _ => HttpError::CommitFailed(e.to_string()),
    }
}

fn event_error(e: EventError) -> HttpError {
    match e {
        EventError::Failed(m) => HttpError::ObjectFailed(m),
        EventError::Unavailable(m) => HttpError::Unavailable(m),
    }
}

async fn read_body(
    rt: &Runtime,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<bytes::Bytes, HttpError> {
    let limit = rt.limits().max_body_bytes;
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(HttpError::BodyTooLarge(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // Only a body over the limit is a 413; a malformed one (a bad chunk size, a
        // connection cut mid-body) is the client's mistake of another kind.
        if error_chain(&e).any(|c| c.is::<http_body_util::LengthLimitError>()) {
            HttpError::BodyTooLarge(limit)
        } else {
            HttpError::BadRequest(format!("the request body could not be read: {e}"))
        }
    })
}

/// An error and its sources, outermost first.
fn error_chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// The request as a guest sees it: `path` (without its leading `/`) under the original
/// host, the query kept. The Host header must be a plain authority (host and port): it is
/// spliced into the URL, so a `/`, `?`, `#` or `@` in it would rewrite what the object sees.
fn to_wit(
    parts: &axum::http::request::Parts,
    path: &str,
    body: bytes::Bytes,
) -> Result<wit::Request, HttpError> {
    let host = match parts.uri.authority() {
        Some(authority) => authority.as_str(),
        None => match parts.headers.get(header::HOST) {
            Some(h) => h.to_str().unwrap_or("\u{0}"),
            None => "localhost",
        },
    };
    let valid = host
        .parse::<axum::http::uri::Authority>()
        .is_ok_and(|a| a.as_str() == host && !host.contains('@'));
    if !valid {
        return Err(HttpError::BadRequest(format!(
            "invalid Host header {host:?}: expected a host name or address, with an optional port"
        )));
    }
    let mut url = format!("http://{host}/{path}");
    if let Some(q) = parts.uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    Ok(wit::Request {
        method: parts.method.as_str().to_string(),
        url,
        headers,
        body: body.to_vec(),
    })
}

fn to_http(r: wit::Response) -> Result<Response, HttpError> {
    let status = StatusCode::from_u16(r.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| {
            HttpError::ObjectFailed(format!(
                "the object answered with status {}, which is not a valid final status (200-599)",
                r.status
            ))
        })?;
    let mut response = Response::new(Body::from(r.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (k, v) in r.headers {
        match (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::warn!(header = %k, "dropping an invalid response header from an object"),
        }
    }
    Ok(response)
}

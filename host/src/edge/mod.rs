//! The public HTTP edge: the health check, the default routes `/{binding}/{name}/{path}`, the
//! worker entry, WebSocket upgrades and streamed responses. Conversion, errors, each
//! socket's connection task and each stream's body are its rooms.

mod answer;
mod calls;
mod convert;
mod deadline;
mod error;
mod forward;
mod forward_ws;
pub mod listener;
mod socket;
mod stream;

pub use error::{HttpError, RETRY_AFTER_SECS};

use crate::runtime::{Dispatch, FetchError};
use crate::services::handoff::Handoff;
use crate::wasm::bindings::types as wit;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use convert::{read_body, to_http, to_wit};
use error::fetch_error;
use std::sync::Arc;

/// Longest object name accepted in a URL, in bytes; names are hashed into IDs, so this only
/// bounds the work a hostile URL can cause.
pub const MAX_NAME_BYTES: usize = 2048;

/// Where the health check answers; `.` cannot start a binding, so no object is shadowed.
pub const HEALTH_PATH: &str = "/.well-known/dohost/health";

/// The public router.
pub fn router(runtime: Arc<dyn Dispatch>) -> Router {
    Router::new()
        .route(HEALTH_PATH, axum::routing::get(health))
        .route(
            &format!("{}/{{*rest}}", crate::runtime::remote::CALL_PATH),
            axum::routing::any(calls::call),
        )
        .fallback(handle)
        .layer(axum::middleware::from_fn_with_state(
            runtime.clone(),
            observed,
        ))
        .with_state(runtime)
}

/// Counts and times each public request by binding and status (the health check and the
/// cluster's internal route are not counted).
async fn observed(State(rt): State<Arc<dyn Dispatch>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.starts_with("/.well-known/") {
        return next.run(req).await;
    }
    let binding = if rt.has_worker() {
        "worker".to_string()
    } else {
        let first = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        match rt.has_binding(first) {
            true => first.to_string(),
            // Unknown bindings are not labels: a client could make up any number.
            false => "-".to_string(),
        }
    };
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let m = rt.metrics();
    m.requests
        .with_label_values(&[binding.as_str(), response.status().as_str()])
        .inc();
    m.request_seconds
        .with_label_values(&[binding.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// 200 "ok" while the host can make writes durable; 503 with the reason while it cannot
/// (the disk is full, say), so that a health check notices what reads alone would not.
async fn health(State(rt): State<Arc<dyn Dispatch>>) -> Response {
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

async fn handle(State(rt): State<Arc<dyn Dispatch>>, req: Request) -> Result<Response, HttpError> {
    let (mut parts, body) = req.into_parts();
    let upgrade = websocket_upgrade(&mut parts).await?;
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
    if !rt.has_binding(binding) {
        return Err(HttpError::NotFound(format!(
            "unknown binding {binding:?}; bindings: {}",
            rt.bindings().join(", ")
        )));
    }
    let binding = binding.to_string();
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
    let rest = rest.map(str::to_string);
    let (body, _held) = read_body(&*rt, &parts, body).await?;
    // In a cluster, the object may be served by another node: forward it there.
    let forwarded = forward::forwarded(&*rt, &parts)?;
    let mut attempt = 0;
    let mut upgrade = upgrade;
    while let Some(addr) = forward::route(&*rt, &binding, &name, forwarded, &mut attempt).await? {
        if upgrade.is_some() {
            if let Some(upstream) = forward_ws::open(&*rt, &addr, &parts).await? {
                let handshake = upgrade.take().expect("checked above");
                let limit = rt.limits().max_ws_message_bytes;
                return handshake.accept(limit, move |socket| forward_ws::relay(socket, upstream));
            }
            forward::backoff(&mut attempt).await.map_err(|()| {
                HttpError::Unavailable(format!(
                    "node {addr} would not open this WebSocket, and no other did in time"
                ))
            })?;
            continue;
        }
        if let Some(response) = forward::send(&*rt, &addr, &parts, body.clone()).await? {
            return Ok(response);
        }
        // 421 or no connection: nothing ran there.
        forward::backoff(&mut attempt).await.map_err(|()| {
            HttpError::Unavailable(format!(
                "node {addr} would not serve this object, and no other did in time"
            ))
        })?;
    }
    let request = to_wit(&parts, rest.as_deref().unwrap_or(""), body)?;
    // The answer comes back only once the writes behind it are durable (the output gate
    // is in `Runtime::fetch`).
    let (response, accepted) = rt
        .clone()
        .fetch_named(binding, name, request, upgrade.is_some())
        .await
        .map_err(fetch_error)?;
    respond(rt, response, accepted, upgrade, abort_of(&parts))
}

/// The handle that closes this request's connection (absent when the router is served
/// without the listener).
fn abort_of(parts: &axum::http::request::Parts) -> Option<listener::ConnectionAbort> {
    parts.extensions.get::<listener::ConnectionAbort>().cloned()
}

/// A WebSocket upgrade is offered to the object (or the worker, which may pass it on to an
/// object) like any request; the object accepts it through its websockets import and
/// answers 101.
async fn websocket_upgrade(
    parts: &mut axum::http::request::Parts,
) -> Result<Option<Handshake>, HttpError> {
    let asked = parts
        .headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !asked {
        return Ok(None);
    }
    let Ok(ws) = WebSocketUpgrade::from_request_parts(parts, &()).await else {
        return Ok(None);
    };
    // The socket's connection slot is taken before any object sees the handshake, so that
    // a refusal (503) reaches no object that has accepted it already.
    let slot = match parts.extensions.get::<listener::Connections>() {
        Some(c) => Some(
            c.try_open()
                .ok_or_else(|| HttpError::Unavailable(c.refusal()))?,
        ),
        None => None,
    };
    Ok(Some(Handshake { ws, slot }))
}

/// A client's WebSocket handshake, and the connection slot its socket holds once upgraded
/// (none when the router is served without the listener's cap).
struct Handshake {
    ws: WebSocketUpgrade,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Handshake {
    /// Upgrades, with `limit` as the largest message, and runs `run` on the socket while it
    /// holds its connection slot.
    fn accept<F, Fut>(self, limit: usize, run: F) -> Result<Response, HttpError>
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let slot = self.slot;
        Ok(self
            .ws
            .max_message_size(limit)
            .max_frame_size(limit)
            .read_buffer_size(WS_READ_BUFFER)
            .on_upgrade(move |socket| async move {
                run(socket).await;
                drop(slot);
            }))
    }
}

/// Bytes a WebSocket reads from its connection at a time. tungstenite's default, 128 KiB,
/// is allocated for every socket up front: 10,000 held sockets cost 1.3 GB of it. A larger
/// message still arrives whole, in more reads.
pub(super) const WS_READ_BUFFER: usize = 8 * 1024;

/// With a worker configured, every public request goes to it, path and all.
async fn handle_with_worker(
    rt: Arc<dyn Dispatch>,
    parts: axum::http::request::Parts,
    body: Body,
    upgrade: Option<Handshake>,
) -> Result<Response, HttpError> {
    let (body, _held) = read_body(&*rt, &parts, body).await?;
    let path = parts.uri.path().trim_start_matches('/').to_string();
    let request = to_wit(&parts, &path, body)?;
    let (response, accepted) = rt
        .clone()
        .run_worker(request, upgrade.is_some())
        .await
        .map_err(|e| fetch_error(FetchError::Event(e)))?;
    respond(rt, response, accepted, upgrade, abort_of(&parts))
}

/// Sends an answer: a 101 connects the client to the socket an object accepted (its own,
/// or through the worker or other objects); any other status streams the stream an object
/// opened, if any, and drops such a socket. A plain answer's body is held against the
/// memory budget until written; a stream cut for a slow client closes its connection
/// through `abort`.
fn respond(
    rt: Arc<dyn Dispatch>,
    mut response: wit::Response,
    handoff: Option<Handoff>,
    upgrade: Option<Handshake>,
    abort: Option<listener::ConnectionAbort>,
) -> Result<Response, HttpError> {
    let handoff = handoff.filter(|h| h.fits(response.status));
    match (response.status, handoff, upgrade) {
        // A failed upgrade drops the closure, and with it the socket (out of the registry).
        (101, Some(accepted), Some(handshake)) => {
            let limit = rt.limits().max_ws_message_bytes;
            handshake.accept(limit, move |socket| {
                socket::run_connection(rt, accepted, socket)
            })
        }
        (101, _, _) => Err(HttpError::ObjectFailed(
            "the object answered 101 without accepting the WebSocket".into(),
        )),
        (_, Some(stream), _) => stream::respond(&*rt, response, stream, abort),
        // Any other answer drops a socket accepted along the way.
        _ => {
            let body = std::mem::take(&mut response.body);
            let mut http = to_http(response)?;
            *http.body_mut() = answer::held(body, rt.memory().clone());
            Ok(http)
        }
    }
}

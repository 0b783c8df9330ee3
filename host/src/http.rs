//! The public HTTP edge: the default routes `/{binding}/{name}/{path}`, request and response
//! conversion, and errors that tell the caller what went wrong.

use crate::actor::EventError;
use crate::bindings::types as wit;
use crate::runtime::ObjectKey;
use crate::runtime::Runtime;
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
}

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
        };
        let mut body = self.to_string();
        body.push('\n');
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// The public router.
pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new().fallback(handle).with_state(runtime)
}

async fn handle(State(rt): State<Arc<Runtime>>, req: Request) -> Result<Response, HttpError> {
    if rt.has_worker() {
        return handle_with_worker(rt, req).await;
    }
    let (mut parts, body) = req.into_parts();
    // A WebSocket upgrade is offered to the object like any request; it accepts it through
    // its websockets import and answers 101.
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
    let request = to_wit(&parts, rest.unwrap_or(""), body);
    let id = class.namespace.id_key.id_from_name(&name);
    let outcome = rt
        .fetch(&class, id, Some(name), request, upgrade.is_some(), true)
        .await;
    let accepted = outcome.accepted;
    // The output gate: nothing leaves before the writes it may depend on are durable.
    if let Some(durable) = outcome.durable
        && let Err(e) = durable.await
    {
        if let Some(a) = accepted {
            rt.sockets().remove(a.id);
        }
        return Err(HttpError::CommitFailed(e.to_string()));
    }
    let response = match outcome.result {
        Ok(r) => r,
        Err(e) => {
            if let Some(a) = accepted {
                rt.sockets().remove(a.id);
            }
            return Err(event_error(e));
        }
    };
    match (response.status, accepted, upgrade) {
        (101, Some(accepted), Some(ws)) => {
            let key = ObjectKey {
                namespace: class.namespace.number,
                id,
            };
            let socket_id = accepted.id;
            let sockets = rt.sockets().clone();
            let limit = rt.limits().max_ws_message_bytes;
            Ok(ws
                .max_message_size(limit)
                .max_frame_size(limit)
                .on_failed_upgrade(move |_| sockets.remove(socket_id))
                .on_upgrade(move |socket| {
                    crate::sockets::run_connection(rt, class, key, accepted, socket)
                }))
        }
        (101, _, _) => Err(HttpError::ObjectFailed(
            "the object answered 101 without accepting the WebSocket".into(),
        )),
        (_, accepted, _) => {
            if let Some(a) = accepted {
                rt.sockets().remove(a.id);
            }
            to_http(response)
        }
    }
}

/// With a worker configured, every public request goes to it, path and all.
async fn handle_with_worker(rt: Arc<Runtime>, req: Request) -> Result<Response, HttpError> {
    let (parts, body) = req.into_parts();
    let body = read_body(&rt, &parts, body).await?;
    let path = parts.uri.path().trim_start_matches('/').to_string();
    let request = to_wit(&parts, &path, body);
    let response = rt.run_worker(request).await.map_err(event_error)?;
    to_http(response)
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
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| HttpError::BodyTooLarge(limit))
}

/// The request as a guest sees it: `path` (without its leading `/`) under the original
/// host, the query kept.
fn to_wit(parts: &axum::http::request::Parts, path: &str, body: bytes::Bytes) -> wit::Request {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
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
    wit::Request {
        method: parts.method.as_str().to_string(),
        url,
        headers,
        body: body.to_vec(),
    }
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

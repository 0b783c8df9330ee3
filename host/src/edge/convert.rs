//! Requests and responses between HTTP and the WIT types: the body read within its limit,
//! the URL the object sees, the object's answer checked.

use super::error::HttpError;
use crate::runtime::Dispatch;
use crate::services::memory::Held;
use crate::wasm::bindings::types as wit;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;

/// The request's body, read within `max_body_bytes` and `body_timeout`, and held against
/// the host's memory budget (keep the `Held` until the request is answered). A host whose
/// budget is used up refuses at once, before reading: 503.
pub async fn read_body(
    rt: &dyn Dispatch,
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<(bytes::Bytes, Held), HttpError> {
    use http_body_util::BodyExt;
    let budget = rt.memory();
    if budget.used() >= budget.limit() {
        return Err(HttpError::Unavailable(budget.exhausted()));
    }
    let limit = rt.limits().max_body_bytes;
    let mut held = Held::none(budget.clone());
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = announced {
        if len > limit as u64 {
            return Err(HttpError::BodyTooLarge(limit));
        }
        // A body that cannot fit is refused before it is sent; one that may fit is held as
        // its bytes arrive (an announced length alone holds nothing).
        if budget.used().saturating_add(len as usize) > budget.limit() {
            return Err(HttpError::Unavailable(budget.exhausted()));
        }
    }
    let timeout = rt.limits().body_timeout;
    let read = async {
        let mut body = body;
        // Most bodies come in one frame: kept as is, not copied.
        let mut frames: Vec<bytes::Bytes> = Vec::new();
        let mut len = 0usize;
        while let Some(frame) = body.frame().await {
            // A malformed body (a bad chunk size, a connection cut mid-body) is the
            // client's mistake.
            let frame = frame.map_err(|e| {
                HttpError::BadRequest(format!("the request body could not be read: {e}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if len + data.len() > limit {
                return Err(HttpError::BodyTooLarge(limit));
            }
            if !held.grow(data.len()) {
                return Err(HttpError::Unavailable(budget.exhausted()));
            }
            len += data.len();
            frames.push(data);
        }
        Ok(match frames.len() {
            0 => bytes::Bytes::new(),
            1 => frames.pop().expect("one frame"),
            _ => frames.concat().into(),
        })
    };
    let body = tokio::time::timeout(timeout, read).await.map_err(|_| {
        HttpError::RequestTimeout(format!(
            "the request body did not arrive within {} ms (body_timeout_ms)",
            timeout.as_millis()
        ))
    })??;
    Ok((body, held))
}

/// An error and its sources, outermost first.
pub(super) fn error_chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// The header naming the RPC method a call from another object invokes (the SDKs'
/// `rpc` module): never taken from a public request.
pub const RPC_HEADER: &str = "x-dohost-rpc";

/// The request as a guest sees it: `path` (without its leading `/`) under the original
/// host, the query kept. The Host header must be a plain authority (host and port): it is
/// spliced into the URL, so a `/`, `?`, `#` or `@` in it would rewrite what the object sees.
pub fn to_wit(
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
        // Only objects and the worker call RPC methods (through their stubs).
        .filter(|(k, _)| k.as_str() != RPC_HEADER)
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    Ok(wit::Request {
        method: parts.method.as_str().to_string(),
        url,
        headers,
        body: body.to_vec(),
    })
}

pub fn to_http(r: wit::Response) -> Result<Response, HttpError> {
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

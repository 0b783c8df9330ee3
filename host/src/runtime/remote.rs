//! A call from an object (or the worker) to an object another node of the cluster serves:
//! the request goes to that node's internal call route with the cluster's secret, and its
//! answer comes back as the callee's response. Nothing ran there when it answers 421 or
//! cannot be connected to, so the caller routes again.

use crate::id::ObjectKey;
use crate::services::calls::chain_to_wire;
use crate::services::peer::{FORWARDED, client};
use crate::wasm::bindings::types as wit;
use crate::wasm::objects::CallError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};

/// The internal route a node serves calls from other nodes on:
/// `/.well-known/dohost/call/{binding}/{id}`.
pub const CALL_PATH: &str = "/.well-known/dohost/call";
/// The URL the callee sees (the caller's `request.url`).
pub const CALL_URL: HeaderName = HeaderName::from_static("x-dohost-url");
/// The name the callee's ID was derived from, percent-encoded, when the caller gave it.
pub const CALL_NAME: HeaderName = HeaderName::from_static("x-dohost-name");
/// The objects waiting on the caller, and the caller last (see `CallGraph::chain`).
pub const CALL_CHAIN: HeaderName = HeaderName::from_static("x-dohost-call-chain");
/// On an answer: the call failed (the body says why), as which `CallError`.
pub const CALL_ERROR: HeaderName = HeaderName::from_static("x-dohost-call-error");

/// A call's failure as the serving node sends it back: (kind, message).
pub fn error_to_wire(e: &CallError) -> (&'static str, &str) {
    match e {
        CallError::UnknownBinding(m) => ("unknown-binding", m),
        CallError::InvalidId(m) => ("invalid-id", m),
        CallError::Deadlock(m) => ("deadlock", m),
        CallError::ObjectFailed(m) => ("object-failed", m),
        CallError::Unavailable(m) => ("unavailable", m),
    }
}

fn error_from_wire(kind: &str, message: String) -> CallError {
    match kind {
        "unknown-binding" => CallError::UnknownBinding(message),
        "invalid-id" => CallError::InvalidId(message),
        "deadlock" => CallError::Deadlock(message),
        "object-failed" => CallError::ObjectFailed(message),
        _ => CallError::Unavailable(message),
    }
}

/// Sends the call to the node at `addr`; Ok(None) when nothing ran there.
pub async fn call(
    addr: &str,
    secret: &str,
    binding: &str,
    id: &str,
    name: Option<&str>,
    chain: &[ObjectKey],
    request: wit::Request,
) -> Result<Option<wit::Response>, CallError> {
    let unavailable = |e: String| CallError::Unavailable(e);
    let mut req = hyper::Request::builder()
        .method(request.method.as_str())
        .uri(format!("http://{addr}{CALL_PATH}/{binding}/{id}"))
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|e| unavailable(format!("cannot send this call to node {addr}: {e}")))?;
    let h = req.headers_mut();
    for (k, v) in &request.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
            h.append(k, v);
        }
    }
    let header = |v: &str| {
        HeaderValue::from_str(v).map_err(|_| unavailable("a call header is not valid".into()))
    };
    h.insert(FORWARDED, header(secret)?);
    h.insert(CALL_URL, header(&request.url)?);
    h.insert(CALL_CHAIN, header(&chain_to_wire(chain))?);
    if let Some(name) = name {
        let encoded =
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        h.insert(CALL_NAME, header(&encoded.to_string())?);
    }
    let resp = match client().request(req).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Ok(None),
        Err(e) => {
            return Err(unavailable(format!(
                "node {addr}, which serves the called object, did not answer: {e}"
            )));
        }
    };
    if resp.status() == StatusCode::MISDIRECTED_REQUEST {
        return Ok(None);
    }
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| unavailable(format!("the answer from node {addr} was cut: {e}")))?
        .to_bytes();
    if let Some(kind) = parts.headers.get(&CALL_ERROR) {
        let message = String::from_utf8_lossy(&body).trim_end().to_string();
        return Err(error_from_wire(kind.to_str().unwrap_or_default(), message));
    }
    Ok(Some(wit::Response {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    }))
}

//! A call from an object (or the worker) to an object another node of the cluster serves:
//! the request goes to that node's internal call route with the cluster's secret, and its
//! answer comes back as the callee's response. Nothing ran there when it answers 421 or
//! cannot be connected to, so the caller routes again.

use crate::id::ObjectKey;
use crate::services::calls::chain_to_wire;
use crate::services::handoff::{Handoff, STREAM_HEADER};
use crate::services::peer::{FORWARDED, client, handshake_header};
use crate::wasm::bindings::types as wit;
use crate::wasm::objects::CallError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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

/// One call to another node: where it goes and what it carries besides the request.
pub struct Call<'a> {
    pub addr: &'a str,
    pub secret: &'a str,
    pub binding: &'a str,
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub chain: &'a [ObjectKey],
}

impl Call<'_> {
    fn uri(&self, scheme: &str) -> String {
        format!(
            "{scheme}://{}{CALL_PATH}/{}/{}",
            self.addr, self.binding, self.id
        )
    }

    /// The request's headers and the call's own: the secret, the URL the callee sees, the
    /// chain of waiting objects, the name.
    fn headers(&self, request: &wit::Request, h: &mut hyper::HeaderMap) -> Result<(), CallError> {
        for (k, v) in &request.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
                h.append(k, v);
            }
        }
        let header = |v: &str| {
            HeaderValue::from_str(v)
                .map_err(|_| CallError::Unavailable("a call header is not valid".into()))
        };
        h.insert(FORWARDED, header(self.secret)?);
        h.insert(CALL_URL, header(&request.url)?);
        h.insert(CALL_CHAIN, header(&chain_to_wire(self.chain))?);
        if let Some(name) = self.name {
            let encoded =
                percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
            h.insert(CALL_NAME, header(&encoded.to_string())?);
        }
        Ok(())
    }
}

/// Sends the call; Ok(None) when nothing ran there. A response whose body the callee
/// streams comes back with that body to relay.
pub async fn call(
    to: &Call<'_>,
    request: wit::Request,
) -> Result<Option<(wit::Response, Option<Handoff>)>, CallError> {
    let addr = to.addr;
    let unavailable = |e: String| CallError::Unavailable(e);
    let mut req = hyper::Request::builder()
        .method(request.method.as_str())
        .uri(to.uri("http"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| unavailable(format!("cannot send this call to node {addr}: {e}")))?;
    to.headers(&request, req.headers_mut())?;
    *req.body_mut() = Full::new(Bytes::from(request.body));
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
    let (mut parts, body) = resp.into_parts();
    if parts.headers.remove(STREAM_HEADER).is_some() {
        // Its head now; its body as the callee writes it, for as long as it lasts.
        let response = wit::Response {
            status: parts.status.as_u16(),
            headers: wire_headers(&parts.headers),
            body: Vec::new(),
        };
        return Ok(Some((
            response,
            Some(Handoff::RelayedStream(Box::new(body))),
        )));
    }
    let body = body
        .collect()
        .await
        .map_err(|e| unavailable(format!("the answer from node {addr} was cut: {e}")))?
        .to_bytes();
    if let Some(kind) = parts.headers.get(&CALL_ERROR) {
        let message = String::from_utf8_lossy(&body).trim_end().to_string();
        return Err(error_from_wire(kind.to_str().unwrap_or_default(), message));
    }
    let response = wit::Response {
        status: parts.status.as_u16(),
        headers: wire_headers(&parts.headers),
        body: body.to_vec(),
    };
    Ok(Some((response, None)))
}

/// Sends a call that offers the caller's client's WebSocket upgrade: as a WebSocket
/// handshake to the call route. Ok(None) when nothing ran there; a 101 comes back with the
/// open WebSocket to relay the client to; any other answer is the call's response.
pub async fn call_upgrade(
    to: &Call<'_>,
    request: wit::Request,
) -> Result<Option<(wit::Response, Option<Handoff>)>, CallError> {
    let addr = to.addr;
    let mut req = to.uri("ws").into_client_request().map_err(|e| {
        CallError::Unavailable(format!("cannot send this call to node {addr}: {e}"))
    })?;
    let mut request = request;
    request.headers.retain(|(k, _)| !handshake_header(k));
    to.headers(&request, req.headers_mut())?;
    match tokio_tungstenite::connect_async(req).await {
        Ok((upstream, resp)) => Ok(Some((
            wit::Response {
                status: 101,
                headers: wire_headers(resp.headers()),
                body: Vec::new(),
            },
            Some(Handoff::RelayedSocket(Box::new(upstream))),
        ))),
        Err(tungstenite::Error::Http(resp)) => {
            if resp.status() == StatusCode::MISDIRECTED_REQUEST {
                return Ok(None);
            }
            let body = resp.body().clone().unwrap_or_default();
            if let Some(kind) = resp.headers().get(&CALL_ERROR) {
                let message = String::from_utf8_lossy(&body).trim_end().to_string();
                return Err(error_from_wire(kind.to_str().unwrap_or_default(), message));
            }
            Ok(Some((
                wit::Response {
                    status: resp.status().as_u16(),
                    headers: wire_headers(resp.headers()),
                    body,
                },
                None,
            )))
        }
        Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Ok(None)
        }
        Err(e) => Err(CallError::Unavailable(format!(
            "node {addr}, which serves the called object, did not take the WebSocket: {e}"
        ))),
    }
}

fn wire_headers(h: &hyper::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

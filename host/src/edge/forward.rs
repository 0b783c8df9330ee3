//! A cluster node's edge: a request for an object another node serves is forwarded there
//! (pooled keep-alive connections, a hop header with the cluster's secret); a node that
//! receives a forwarded request for an object it does not serve answers 421, and the
//! forwarder tries again with backoff within a bounded budget — 421 means nothing ran.

use super::HttpError;
use crate::runtime::{Dispatch, Owner};
use crate::services::peer::client;
pub use crate::services::peer::{FORWARDED, backoff};
use crate::services::secret::same;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::Full;

/// Whether `parts` was forwarded by another node; Err when it claims to be without the
/// cluster's secret.
pub fn forwarded(rt: &dyn Dispatch, parts: &Parts) -> Result<bool, HttpError> {
    let Some(given) = parts.headers.get(&FORWARDED) else {
        return Ok(false);
    };
    match rt.cluster_secret() {
        // Not `==`, which would answer sooner the less of a guess is right.
        Some(secret) if same(given.as_bytes(), secret.as_bytes()) => Ok(true),
        _ => Err(HttpError::Forbidden(
            "a forwarded request must carry this cluster's secret".into(),
        )),
    }
}

/// Where the object of `binding`/`name` is served, waiting (within the budget) while its
/// shard is between owners: Ok(None) means here.
pub async fn route(
    rt: &dyn Dispatch,
    binding: &str,
    name: &str,
    forwarded: bool,
    attempt: &mut u32,
) -> Result<Option<String>, HttpError> {
    loop {
        match rt.owner_of(binding, name) {
            Owner::Here => return Ok(None),
            _ if forwarded => {
                return Err(HttpError::Misdirected(
                    "this node does not serve that object (its view of the cluster moved); \
                     nothing ran"
                        .into(),
                ));
            }
            Owner::Elsewhere(addr) => return Ok(Some(addr)),
            Owner::Nobody => backoff(attempt).await.map_err(|()| {
                HttpError::Unavailable(
                    "no node serves this object right now (its shard is between nodes)".into(),
                )
            })?,
        }
    }
}

/// Sends the request to the node at `addr`; Ok(None) when nothing ran there (it answered
/// 421, or could not be connected to) and the caller may try again.
pub async fn send(
    rt: &dyn Dispatch,
    addr: &str,
    parts: &Parts,
    body: Bytes,
) -> Result<Option<Response>, HttpError> {
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let uri: hyper::Uri = format!("http://{addr}{path}")
        .parse()
        .map_err(|e| HttpError::Unavailable(format!("bad node address {addr:?}: {e}")))?;
    let mut req = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .body(Full::new(body))
        .map_err(|e| HttpError::BadRequest(format!("cannot forward this request: {e}")))?;
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONNECTION && name != FORWARDED {
            req.headers_mut().append(name.clone(), value.clone());
        }
    }
    let secret = rt.cluster_secret().unwrap_or_default();
    req.headers_mut().insert(
        FORWARDED,
        HeaderValue::from_str(secret).map_err(|_| {
            HttpError::Unavailable("the cluster secret is not a header value".into())
        })?,
    );
    let resp = match client().request(req).await {
        Ok(resp) => resp,
        // Never connected: nothing ran there (a node that just stopped, say); route again.
        Err(e) if e.is_connect() => return Ok(None),
        // Sent, and then the connection failed: it may have run there (a 503 would say it
        // did not).
        Err(e) => {
            return Err(HttpError::Unanswered(format!(
                "node {addr}, which serves this object, took the request and did not answer \
                 ({e}); it may or may not have run"
            )));
        }
    };
    if resp.status() == StatusCode::MISDIRECTED_REQUEST {
        return Ok(None);
    }
    let (parts, body) = resp.into_parts();
    Ok(Some(Response::from_parts(parts, Body::new(body))))
}

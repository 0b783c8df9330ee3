//! The internal route another node of the cluster sends calls to
//! (`/.well-known/dohost/call/{binding}/{id}`, with the cluster's secret): the call runs
//! here if this node serves the object, else 421 (nothing ran); a failed call comes back
//! with its kind in a header, so the caller sees the same error as a local call gives.

use super::HttpError;
use super::convert::read_body;
use super::forward;
use crate::runtime::Dispatch;
use crate::runtime::remote::{
    CALL_CHAIN, CALL_ERROR, CALL_NAME, CALL_PATH, CALL_URL, error_to_wire,
};
use crate::services::calls::chain_from_wire;
use crate::services::handoff::STREAM_HEADER;
use crate::services::peer::FORWARDED;
use crate::wasm::bindings::types as wit;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub async fn call(
    State(rt): State<Arc<dyn Dispatch>>,
    req: Request,
) -> Result<Response, HttpError> {
    let (mut parts, body) = req.into_parts();
    // A call that passes its caller's client's WebSocket upgrade on comes as a handshake.
    let upgrade = super::websocket_upgrade(&mut parts).await?;
    if !forward::forwarded(&*rt, &parts)? {
        return Err(HttpError::Forbidden(
            "this route is for the nodes of a cluster".into(),
        ));
    }
    let rest = parts
        .uri
        .path()
        .strip_prefix(CALL_PATH)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or_default();
    let Some((binding, id)) = rest.split_once('/') else {
        return Err(HttpError::BadRequest(format!(
            "expected {CALL_PATH}/{{binding}}/{{id}}"
        )));
    };
    let text = |h: &axum::http::HeaderName| {
        parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let url = text(&CALL_URL)
        .ok_or_else(|| HttpError::BadRequest(format!("a call needs the {CALL_URL} header")))?;
    let name = match text(&CALL_NAME) {
        Some(n) => Some(
            percent_encoding::percent_decode_str(&n)
                .decode_utf8()
                .map_err(|_| HttpError::BadRequest("the name is not UTF-8".into()))?
                .into_owned(),
        ),
        None => None,
    };
    let chain = chain_from_wire(&text(&CALL_CHAIN).unwrap_or_default()).ok_or_else(|| {
        HttpError::BadRequest(format!("the {CALL_CHAIN} header is malformed or too long"))
    })?;
    let (body, _held) = read_body(&*rt, &parts, body).await?;
    let internal = [
        &FORWARDED,
        &CALL_URL,
        &CALL_NAME,
        &CALL_CHAIN,
        &header::HOST,
        &header::CONNECTION,
    ];
    let request = wit::Request {
        method: parts.method.as_str().to_string(),
        url,
        headers: parts
            .headers
            .iter()
            .filter(|(k, _)| !internal.contains(k))
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    let offered = upgrade.is_some();
    match rt
        .clone()
        .call_here(
            binding.to_string(),
            id.to_string(),
            name,
            chain,
            request,
            offered,
        )
        .await
    {
        Ok(Some((response, handoff))) => {
            let mut response =
                super::respond(rt, response, handoff, upgrade, super::abort_of(&parts))?;
            // The calling node relays a streamed body instead of reading it whole.
            if response
                .extensions()
                .get::<super::stream::Streamed>()
                .is_some()
            {
                response
                    .headers_mut()
                    .insert(STREAM_HEADER, HeaderValue::from_static("1"));
            }
            Ok(response)
        }
        Ok(None) => Err(HttpError::Misdirected(
            "this node does not serve the called object; nothing ran".into(),
        )),
        Err(e) => {
            let (kind, message) = error_to_wire(&e);
            let mut response =
                (StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n")).into_response();
            response
                .headers_mut()
                .insert(CALL_ERROR, HeaderValue::from_static(kind));
            Ok(response)
        }
    }
}

//! A WebSocket for an object another node serves: the upgrade is forwarded to that node (a
//! WebSocket client carrying the cluster's secret), and once both sides are open, messages
//! and closes are relayed between the client and the owner, in order.

use super::HttpError;
use super::forward::FORWARDED;
use crate::runtime::Dispatch;
pub use crate::services::peer::Upstream;
use crate::services::peer::handshake_header;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as TCloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as TMessage};

/// Opens the WebSocket on the owner at `addr`; Ok(None) when nothing ran there (421, or no
/// connection) and the caller may route again.
pub async fn open(
    rt: &dyn Dispatch,
    addr: &str,
    parts: &Parts,
) -> Result<Option<Upstream>, HttpError> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .map_err(|e| HttpError::BadRequest(format!("cannot forward this WebSocket: {e}")))?;
    for (name, value) in &parts.headers {
        if !handshake_header(name.as_str()) && name != FORWARDED {
            req.headers_mut().append(name.clone(), value.clone());
        }
    }
    let secret = HeaderValue::from_str(rt.cluster_secret().unwrap_or_default())
        .map_err(|_| HttpError::Unavailable("the cluster secret is not a header value".into()))?;
    req.headers_mut().insert(FORWARDED, secret);
    // The relay holds a socket per client, like the edge: the same small read buffer.
    let config =
        tungstenite::protocol::WebSocketConfig::default().read_buffer_size(super::WS_READ_BUFFER);
    match tokio_tungstenite::connect_async_with_config(req, Some(config), false).await {
        Ok((upstream, _)) => Ok(Some(upstream)),
        Err(tungstenite::Error::Http(resp)) if resp.status() == StatusCode::MISDIRECTED_REQUEST => {
            Ok(None)
        }
        Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Ok(None)
        }
        Err(tungstenite::Error::Http(resp)) => Err(HttpError::Unavailable(format!(
            "node {addr}, which serves this object, refused the WebSocket ({})",
            resp.status()
        ))),
        Err(e) => Err(HttpError::Unavailable(format!(
            "cannot open the WebSocket on node {addr}, which serves this object: {e}"
        ))),
    }
}

/// Relays between the client and the owner until either side closes (its close, code and
/// reason, is passed on).
pub async fn relay(client: WebSocket, upstream: Upstream) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut up_tx, mut up_rx) = upstream.split();
    let to_owner = async {
        while let Some(Ok(m)) = client_rx.next().await {
            let close = matches!(m, Message::Close(_));
            if up_tx.send(to_upstream(m)).await.is_err() || close {
                break;
            }
        }
    };
    let to_client = async {
        while let Some(Ok(m)) = up_rx.next().await {
            let Some(m) = to_client(m) else { continue };
            let close = matches!(m, Message::Close(_));
            if client_tx.send(m).await.is_err() || close {
                break;
            }
        }
    };
    tokio::select! {
        () = to_owner => {}
        () = to_client => {}
    }
}

fn to_upstream(m: Message) -> TMessage {
    match m {
        Message::Text(t) => TMessage::text(t.as_str()),
        Message::Binary(b) => TMessage::binary(b),
        Message::Ping(b) => TMessage::Ping(b),
        Message::Pong(b) => TMessage::Pong(b),
        Message::Close(f) => TMessage::Close(f.map(|f| TCloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
    }
}

fn to_client(m: TMessage) -> Option<Message> {
    Some(match m {
        TMessage::Text(t) => Message::text(t.as_str()),
        TMessage::Binary(b) => Message::binary(b),
        TMessage::Ping(b) => Message::Ping(b),
        TMessage::Pong(b) => Message::Pong(b),
        TMessage::Close(f) => Message::Close(f.map(|f| CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        TMessage::Frame(_) => return None,
    })
}

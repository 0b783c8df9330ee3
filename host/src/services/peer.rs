//! Talking to the other nodes of a cluster: one pooled keep-alive HTTP client, the header
//! that carries the cluster's secret, and the bounded backoff between attempts that never
//! ran (a 421, or no connection).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderName;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::OnceLock;
use std::time::Duration;

/// A WebSocket to another node (a forwarded upgrade, or one passed on through a call).
pub type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Marks a request sent by another node; its value is the cluster's secret.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-dohost-cluster");

/// Tries at most this many times (the first plus retries after 421 or no owner).
const ATTEMPTS: u32 = 8;
/// The first backoff; each retry doubles it (50 ms … 3.2 s, about 6 s in all).
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

pub fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// Waits before the next attempt; Err once the budget is spent.
pub async fn backoff(attempt: &mut u32) -> Result<(), ()> {
    *attempt += 1;
    if *attempt >= ATTEMPTS {
        return Err(());
    }
    tokio::time::sleep(FIRST_BACKOFF * 2u32.pow(*attempt - 1)).await;
    Ok(())
}

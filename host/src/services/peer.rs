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

/// Whether a client's header is the WebSocket handshake's own (or hop-by-hop), which the
/// WebSocket client library sets itself when an upgrade is passed on to another node; the
/// subprotocol the client asked for is passed on.
pub fn handshake_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    (name.starts_with("sec-websocket-") && name != "sec-websocket-protocol")
        || ["host", "connection", "upgrade"].contains(&name.as_str())
}

/// Marks a request sent by another node; its value is the cluster's secret.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-dohost-cluster");

/// The first backoff; each retry doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between attempts: one coordinator tick, so that a request waiting for a
/// shard to find its new owner notices it within a tick of it being claimed.
const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// Retries stop once the waits between them add up to this (a crashed node's lease expires
/// within its TTL, 3 s by default, and its shards are claimed a tick later).
pub const RETRY_BUDGET: Duration = Duration::from_secs(6);

pub fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    // Idle connections are let go well before the other node's header timeout (20 s by
    // default) would close them under a request just sent, which would then end unanswered.
    CLIENT.get_or_init(|| {
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build_http()
    })
}

/// Waits before the next attempt; Err once the budget is spent.
pub async fn backoff(attempt: &mut u32) -> Result<(), ()> {
    *attempt += 1;
    let waited: Duration = (1..*attempt).map(delay).sum();
    if waited >= RETRY_BUDGET {
        return Err(());
    }
    tokio::time::sleep(delay(*attempt)).await;
    Ok(())
}

/// The wait before retry `n` (1, 2, …): 50 ms doubling, at most `MAX_BACKOFF`.
fn delay(n: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_a_tick_and_stop_at_the_budget() {
        let waits: Vec<u128> = (1..=5).map(|n| delay(n).as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 200, 200]);
        // Attempts allowed: the waits before the last one stay under the budget.
        let allowed = (1..)
            .find(|n| (1..*n).map(delay).sum::<Duration>() >= RETRY_BUDGET)
            .unwrap();
        let total: Duration = (1..allowed - 1).map(delay).sum();
        assert!(total < RETRY_BUDGET && total + MAX_BACKOFF >= RETRY_BUDGET);
    }
}

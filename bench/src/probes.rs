//! The measurements wrk cannot make: single-request latency, reading counters back, touching
//! many objects, and WebSocket broadcast.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{SinkExt, StreamExt, stream};
use tokio_tungstenite::tungstenite::Message;

use crate::servers::Server;

/// One client with keep-alive, used for everything but the load itself.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("an HTTP client")
}

/// Sends a GET and returns the body, failing on any status but 200.
pub async fn get_text(client: &reqwest::Client, url: &str) -> Result<String> {
    let resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.text().await?;
    if status != reqwest::StatusCode::OK {
        bail!("GET {url}: {status} {body}");
    }
    Ok(body)
}

/// The counter `name`'s value, as the object answers `/get`.
pub async fn counter(client: &reqwest::Client, server: &Server, name: &str) -> Result<i64> {
    let url = server.url(&server.kind.counter_path(name, "get"));
    let body = get_text(client, &url).await?;
    body.trim()
        .parse()
        .with_context(|| format!("{url} answered {body:?}, not a number"))
}

/// The sum of the counters `{prefix}0` … `{prefix}{n-1}`.
pub async fn counter_sum(
    client: &reqwest::Client,
    server: &Server,
    prefix: &str,
    n: u32,
) -> Result<i64> {
    let values: Vec<Result<i64>> = stream::iter(0..n)
        .map(|i| async move { counter(client, server, &format!("{prefix}{i}")).await })
        .buffer_unordered(16)
        .collect()
        .await;
    values.into_iter().sum()
}

/// Latency of each GET in `paths`, one after another on one keep-alive connection.
pub async fn sequential_latencies(server: &Server, paths: &[String]) -> Result<Vec<Duration>> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    // Open the connection first so the first sample is not a TCP handshake.
    client.get(server.url("/")).send().await?;
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let url = server.url(path);
        let start = Instant::now();
        let resp = client.get(&url).send().await?;
        let status = resp.status();
        resp.bytes().await?;
        out.push(start.elapsed());
        if !status.is_success() {
            bail!("GET {url}: {status}");
        }
    }
    Ok(out)
}

/// The `q` quantile (0..=1) of `samples`.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let i = ((s.len() as f64 - 1.0) * q).round() as usize;
    s[i]
}

/// Touches `n` distinct counters (`/get`, so nothing is written) with some concurrency.
pub async fn touch(client: &reqwest::Client, server: &Server, prefix: &str, n: u32) -> Result<()> {
    let results: Vec<Result<String>> = stream::iter(0..n)
        .map(|i| {
            let url = server.url(&server.kind.counter_path(&format!("{prefix}{i}"), "get"));
            async move { get_text(client, &url).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// What a broadcast run measured.
pub struct Broadcast {
    /// Messages received by listeners, each checked to be the one expected next.
    pub deliveries: u64,
    pub elapsed: Duration,
}

impl Broadcast {
    pub fn per_sec(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }
}

/// How far each client of a fan-out has got, for the sender to wait on between batches.
pub struct Progress {
    /// Messages received by all clients together.
    received: AtomicU64,
    per_client: Vec<AtomicU64>,
    /// Clients wake the sender on each message and when they end; `notify_one` keeps a
    /// permit, so a wake-up between the sender's check and its wait is not lost.
    wake: tokio::sync::Notify,
}

impl Progress {
    pub fn new(clients: u32) -> Arc<Progress> {
        Arc::new(Progress {
            received: AtomicU64::new(0),
            per_client: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Client `client` has its first `count` messages.
    pub fn reached(&self, client: u32, count: u64) {
        self.per_client[client as usize].store(count, Ordering::Release);
        self.received.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// A client ended (its task is finished, or about to be).
    pub fn ended(&self) {
        self.wake.notify_one();
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until every client has `sent` messages; false when a client ended first (its
    /// task's error says why); an error past `timeout` from `start`.
    pub async fn wait_all<T>(
        &self,
        sent: u32,
        clients: &[tokio::task::JoinHandle<T>],
        start: Instant,
        timeout: Duration,
    ) -> Result<bool> {
        while self
            .per_client
            .iter()
            .any(|p| p.load(Ordering::Acquire) < u64::from(sent))
        {
            if clients.iter().any(|t| t.is_finished()) {
                return Ok(false);
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                bail!(
                    "the messages did not all arrive within {timeout:?} ({} deliveries)",
                    self.received()
                );
            }
            let _ = tokio::time::timeout(left, self.wake.notified()).await;
        }
        Ok(true)
    }
}

/// `listeners` sockets and one sender join `room`; the sender sends `messages` texts in
/// batches of `batch`, waiting until every listener has the whole batch before the next, so
/// no queue grows without bound. Every listener must receive every message, in order.
pub async fn broadcast(
    server: &Server,
    room: &str,
    listeners: u32,
    messages: u32,
    batch: u32,
    timeout: Duration,
) -> Result<Broadcast> {
    let ws_url = |member: &str| {
        format!(
            "ws://{}{}",
            server.addr,
            server.kind.room_path(room, member)
        )
    };
    let progress = Progress::new(listeners);
    let mut tasks = Vec::new();
    for l in 0..listeners {
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&format!("l{l}")))
            .await
            .context("a listener joining the room")?;
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let result = async {
                let mut next = 0u32;
                while next < messages {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => {
                            let expected = format!("sender: m{next}");
                            if t.as_str() != expected {
                                bail!("listener {l} got {t:?}, expected {expected:?}");
                            }
                            next += 1;
                            progress.reached(l, u64::from(next));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => bail!("listener {l}: {e}"),
                        None => bail!("listener {l}: closed after {next} messages"),
                    }
                }
                let _ = ws.close(None).await;
                Ok(())
            }
            .await;
            progress.ended();
            result
        }));
    }
    let (mut sender, _) = tokio_tungstenite::connect_async(ws_url("sender"))
        .await
        .context("the sender joining the room")?;
    let start = Instant::now();
    let mut sent = 0u32;
    while sent < messages {
        let end = (sent + batch).min(messages);
        for i in sent..end {
            sender.send(Message::text(format!("m{i}"))).await?;
        }
        sent = end;
        if !progress.wait_all(sent, &tasks, start, timeout).await? {
            // A listener ended before this batch reached it: its error is reported below.
            break;
        }
    }
    let elapsed = start.elapsed();
    for t in tasks {
        t.await??;
    }
    let _ = sender.close(None).await;
    Ok(Broadcast {
        deliveries: progress.received(),
        elapsed,
    })
}

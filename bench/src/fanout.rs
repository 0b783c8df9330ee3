//! The fan-out table: one object's output reaching 1,000 clients at once, as WebSocket
//! broadcast (the `chat-room` example) and as server-sent events (the `notifications`
//! example), side by side on one dohost.

use crate::probes::{self, Broadcast, Progress};
use crate::servers::{Paths, Server};
use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use std::time::{Duration, Instant};

pub struct FanoutOpts {
    /// Clients of the one object: WebSocket listeners, then event-stream subscribers.
    pub clients: u32,
    /// Messages sent (WebSocket) and published (server-sent events); each reaches every
    /// client.
    pub messages: u32,
}

/// How many messages go out before the sender waits for every client to have them all,
/// so that no queue grows without bound.
const BATCH: u32 = 50;
/// Publishes in flight at once: each is an event with a write, and the writes of
/// concurrent events share an fsync.
const PUBLISHES_IN_FLIGHT: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(300);

pub struct Fanout {
    pub websocket: Broadcast,
    pub sse: Broadcast,
}

pub async fn measure(opts: &FanoutOpts, paths: &Paths) -> Result<Fanout> {
    eprintln!("== fan-out to {} clients", opts.clients);
    let flags = [
        "--sse-keepalive-ms".to_string(),
        "0".to_string(),
        // Every subscriber is a stream of the one object.
        "--max-streams-per-object".to_string(),
        opts.clients.to_string(),
    ];
    let s = Server::start_flagged(paths, "fanout", &flags, &["chat-room", "notifications"]).await?;
    let websocket =
        probes::broadcast(&s, "fanout", opts.clients, opts.messages, BATCH, TIMEOUT).await?;
    let expected = u64::from(opts.clients) * u64::from(opts.messages);
    ensure!(
        websocket.deliveries == expected,
        "{} of {expected} broadcast messages arrived",
        websocket.deliveries
    );
    eprintln!(
        "   WebSocket broadcast: {:.0} deliveries/s",
        websocket.per_sec()
    );
    let sse = sse_fanout(&s, opts.clients, opts.messages).await?;
    ensure!(
        sse.deliveries == expected,
        "{} of {expected} events arrived",
        sse.deliveries
    );
    eprintln!("   server-sent events: {:.0} deliveries/s", sse.per_sec());
    s.kill().await?;
    Ok(Fanout { websocket, sse })
}

/// `subscribers` event streams of one `notifications` object; one publisher publishes
/// `messages` in batches, each batch waiting until every subscriber has all of it. Every
/// subscriber must see every event, its IDs 1, 2, 3, ... in order.
async fn sse_fanout(server: &Server, subscribers: u32, messages: u32) -> Result<Broadcast> {
    let base = server.url("/notifications/fanout");
    let client = reqwest::Client::new();
    let progress = Progress::new(subscribers);
    let mut tasks = Vec::new();
    for n in 0..subscribers {
        // The head arrives once the stream is open: publishes after this reach it.
        let mut response = client
            .get(format!("{base}/subscribe"))
            .send()
            .await
            .context("a subscriber subscribing")?;
        ensure!(response.status() == 200, "subscribe: {}", response.status());
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let result = async {
                let mut buffer = String::new();
                let mut next = 1u64;
                while next <= u64::from(messages) {
                    let Some(chunk) = response.chunk().await? else {
                        bail!("subscriber {n}: the stream ended after {} events", next - 1);
                    };
                    buffer.push_str(std::str::from_utf8(&chunk)?);
                    while let Some(end) = buffer.find("\n\n") {
                        let id = buffer[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("id: "))
                            .map(str::parse::<u64>);
                        buffer.drain(..end + 2);
                        match id {
                            None => continue, // a comment
                            Some(Ok(id)) if id == next => {}
                            Some(id) => bail!("subscriber {n}: event {id:?}, expected {next}"),
                        }
                        progress.reached(n, next);
                        next += 1;
                    }
                }
                Ok(())
            }
            .await;
            progress.ended();
            result
        }));
    }
    let publish = format!("{base}/publish?topic=bench");
    let start = Instant::now();
    let mut sent = 0u32;
    while sent < messages {
        let end = (sent + BATCH).min(messages);
        let answers: Vec<Result<reqwest::Response, reqwest::Error>> =
            futures::stream::iter(sent..end)
                .map(|i| client.post(&publish).body(format!("m{i}")).send())
                .buffer_unordered(PUBLISHES_IN_FLIGHT)
                .collect()
                .await;
        for a in answers {
            ensure!(a?.status() == 200, "a publish failed");
        }
        sent = end;
        if !progress.wait_all(sent, &tasks, start, TIMEOUT).await? {
            // A subscriber ended before this batch reached it: its error is below.
            break;
        }
    }
    let elapsed = start.elapsed();
    for t in tasks {
        t.await??;
    }
    Ok(Broadcast {
        deliveries: progress.received(),
        elapsed,
    })
}

pub fn table(opts: &FanoutOpts, f: &Fanout) -> String {
    let rate = |b: &Broadcast| format!("{:.0}", b.per_sec());
    format!(
        "\n### Fan-out: one object to {clients} clients\n\n\
         One dohost; {messages} messages, each to every client, sent in batches of {BATCH} \
         (each batch waits until every client has it), every client checked to get every \
         message in order.\n\n\
         | workload | deliveries/s | what one message is |\n\
         | --- | ---: | --- |\n\
         | WebSocket broadcast ({clients} listeners, `chat-room`) | {ws} | a socket message; the object broadcasts it (no write) |\n\
         | server-sent events ({clients} subscribers, `notifications`) | {sse} | a publish request ({PUBLISHES_IN_FLIGHT} in flight): stored, then written to every stream once durable |\n",
        clients = opts.clients,
        messages = opts.messages,
        ws = rate(&f.websocket),
        sse = rate(&f.sse),
    )
}

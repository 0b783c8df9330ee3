//! Streamed responses and server-sent events, end to end with real HTTP clients reading the
//! streams as they arrive (the `notifications` example): events in order, streams that
//! outlive their object's instance, a subscriber that leaves or stops reading, replay with
//! `Last-Event-ID`, the limits on open streams, keep-alive comments, a stream through the
//! worker and through an object's stub, a stopping host, and SIGKILL.

mod common;
use common::sse::{Subscriber, event};
use common::*;
use dohost::Limits;
use dohost::services::scheduler::{Clock, SystemClock};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

async fn start(dir: &std::path::Path, limits: Limits) -> TestHost {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    TestHost::start_clocked(config(&["notifications"], dir, limits), clock).await
}

/// A host serving `guests`, without keep-alive comments.
async fn start_with(dir: &std::path::Path, guests: &[&str]) -> TestHost {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    TestHost::start_clocked(config(guests, dir, quiet()), clock).await
}

/// Limits with the keep-alive comments off, so a stream carries only what its object
/// writes (the keep-alive test turns them on).
fn quiet() -> Limits {
    Limits {
        sse_keepalive: Duration::ZERO,
        ..Limits::default()
    }
}

async fn publish(c: &reqwest::Client, host: &TestHost, room: &str, topic: &str, data: &str) -> u64 {
    let (status, body) = post(
        c,
        &host.url(&format!("/notifications/{room}/publish?topic={topic}")),
        data.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["id"].as_u64().unwrap()
}

async fn subscribers(c: &reqwest::Client, host: &TestHost, room: &str) -> Value {
    let (status, body) = get(c, &host.url(&format!("/notifications/{room}/subscribers"))).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Each event reaches its topic's subscribers (and the every-topic subscriber) in the
/// order published, read incrementally: each is read before the next is published, so the
/// stream cannot have been answered whole. Multi-line data arrives whole.
async fn events_arrive_in_order_to_their_topics_subscribers(backend: Backend) {
    let dir = backend.data_dir();
    let host = start(dir.path(), quiet()).await;
    let c = client();
    let base = host.url("/notifications/room/subscribe");
    let mut news = Subscriber::open(&format!("{base}?topic=news"), None).await;
    let mut sport = Subscriber::open(&format!("{base}?topic=sport"), None).await;
    let mut all = Subscriber::open(&base, None).await;
    for i in 1..=20 {
        let (topic, data) = if i % 4 == 0 {
            ("sport", format!("goal {i}"))
        } else {
            ("news", format!("headline {i}\nsecond line"))
        };
        let id = publish(&c, &host, "room", topic, &data).await;
        assert_eq!(id, i);
        let mine = if topic == "news" {
            &mut news
        } else {
            &mut sport
        };
        assert_eq!(mine.next_event().await, event(i, &data));
        assert_eq!(all.next_event().await, event(i, &data));
    }
    assert_eq!(subscribers(&c, &host, "room").await["subscribers"], 3);
    let metrics = host.runtime().render_metrics();
    assert!(
        metrics.lines().any(|l| l == "dohost_streams_open 3"),
        "the gauge counts them: {metrics}"
    );
    host.stop().await;
}

/// Streams belong to the host: their object's instance is evicted when idle
/// (`idle_timeout` of one second, `--idle-secs 1`), and the next publish, on a fresh
/// instance, still reaches every subscriber.
async fn streams_survive_their_objects_eviction(backend: Backend) {
    let dir = backend.data_dir();
    let limits = Limits {
        idle_timeout: Duration::from_secs(1),
        ..quiet()
    };
    let host = start(dir.path(), limits).await;
    let rt = host.runtime().clone();
    let c = client();
    let url = host.url("/notifications/room/subscribe?topic=t");
    let mut a = Subscriber::open(&url, None).await;
    let mut b = Subscriber::open(&url, None).await;
    for round in 1..=2u64 {
        wait_until("the idle instance is evicted", || async {
            rt.live_instances() == 0
        })
        .await;
        let id = publish(&c, &host, "room", "t", &format!("after eviction {round}")).await;
        assert_eq!(
            a.next_event().await,
            event(id, &format!("after eviction {round}"))
        );
        assert_eq!(
            b.next_event().await,
            event(id, &format!("after eviction {round}"))
        );
    }
    let stats = subscribers(&c, &host, "room").await;
    assert_eq!(stats["subscribers"], 2, "{stats}");
    assert!(
        stats["constructed"].as_u64().unwrap() >= 3,
        "rebuilt each time: {stats}"
    );
    host.stop().await;
}

/// A subscriber that goes away is seen as gone: no longer listed, so the object stops
/// writing to it, with no write needed to find out.
async fn a_subscriber_that_disconnects_is_seen_as_gone(backend: Backend) {
    let dir = backend.data_dir();
    let host = start(dir.path(), quiet()).await;
    let c = client();
    let url = host.url("/notifications/room/subscribe");
    let stays = Subscriber::open(&url, None).await;
    let leaves = Subscriber::open(&url, None).await;
    assert_eq!(subscribers(&c, &host, "room").await["subscribers"], 2);
    drop(leaves);
    wait_until("the subscriber that left is not counted", || async {
        subscribers(&c, &host, "room").await["subscribers"] == 1
    })
    .await;
    let v: Value = serde_json::from_str(
        &post(&c, &host.url("/notifications/room/publish?topic=x"), "hi")
            .await
            .1,
    )
    .unwrap();
    assert_eq!(v["delivered"], 1, "only the one still there: {v}");
    assert_eq!(host.runtime().streams().count(), 1);
    drop(stays);
    host.stop().await;
}

/// Reconnecting with `Last-Event-ID` replays what was published since, in order and only
/// of the subscriber's topic, before the live events.
async fn a_reconnect_with_last_event_id_replays_the_missed_events(backend: Backend) {
    let dir = backend.data_dir();
    let host = start(dir.path(), quiet()).await;
    let c = client();
    for i in 1..=6 {
        let topic = if i % 2 == 0 { "even" } else { "odd" };
        publish(&c, &host, "room", topic, &format!("m{i}")).await;
    }
    let url = host.url("/notifications/room/subscribe?topic=even");
    let mut s = Subscriber::open(&url, Some("2")).await;
    assert_eq!(s.next_event().await, event(4, "m4"));
    assert_eq!(s.next_event().await, event(6, "m6"));
    publish(&c, &host, "room", "even", "m7").await;
    assert_eq!(s.next_event().await, event(7, "m7"));
    // A Last-Event-ID that is not a message number is refused.
    let r = c
        .get(&url)
        .header("last-event-id", "seven")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    host.stop().await;
}

/// An event a subscriber saw is durable: the real binary is killed with SIGKILL while
/// publishers publish and a subscriber reads, and after a restart every event the
/// subscriber had is in storage, as it saw it (replayed with `Last-Event-ID: 0`).
async fn every_event_a_subscriber_saw_survives_sigkill(backend: Backend) {
    let dir = backend.data_dir();
    let data = dir.path().join("data");
    let flags = ["--sse-keepalive-ms", "0"];
    let host = process::HostProcess::spawn(&data, &["notifications"], &flags);
    let base = format!("http://{}/notifications/crash", host.addr);
    let mut s = Subscriber::open(&format!("{base}/subscribe"), None).await;
    // Four publishers, 800 messages at most between them (the object keeps 1,000).
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut publishers = Vec::new();
    for p in 0..4 {
        let (url, sent) = (format!("{base}/publish?topic=t"), sent.clone());
        publishers.push(tokio::spawn(async move {
            let c = client();
            while sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 800 {
                let body = format!("from {p}");
                match c.post(&url).body(body).send().await {
                    Ok(r) if r.status() == 200 => {}
                    _ => return,
                }
            }
        }));
    }
    let mut seen = Vec::new();
    while seen.len() < 100 {
        seen.push(s.next_event().await);
    }
    host.kill();
    // What had already reached the client before the kill counts too.
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_secs(5), s.response.chunk()).await
    {
        s.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while s.buffer.contains("\n\n") {
            seen.push(s.next_event().await);
        }
    }
    for p in publishers {
        let _ = p.await;
    }
    let host = process::HostProcess::spawn(&data, &["notifications"], &flags);
    let base = format!("http://{}/notifications/crash", host.addr);
    // A marker after everything stored: the replay has it all once the marker arrives.
    let c = client();
    let (status, marker) = post(&c, &format!("{base}/publish?topic=t"), "marker").await;
    assert_eq!(status, 200, "{marker}");
    let marker = serde_json::from_str::<Value>(&marker).unwrap()["id"]
        .as_u64()
        .unwrap();
    let mut replay = Subscriber::open(&format!("{base}/subscribe"), Some("0")).await;
    let mut stored = Vec::new();
    loop {
        let e = replay.next_event().await;
        if e.data == "marker" {
            break;
        }
        stored.push(e);
    }
    assert_eq!(stored.len() as u64, marker - 1);
    for (i, e) in stored.iter().enumerate() {
        assert_eq!(
            e.id.as_deref(),
            Some((i + 1).to_string().as_str()),
            "ids in order"
        );
    }
    for e in &seen {
        let id: usize = e.id.as_deref().unwrap().parse().unwrap();
        assert!(
            id <= stored.len(),
            "the subscriber saw event {id}, and only {} are stored",
            stored.len()
        );
        assert_eq!(
            &stored[id - 1],
            e,
            "an event the subscriber saw is stored as it saw it"
        );
    }
    host.kill();
}

on_both_backends!(
    every_event_a_subscriber_saw_survives_sigkill,
    events_arrive_in_order_to_their_topics_subscribers,
    streams_survive_their_objects_eviction,
    a_subscriber_that_disconnects_is_seen_as_gone,
    a_reconnect_with_last_event_id_replays_the_missed_events,
);

/// A subscriber that does not read is cut once its queue passes `stream_queue_bytes`
/// (after the kernel's socket buffers filled): it is no longer listed, its client sees the
/// body fail rather than end, and the bytes it held go back to the memory budget.
#[tokio::test]
async fn a_subscriber_that_does_not_read_is_cut_at_the_byte_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        stream_queue_bytes: 64 * 1024,
        ..quiet()
    };
    let host = start(dir.path(), limits).await;
    let rt = host.runtime().clone();
    let c = client();
    let url = host.url("/notifications/room/subscribe");
    let mut reads = Subscriber::open(&url, None).await;
    let mut stalled = Subscriber::open(&url, None).await;
    let message = "x".repeat(16 * 1024);
    let mut published = 0;
    while subscribers(&c, &host, "room").await["subscribers"] == 2 {
        assert!(published < 2000, "the stalled subscriber was never cut");
        publish(&c, &host, "room", "t", &message).await;
        published += 1;
        // The reading subscriber keeps up.
        assert_eq!(reads.next_event().await.data.len(), message.len());
    }
    assert!(
        published > 4,
        "cut only once its queue was full: {published}"
    );
    // What was queued and written before the cut arrives; then the body fails.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.response.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return "ended cleanly",
                Err(_) => return "failed",
            }
        }
    })
    .await
    .expect("in time");
    assert_eq!(ended, "failed");
    wait_until("the cut stream's queued bytes are given back", || async {
        rt.streams().count() == 1
    })
    .await;
    host.stop().await;
}

/// An event's chunks wait in the host until its writes are durable, so they count against
/// its instance's memory limit: with 8 MiB, the 129th 64 KiB chunk of one event fails with
/// a message naming the limit (and the event goes on).
#[tokio::test]
async fn one_events_queued_chunks_are_bounded_by_its_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory_per_instance: 8 * 1024 * 1024,
        // Queues that could take it all, so that the memory limit is what refuses.
        stream_queue: 100_000,
        stream_queue_bytes: 1 << 30,
        ..quiet()
    };
    let host = TestHost::start_with(&["test-object"], dir.path(), limits).await;
    let c = client();
    let flood = c
        .get(host.url("/test-object/f/stream-flood?n=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(flood.status(), 200);
    drop(flood);
    let outcome = get(&c, &host.url("/test-object/f/get?key=stream-flood"))
        .await
        .1;
    assert!(outcome.starts_with("\"128 written, then:"), "{outcome}");
    assert!(outcome.contains("memory_bytes"), "{outcome}");
    host.stop().await;
}

/// The limits on open streams hold at their edge: the object's next one past
/// `max_streams_per_object` is refused (503, naming the limit), and so is the host's past
/// `max_streams`; one closing frees its place.
#[tokio::test]
async fn open_streams_are_limited_per_object_and_per_host() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_streams_per_object: 2,
        max_streams: 3,
        ..quiet()
    };
    let host = start(dir.path(), limits).await;
    let c = client();
    let room = |r: &str| host.url(&format!("/notifications/{r}/subscribe"));
    let a1 = Subscriber::open(&room("a"), None).await;
    let _a2 = Subscriber::open(&room("a"), None).await;
    let (status, body) = get(&c, &room("a")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max_streams_per_object"), "{body}");
    let _b1 = Subscriber::open(&room("b"), None).await;
    let (status, body) = get(&c, &room("b")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("(max_streams)"), "{body}");
    drop(a1);
    wait_until("the closed stream frees its place", || async {
        host.runtime().streams().count() == 2
    })
    .await;
    let _b2 = Subscriber::open(&room("b"), None).await;
    host.stop().await;
}

/// A host that stops ends its streams (cleanly: the body ends, it is not cut) once every
/// write is durable, rather than holding their connections until the shutdown deadline.
#[tokio::test]
async fn a_stopping_host_ends_its_streams() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), quiet()).await;
    let c = client();
    let mut s = Subscriber::open(&host.url("/notifications/room/subscribe"), None).await;
    let id = publish(&c, &host, "room", "t", "last words").await;
    let stopping = tokio::spawn(host.stop());
    assert_eq!(s.next_event().await, event(id, "last words"));
    let end = tokio::time::timeout(Duration::from_secs(10), s.response.chunk())
        .await
        .expect("the stream ends before the shutdown deadline (30 s)");
    assert!(matches!(end, Ok(None)), "ended cleanly: {end:?}");
    stopping.await.unwrap();
}

/// A stream passes through an object's stub as it does through the worker's: an object
/// that returns the callee's response (`/relay`) hands the stream on; one that answers with
/// a response of its own (`/call`) drops it, and the callee sees it gone.
#[tokio::test]
async fn a_stream_passes_through_an_object_that_returns_its_callees_response() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_with(dir.path(), &["test-object", "notifications"]).await;
    let c = client();
    let relay = host.url("/test-object/a/relay?binding=notifications&name=room&path=/subscribe");
    let mut s = Subscriber::open(&relay, None).await;
    let id = publish(&c, &host, "room", "t", "through a stub").await;
    assert_eq!(s.next_event().await, event(id, "through a stub"));
    let call = host.url("/test-object/a/call?binding=notifications&name=room&path=/subscribe");
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), get(&c, &call))
        .await
        .expect("the call's answer ends: a stream its caller did not return is not handed on");
    assert_eq!((status, body.as_str()), (200, "200 : subscribed\n\n"));
    wait_until("the stream its caller did not return is gone", || async {
        subscribers(&c, &host, "room").await["subscribers"] == 1
    })
    .await;
    host.stop().await;
}

/// A silent event stream gets a comment line every `sse_keepalive`, so proxies that cut
/// idle connections keep it; events still arrive between them.
#[tokio::test]
async fn a_silent_event_stream_gets_keep_alive_comments() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        sse_keepalive: Duration::from_millis(50),
        ..Limits::default()
    };
    let host = start(dir.path(), limits).await;
    let c = client();
    let mut s = Subscriber::open(&host.url("/notifications/room/subscribe"), None).await;
    s.read_until(|s| s.comments.iter().filter(|c| *c == ": keep-alive").count() >= 2)
        .await;
    let id = publish(&c, &host, "room", "t", "between keep-alives").await;
    assert_eq!(s.next_event().await, event(id, "between keep-alives"));
    host.stop().await;
}

/// A stream an object opens passes through the worker's `stub.fetch` to the client, and
/// later events written to it follow.
#[tokio::test]
async fn an_event_stream_passes_through_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&["counter", "notifications"], dir.path(), quiet());
    config.worker = Some(guest("worker"));
    let host = TestHost::start_config(config).await;
    let c = client();
    let mut s = Subscriber::open(
        &host.url("/objects/notifications/room/subscribe?topic=t"),
        None,
    )
    .await;
    for i in 1..=3 {
        let (status, body) = post(
            &c,
            &host.url("/objects/notifications/room/publish?topic=t"),
            format!("via the worker {i}"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            s.next_event().await,
            event(i, &format!("via the worker {i}"))
        );
    }
    host.stop().await;
}

/// Guards against an event that writes more to a stream than its queue holds killing the
/// stream silently, even for a client that reads at once: the write that does not fit is
/// refused (17 chunks of 64 KiB against the default 1 MiB, `stream_queue_bytes`), the
/// object is told why, and the client gets every chunk that was accepted on a stream that
/// stays open.
#[tokio::test]
async fn an_event_writing_more_than_a_stream_queue_holds_is_refused_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(&["test-object"], dir.path(), quiet()).await;
    let c = client();
    let flood = c
        .get(host.url("/test-object/f/stream-flood?n=17"))
        .send()
        .await
        .unwrap();
    assert_eq!(flood.status(), 200);
    let mut body = flood;
    let mut got = 0usize;
    while got < 16 * 64 * 1024 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), body.chunk())
            .await
            .expect("the accepted chunks arrive")
            .expect("the stream is not cut")
            .expect("the stream stays open");
        got += chunk.len();
    }
    assert_eq!(got, 16 * 64 * 1024);
    let outcome = get(&c, &host.url("/test-object/f/get?key=stream-flood"))
        .await
        .1;
    assert!(outcome.starts_with("\"16 written, then:"), "{outcome}");
    assert!(outcome.contains("stream_queue_bytes"), "{outcome}");
    drop(body);
    host.stop().await;
}

/// Guards against a cut stream outliving its cut while its client does not read: the cut
/// was seen only when hyper polled the body, so stalled subscribers held their streams
/// and queued bytes until they left. A subscriber that never reads is cut once its queue
/// is full, and its connection is closed at once (the write timeout is ten minutes here,
/// so it is not what closes it): the stream leaves the registry, its queued bytes with it.
#[tokio::test]
async fn a_stream_cut_for_a_client_that_does_not_read_is_torn_down_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        stream_queue_bytes: 256 * 1024,
        write_timeout: Duration::from_secs(600),
        ..quiet()
    };
    let host = TestHost::start_observed(&["notifications"], dir.path(), limits).await;
    let rt = host.runtime().clone();
    let c = client();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(host.addr).await.unwrap();
    stalled
        .write_all(b"GET /notifications/cut/subscribe HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    wait_until("the subscriber's stream is open", || async {
        rt.streams().count() == 1
    })
    .await;
    let data = "x".repeat(100 * 1024);
    let mut published = 0;
    // Until the host gives up on the subscriber: what the kernel buffers, then the queue.
    while rt.streams().count() == 1 {
        publish(&c, &host, "cut", "t", &data).await;
        published += 1;
        assert!(published < 500, "never cut, or never torn down");
    }
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut sink));
    assert!(
        read.await.is_ok(),
        "the cut stream's connection stayed open"
    );
    host.stop().await;
}

//! Object-to-object calls, the worker entry, deferred responses and the seed's coordination
//! patterns: worker → counter by name and by unique ID, ID round trips and rejections, the
//! rate limiter, the distributed lock in arrival order, deadlock detection, and a trapping
//! callee.

mod common;
use common::*;
use dohost::Limits;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

async fn with_worker(dir: &std::path::Path, limits: Limits) -> TestHost {
    let mut config = config(&["counter", "test-object"], dir, limits);
    config.worker = Some(guest("worker"));
    TestHost::start_config(config).await
}

#[tokio::test]
async fn the_worker_routes_to_counters_by_name_and_by_unique_id() {
    let dir = tempfile::tempdir().unwrap();
    let host = with_worker(dir.path(), Limits::default()).await;
    let c = client();
    // The seed: every other request goes to the counter named "global".
    assert_eq!(get(&c, &host.url("/increment")).await, (200, "1".into()));
    assert_eq!(get(&c, &host.url("/increment")).await, (200, "2".into()));
    assert_eq!(
        get(&c, &host.url("/by-name/global/get")).await,
        (200, "2".into())
    );
    assert_eq!(
        get(&c, &host.url("/by-name/other/increment")).await,
        (200, "1".into())
    );

    let (s, id) = get(&c, &host.url("/new-id")).await;
    assert_eq!(s, 200);
    assert_eq!(id.len(), 64);
    assert_eq!(
        get(&c, &host.url(&format!("/by-id/{id}/increment"))).await,
        (200, "1".into())
    );
    assert_eq!(
        get(&c, &host.url(&format!("/by-id/{id}/increment"))).await,
        (200, "2".into())
    );
    let (s, id2) = get(&c, &host.url("/new-id")).await;
    assert_eq!(s, 200);
    assert_ne!(id, id2);
    assert_eq!(
        get(&c, &host.url(&format!("/by-id/{id2}/get"))).await,
        (200, "0".into())
    );

    // Malformed IDs and IDs of another binding are refused.
    let (s, body) = get(&c, &host.url("/by-id/not-an-id/get")).await;
    assert_eq!(s, 400);
    assert!(body.contains("64 lowercase hex"), "{body}");
    let (s, body) = get(&c, &host.url(&format!("/by-id/{}/get", id.to_uppercase()))).await;
    assert_eq!(s, 400, "{body}");
    // The worker hides the default routes, so ask an object for an ID of its own binding
    // through a plain host without a worker.
    host.stop().await;
    let plain = TestHost::start(&["counter", "test-object"], dir.path()).await;
    let (_, env) = get(&c, &plain.url("/test-object/t/env")).await;
    let foreign = serde_json::from_str::<Value>(&env).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    plain.stop().await;
    let host = with_worker(dir.path(), Limits::default()).await;
    let (s, body) = get(&c, &host.url(&format!("/by-id/{foreign}/get"))).await;
    assert_eq!(s, 400);
    assert!(body.contains("does not belong"), "{body}");
    // State survived the restarts.
    assert_eq!(
        get(&c, &host.url(&format!("/by-id/{id}/get"))).await,
        (200, "2".into())
    );
    host.stop().await;
}

#[tokio::test]
async fn ids_round_trip_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["counter", "test-object"], dir.path()).await;
    let c = client();
    let (_, env) = get(&c, &host.url("/test-object/me/env")).await;
    let mine = serde_json::from_str::<Value>(&env).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ids = |b: &str, id: &str| host.url(&format!("/test-object/me/ids?binding={b}&id={id}"));
    assert_eq!(
        get(&c, &ids("test-object", &mine)).await,
        (200, mine.clone())
    );
    let (s, body) = get(&c, &ids("counter", &mine)).await;
    assert_eq!(s, 400);
    assert!(body.contains("does not belong"), "{body}");
    assert_eq!(get(&c, &ids("test-object", "abc")).await.0, 400);
    let (s, body) = get(&c, &ids("nosuch", &mine)).await;
    assert_eq!(s, 400);
    assert!(body.contains("no binding"), "{body}");
    host.stop().await;
}

#[tokio::test]
async fn the_rate_limiter_allows_a_hundred_then_429() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["rate-limiter"], dir.path()).await;
    let c = client();
    for i in 0..100 {
        assert_eq!(
            get(&c, &host.url("/rate-limiter/user-1/")).await,
            (200, "OK".into()),
            "request {i}"
        );
    }
    assert_eq!(
        get(&c, &host.url("/rate-limiter/user-1/")).await,
        (429, "Rate limit exceeded".into())
    );
    // Another user has their own window.
    assert_eq!(get(&c, &host.url("/rate-limiter/user-2/")).await.0, 200);
    host.stop().await;
}

async fn lock_status(c: &reqwest::Client, host: &TestHost) -> Value {
    serde_json::from_str(&get(c, &host.url("/lock/l/status")).await.1).unwrap()
}

#[tokio::test]
async fn lock_waiters_are_served_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["lock"], dir.path()).await;
    let c = client();
    assert_eq!(
        post(&c, &host.url("/lock/l/acquire"), "").await,
        (200, "Locked".into())
    );
    let mut waiters = Vec::new();
    for n in 1..=3 {
        let (c2, url) = (c.clone(), host.url("/lock/l/acquire"));
        waiters.push(tokio::spawn(async move { post(&c2, &url, "").await }));
        // Arrival order is made certain by waiting until the object has queued this one;
        // meanwhile the lock keeps answering other requests.
        wait_until("the waiter is queued", || async {
            lock_status(&c, &host).await["waiting"] == n
        })
        .await;
    }
    for (i, w) in waiters.into_iter().enumerate() {
        assert_eq!(
            post(&c, &host.url("/lock/l/release"), "").await.1,
            "Unlocked"
        );
        assert_eq!(w.await.unwrap(), (200, "Locked".into()), "waiter {i}");
        assert_eq!(lock_status(&c, &host).await["waiting"], 2 - i);
    }
    assert_eq!(lock_status(&c, &host).await["locked"], true);
    post(&c, &host.url("/lock/l/release"), "").await;
    assert_eq!(lock_status(&c, &host).await["locked"], false);
    host.stop().await;
}

#[tokio::test]
async fn a_deferred_request_not_answered_in_time_gets_503() {
    let dir = tempfile::tempdir().unwrap();
    // The second acquire runs inline (the object is idle): its deadline must be watched
    // although the actor's task was already waiting; an hour-long idle timeout makes sure
    // nothing else wakes the task.
    let limits = Limits {
        deferred_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(3600),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["lock"], dir.path(), limits).await;
    let c = client();
    post(&c, &host.url("/lock/l/acquire"), "").await;
    let (s, body) = tokio::time::timeout(
        Duration::from_secs(20),
        post(&c, &host.url("/lock/l/acquire"), ""),
    )
    .await
    .expect("the deferred request's deadline was never watched");
    assert_eq!(s, 503);
    assert!(body.contains("deferred_timeout"), "{body}");
    // The timed-out waiter is skipped: release unlocks.
    post(&c, &host.url("/lock/l/release"), "").await;
    assert_eq!(lock_status(&c, &host).await["locked"], false);
    host.stop().await;
}

#[tokio::test]
async fn a_call_cycle_fails_fast_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let c = client();
    // a calls b, which calls a back while a is busy waiting on b.
    let inner = "/call?binding=test-object%26name=a%26path=/instance";
    let url = host.url(&format!(
        "/test-object/a/call?binding=test-object&name=b&path={inner}"
    ));
    let (s, body) = tokio::time::timeout(Duration::from_secs(1), get(&c, &url))
        .await
        .expect("the cycle was not detected within a second");
    assert_eq!(s, 200, "{body}");
    assert!(
        body.starts_with("502 ") && body.contains("deadlock"),
        "{body}"
    );
    // a calling itself.
    let url = host.url("/test-object/a/call?binding=test-object&name=a&path=/instance");
    let (s, body) = get(&c, &url).await;
    assert_eq!(s, 502);
    assert!(body.contains("deadlock"), "{body}");
    // And both objects still work.
    assert_eq!(get(&c, &host.url("/test-object/a/instance")).await.0, 200);
    assert_eq!(get(&c, &host.url("/test-object/b/instance")).await.0, 200);
    host.stop().await;
}

#[tokio::test]
async fn a_trapping_callee_is_an_error_for_the_caller_only() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let c = client();
    post(&c, &host.url("/test-object/caller/put?key=k"), "mine").await;
    let (_, before) = get(&c, &host.url("/test-object/caller/instance")).await;
    let url = host.url("/test-object/caller/call?binding=test-object&name=callee&path=/panic");
    let (s, body) = get(&c, &url).await;
    assert_eq!(s, 502);
    assert!(body.contains("panicked"), "{body}");
    let (_, after) = get(&c, &host.url("/test-object/caller/instance")).await;
    let inst = |b: &str| serde_json::from_str::<Value>(b).unwrap()["instance"].clone();
    assert_eq!(inst(&before), inst(&after), "the caller kept its instance");
    assert_eq!(
        get(&c, &host.url("/test-object/caller/get?key=k")).await.1,
        "mine"
    );
    // A successful call sees the callee's answer.
    let url = host
        .url("/test-object/caller/call?binding=test-object&name=callee&path=/status%3Fcode=201");
    assert_eq!(get(&c, &url).await, (200, "201 custom status".into()));
    host.stop().await;
}

/// Guards against a caller labelling another object: `fetch(id_from_name("bob"),
/// name = "mallory")` woke bob with `name() == "mallory"`.
#[tokio::test]
async fn a_name_that_does_not_give_the_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let c = client();
    let forged =
        host.url("/test-object/caller/call-forged?binding=test-object&name=bob&claim=mallory");
    let (status, body) = get(&c, &forged).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("InvalidId") && body.contains("mallory"),
        "{body}"
    );
    let honest = host.url("/test-object/caller/call-forged?binding=test-object&name=bob&claim=bob");
    let (status, body) = get(&c, &honest).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"name\":\"bob\""), "{body}");
    host.stop().await;
}

/// Guards against names kept only in memory: an object woken by its alarm (here after a
/// restart, before any request) had `name() == None`.
async fn an_object_woken_by_its_alarm_keeps_its_name(backend: Backend) {
    use dohost::services::scheduler::{Clock, ManualClock};
    let dir = backend.data_dir();
    let clock = ManualClock::starting_now();
    let limits = Limits {
        min_alarm_interval: Duration::from_secs(10),
        ..Limits::default()
    };
    let start = |clock: Arc<dyn Clock>| {
        TestHost::start_clocked(config(&["test-object"], dir.path(), limits.clone()), clock)
    };
    let host = start(clock.clone()).await;
    let c = client();
    assert_eq!(
        post(&c, &host.url("/test-object/named/set-alarm"), "")
            .await
            .0,
        200
    );
    host.stop().await;

    let host = start(clock.clone()).await;
    clock.advance(Duration::from_secs(10));
    let rt = host.runtime().clone();
    wait_until("the alarm ran", || async { rt.alarm_runs() == 1 }).await;
    assert_eq!(
        get(&c, &host.url("/test-object/named/get?key=alarm-name")).await,
        (200, "\"named\"".into())
    );
    host.stop().await;
}

/// Guards against a deferred answer handed to a client that already left: the lock went
/// to the gone client and the next acquirer waited forever.
#[tokio::test]
async fn a_waiter_that_disconnected_does_not_get_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    // The waiter must be forgotten because it left, not because it timed out.
    let limits = Limits {
        deferred_timeout: Duration::from_secs(3600),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["lock"], dir.path(), limits).await;
    let c = client();
    let gone = lock_with_waiter(&c, &host, "l").await;
    // The client gives up: its connection closes.
    gone.abort();
    let _ = gone.await;
    wait_until("the gone waiter no longer counts", || async {
        lock_status(&c, &host).await["waiting"] == 0
    })
    .await;
    assert_eq!(
        post(&c, &host.url("/lock/l/release"), "").await.1,
        "Unlocked"
    );
    assert_eq!(lock_status(&c, &host).await["locked"], false);
    assert_eq!(post(&c, &host.url("/lock/l/acquire"), "").await.1, "Locked");
    host.stop().await;
}

/// Guards against a timed-out waiter still counted as waiting.
#[tokio::test]
async fn a_timed_out_waiter_is_not_counted_as_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        deferred_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["lock"], dir.path(), limits).await;
    let c = client();
    post(&c, &host.url("/lock/l/acquire"), "").await;
    assert_eq!(post(&c, &host.url("/lock/l/acquire"), "").await.0, 503);
    assert_eq!(lock_status(&c, &host).await["waiting"], 0);
    assert_eq!(lock_status(&c, &host).await["locked"], true);
    host.stop().await;
}

/// Guards against the lock unlocking itself: `locked` lived only in the instance, and a
/// held lock with no waiters was evicted (or lost on restart).
async fn a_held_lock_stays_held_across_eviction_and_restart(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start_observed(&["lock"], dir.path(), Limits::default()).await;
    let rt = host.runtime().clone();
    let c = client();
    assert_eq!(post(&c, &host.url("/lock/l/acquire"), "").await.1, "Locked");
    assert!(rt.evict("lock", "l"));
    wait_until("the lock's instance is gone", || async {
        rt.live_instances() == 0
    })
    .await;
    assert_eq!(lock_status(&c, &host).await["locked"], true);
    host.stop().await;
    let host = TestHost::start(&["lock"], dir.path()).await;
    assert_eq!(lock_status(&c, &host).await["locked"], true);
    assert_eq!(
        post(&c, &host.url("/lock/l/release"), "").await.1,
        "Unlocked"
    );
    assert_eq!(lock_status(&c, &host).await["locked"], false);
    host.stop().await;
}

/// Guards against the rate limiter's window resetting when its instance is evicted.
async fn the_rate_limiter_keeps_its_window_across_eviction(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start_observed(&["rate-limiter"], dir.path(), Limits::default()).await;
    let rt = host.runtime().clone();
    let c = client();
    for _ in 0..100 {
        assert_eq!(get(&c, &host.url("/rate-limiter/me/")).await.0, 200);
    }
    assert!(rt.evict("rate-limiter", "me"));
    wait_until("the limiter's instance is gone", || async {
        rt.live_instances() == 0
    })
    .await;
    assert_eq!(get(&c, &host.url("/rate-limiter/me/")).await.0, 429);
    host.stop().await;
}

/// Sends `text` and answers the next text message.
async fn ask(ws: &mut Ws, text: &str) -> String {
    use futures::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(text))
        .await
        .unwrap();
    next_text(ws).await
}

/// Guards against WebSockets that could not pass through a worker or a stub (404): the
/// worker's `stub.fetch(request)` returns the object's 101 and the client talks to the
/// object, which still hibernates.
#[tokio::test]
async fn a_websocket_passes_through_the_worker_and_through_another_object() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        &["counter", "chat-room", "test-object"],
        dir.path(),
        Limits::default(),
    );
    cfg.worker = Some(guest("worker"));
    let host =
        TestHost::start_clocked(cfg, Arc::new(dohost::services::scheduler::SystemClock)).await;
    let rt = host.runtime().clone();
    let mut alice = connect(&host, "/objects/chat-room/room/ws?name=alice").await;
    assert_eq!(
        ask(&mut alice, "who").await,
        "you are alice, tags [\"user:alice\"]"
    );
    let mut bob = connect(&host, "/objects/chat-room/room/ws?name=bob").await;
    assert_eq!(
        ask(&mut bob, "who").await,
        "you are bob, tags [\"user:bob\"]"
    );
    // Hibernation still applies: the room is evicted and a message brings it back.
    assert!(rt.evict("chat-room", "room"));
    wait_until("the room's instance is gone", || async {
        rt.live_instances() == 0
    })
    .await;
    {
        use futures::SinkExt;
        alice
            .send(tokio_tungstenite::tungstenite::Message::text("hello"))
            .await
            .unwrap();
    }
    assert_eq!(next_text(&mut bob).await, "alice: hello");
    // Through two hops: the worker calls a test object, which relays to the room.
    let mut carol = connect(
        &host,
        "/objects/test-object/relay/relay?binding=chat-room&name=room&path=%2Fws%3Fname%3Dcarol",
    )
    .await;
    assert_eq!(
        ask(&mut carol, "who").await,
        "you are carol, tags [\"user:carol\"]"
    );
    host.stop().await;
}

/// Guards against the worker's forwarding dropping every request header.
#[tokio::test]
async fn the_worker_forwards_request_headers() {
    let dir = tempfile::tempdir().unwrap();
    let host = with_worker(dir.path(), Limits::default()).await;
    let c = client();
    let r = c
        .get(host.url("/objects/test-object/e/echo?q=1"))
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let headers = echo["headers"].as_array().unwrap();
    assert!(
        headers.iter().any(|h| h[0] == "x-custom" && h[1] == "kept"),
        "{echo}"
    );
    assert_eq!(echo["query"], "q=1");
    host.stop().await;
}

on_both_backends!(
    an_object_woken_by_its_alarm_keeps_its_name,
    a_held_lock_stays_held_across_eviction_and_restart,
    the_rate_limiter_keeps_its_window_across_eviction,
);

/// A worker whose guest cannot grow its memory because the host's budget (`--max-memory`)
/// is used up answers 503 with `Retry-After` (the host's shortage, not the worker's fault),
/// as an object does: here a 3 MiB body through a worker on a 4 MiB budget.
#[tokio::test]
async fn a_worker_short_of_the_memory_budget_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_memory: 4 << 20,
        ..Limits::default()
    };
    let host = with_worker(dir.path(), limits).await;
    let c = client();
    let r = c
        .post(host.url("/objects/test-object/big/put?key=k"))
        .body(vec![7u8; 3 << 20])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").cloned();
    let body = r.text().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(retry.is_some(), "no Retry-After");
    assert!(body.contains("max_memory"), "{body}");
    host.stop().await;
}

//! WebSockets with hibernation, end to end with real clients (tokio-tungstenite): broadcast
//! among 2 and 100 clients, forced eviction between messages, auto-responses that do not
//! wake the object, close and error handlers, the message size limit, 1,000 sockets on one
//! object, a client that stops reading, and the connection pool.

mod common;
use common::*;
use dohost::Limits;
use dohost::services::scheduler::{Clock, SystemClock};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn start(dir: &std::path::Path, limits: Limits) -> TestHost {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    TestHost::start_clocked(
        config(&["chat-room", "connection-pool"], dir, limits),
        clock,
    )
    .await
}

/// The close frame the server sends next.
async fn next_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn stats(c: &reqwest::Client, host: &TestHost, room: &str) -> Value {
    serde_json::from_str(
        &get(c, &host.url(&format!("/chat-room/{room}/stats")))
            .await
            .1,
    )
    .unwrap()
}

async fn two_clients_chat_and_survive_forced_eviction(backend: Backend) {
    let dir = backend.data_dir();
    let host = start(dir.path(), Limits::default()).await;
    let rt = host.runtime().clone();
    let c = client();
    let mut a = connect(&host, "/chat-room/r/ws?name=alice").await;
    let mut b = connect(&host, "/chat-room/r/ws?name=bob").await;
    a.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_text(&mut b).await, "alice: hi");
    b.send(Message::text("hello")).await.unwrap();
    // a's next message is bob's: its own was not echoed back to it.
    assert_eq!(next_text(&mut a).await, "bob: hello");
    let before = stats(&c, &host, "r").await["constructed"].as_u64().unwrap();

    for round in 0..3 {
        assert!(rt.evict("chat-room", "r"));
        wait_until("the instance is gone", || async {
            rt.live_instances() == 0
        })
        .await;
        a.send(Message::text(format!("after eviction {round}")))
            .await
            .unwrap();
        assert_eq!(
            next_text(&mut b).await,
            format!("alice: after eviction {round}")
        );
        // Tags and attachments came through hibernation.
        b.send(Message::text("who")).await.unwrap();
        assert_eq!(next_text(&mut b).await, r#"you are bob, tags ["user:bob"]"#);
    }
    let s = stats(&c, &host, "r").await;
    assert_eq!(s["sockets"], 2);
    assert!(s["constructed"].as_u64().unwrap() >= before + 3, "{s}");
    host.stop().await;
}

#[tokio::test]
async fn a_hundred_clients_broadcast() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), Limits::default()).await;
    let mut clients = Vec::new();
    for i in 0..100 {
        clients.push(connect(&host, &format!("/chat-room/big/ws?name=u{i}")).await);
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    let mut tasks = Vec::new();
    for (i, mut ws) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..99 {
                got.push(next_text(&mut ws).await);
            }
            got.sort();
            let mut want: Vec<String> = (0..100)
                .filter(|j| *j != i)
                .map(|j| format!("u{j}: m{j}"))
                .collect();
            want.sort();
            assert_eq!(got, want, "client {i}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    host.stop().await;
}

#[tokio::test]
async fn the_auto_response_does_not_wake_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), Limits::default()).await;
    let rt = host.runtime().clone();
    let c = client();
    let mut a = connect(&host, "/chat-room/auto/ws?name=a").await;
    assert_eq!(
        post(&c, &host.url("/chat-room/auto/auto?on=1"), "").await.0,
        200
    );
    assert!(rt.evict("chat-room", "auto"));
    wait_until("the instance is gone", || async {
        rt.live_instances() == 0
    })
    .await;
    for _ in 0..5 {
        a.send(Message::text("ping")).await.unwrap();
        assert_eq!(next_text(&mut a).await, "pong");
    }
    assert_eq!(rt.live_instances(), 0, "a ping woke the object");
    // Anything else does wake it.
    a.send(Message::text("who")).await.unwrap();
    assert_eq!(next_text(&mut a).await, r#"you are a, tags ["user:a"]"#);
    assert_eq!(rt.live_instances(), 1);
    host.stop().await;
}

#[tokio::test]
async fn close_handlers_see_the_codes() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_ws_message_bytes: 1000,
        ..Limits::default()
    };
    let host = start(dir.path(), limits).await;
    let c = client();
    // The client closes: the object's close handler gets its code and reason, cleanly.
    let mut a = connect(&host, "/chat-room/c/ws?name=a").await;
    a.close(Some(CloseFrame {
        code: CloseCode::from(3001),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    wait_until("the close was handled", || async {
        stats(&c, &host, "c").await["closes"]
            .as_array()
            .unwrap()
            .len()
            == 1
    })
    .await;
    let s = stats(&c, &host, "c").await;
    assert_eq!(s["closes"][0]["code"], 3001);
    assert_eq!(s["closes"][0]["reason"], "bye");
    assert_eq!(s["closes"][0]["clean"], true);

    // The object closes: the client gets its code.
    let mut b = connect(&host, "/chat-room/c/ws?name=b").await;
    b.send(Message::text("close-me")).await.unwrap();
    assert_eq!(next_close(&mut b).await, (4000, "asked to leave".into()));

    // A message over the limit: 1000 bytes pass, 1001 close the socket with 1009.
    let mut d = connect(&host, "/chat-room/c/ws?name=d").await;
    let mut e = connect(&host, "/chat-room/c/ws?name=e").await;
    d.send(Message::text("x".repeat(1000))).await.unwrap();
    assert_eq!(next_text(&mut e).await, format!("d: {}", "x".repeat(1000)));
    d.send(Message::text("x".repeat(1001))).await.unwrap();
    assert_eq!(next_close(&mut d).await.0, 1009);
    wait_until("the oversized close was handled", || async {
        stats(&c, &host, "c").await["closes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["code"] == 1009)
    })
    .await;

    // A connection dropped without a close frame is an unclean 1006.
    drop(e);
    wait_until("the dropped socket was handled", || async {
        stats(&c, &host, "c").await["closes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["code"] == 1006 && x["clean"] == false)
    })
    .await;
    host.stop().await;
}

#[tokio::test]
async fn a_thousand_sockets_on_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), Limits::default()).await;
    let c = client();
    let mut clients = Vec::new();
    for i in 0..1000 {
        clients.push(connect(&host, &format!("/chat-room/k/ws?name=u{i}")).await);
    }
    assert_eq!(stats(&c, &host, "k").await["sockets"], 1000);
    clients[0].send(Message::text("who")).await.unwrap();
    assert_eq!(
        next_text(&mut clients[0]).await,
        r#"you are u0, tags ["user:u0"]"#
    );
    assert_eq!(stats(&c, &host, "k").await["sockets"], 1000);
    clients[0].send(Message::text("to everyone")).await.unwrap();
    clients[0].send(Message::text("who")).await.unwrap();
    assert_eq!(
        next_text(&mut clients[0]).await,
        r#"you are u0, tags ["user:u0"]"#,
        "after"
    );
    let mut tasks = Vec::new();
    for mut ws in clients.into_iter().skip(1) {
        tasks.push(tokio::spawn(async move { next_text(&mut ws).await }));
    }
    let mut got = std::collections::BTreeMap::new();
    for t in tasks {
        *got.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        got,
        std::collections::BTreeMap::from([("u0: to everyone".to_string(), 999)])
    );
    host.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_stall_the_others() {
    stalled_client_is_cut(Limits {
        ws_send_queue: 16,
        ..Limits::default()
    })
    .await;
}

/// The same bound in bytes (`--ws-send-queue-bytes`): 1 MB, with the bound in messages out
/// of reach.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_the_byte_bound() {
    stalled_client_is_cut(Limits {
        ws_send_queue: 1_000_000,
        ws_send_queue_bytes: 1_000_000,
        ..Limits::default()
    })
    .await;
}

async fn stalled_client_is_cut(limits: Limits) {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), limits).await;
    let c = client();
    let mut sender = connect(&host, "/chat-room/s/ws?name=sender").await;
    let mut reader = connect(&host, "/chat-room/s/ws?name=reader").await;
    let _stalled = connect(&host, "/chat-room/s/ws?name=stalled").await; // never read
    let big = "y".repeat(60_000);
    // 24 MB in all: more than the stalled client's queue and its TCP buffers can hold. The
    // sender waits for the reading client each time, so only the stalled one falls behind.
    for i in 0..400 {
        sender
            .send(Message::text(format!("{i} {big}")))
            .await
            .unwrap();
        let m = next_text(&mut reader).await;
        assert!(m.starts_with(&format!("sender: {i} ")), "message {i}");
    }
    wait_until("the stalled client was closed with 1013", || async {
        stats(&c, &host, "s").await["closes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["code"] == 1013)
    })
    .await;
    assert_eq!(stats(&c, &host, "s").await["sockets"], 2);
    host.stop().await;
}

#[tokio::test]
async fn the_connection_pool_routes_by_registered_name_across_hibernation() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(dir.path(), Limits::default()).await;
    let rt = host.runtime().clone();
    let mut alice = connect(&host, "/connection-pool/p/").await;
    let mut bob = connect(&host, "/connection-pool/p/").await;
    alice
        .send(Message::text(r#"{"register":"alice"}"#))
        .await
        .unwrap();
    assert_eq!(next_text(&mut alice).await, r#"{"registered":"alice"}"#);
    bob.send(Message::text(r#"{"register":"bob"}"#))
        .await
        .unwrap();
    assert_eq!(next_text(&mut bob).await, r#"{"registered":"bob"}"#);
    assert!(rt.evict("connection-pool", "p"));
    wait_until("the instance is gone", || async {
        rt.live_instances() == 0
    })
    .await;
    let msg = r#"{"to":"bob","text":"hi bob"}"#;
    alice.send(Message::text(msg)).await.unwrap();
    assert_eq!(next_text(&mut bob).await, msg);
    let msg = r#"{"to":"alice","text":"hi alice"}"#;
    bob.send(Message::text(msg)).await.unwrap();
    assert_eq!(next_text(&mut alice).await, msg);
    host.stop().await;
}

/// Guards against a socket leaving the registry before the object handled the messages
/// its client sent just before closing: those saw no attachment (an empty name here).
#[tokio::test]
async fn messages_sent_just_before_a_close_still_see_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    // One slot, so the room's message can be held back behind a lock's waiter (a lock
    // with a waiter keeps its slot) until the connection has seen the close.
    let limits = Limits {
        max_live_objects: Some(1),
        slot_wait: Duration::from_secs(3600),
        ..Limits::default()
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let host =
        TestHost::start_clocked(config(&["chat-room", "lock"], dir.path(), limits), clock).await;
    let rt = host.runtime().clone();
    let c = client();
    let mut b = connect(&host, "/chat-room/r/ws?name=bob").await;
    let mut a = connect(&host, "/chat-room/r/ws?name=alice").await;
    assert!(rt.evict("chat-room", "r"));
    wait_until("the room's instance is gone", || async {
        rt.live_instances() == 0
    })
    .await;
    let waiter = lock_with_waiter(&c, &host, "l").await;
    a.send(Message::text("bye")).await.unwrap();
    a.close(None).await.unwrap();
    let class = rt.class("chat-room").unwrap();
    let room = dohost::id::ObjectKey {
        namespace: class.namespace.number,
        id: class.namespace.id_key.id_from_name("r"),
    };
    wait_until("the connection saw the close", || async {
        rt.sockets().list(&room, None).len() == 1
    })
    .await;
    // Now the room may have the slot: the message runs after the close was seen.
    assert_eq!(
        post(&c, &host.url("/lock/l/release"), "").await.1,
        "Unlocked"
    );
    assert_eq!(waiter.await.unwrap().1, "Locked");
    assert_eq!(next_text(&mut b).await, "alice: bye");
    wait_until("the closed socket is gone", || async {
        rt.sockets().count() == 1
    })
    .await;
    host.stop().await;
}

on_both_backends!(two_clients_chat_and_survive_forced_eviction,);

/// An event's queued sends wait in the host until its writes are durable, so they count
/// against its instance's memory limit: with 8 MiB, the 128th 64 KiB send of one event
/// (each counting its payload and its entry in the queue) fails with a message naming the
/// limit (and the event goes on).
#[tokio::test]
async fn one_events_queued_sends_are_bounded_by_its_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory_per_instance: 8 * 1024 * 1024,
        ..Limits::default()
    };
    let host = TestHost::start_with(&["test-object"], dir.path(), limits).await;
    let c = client();
    let mut ws = connect(&host, "/test-object/f/ws").await;
    ws.send(Message::text("flood:1000")).await.unwrap();
    let url = host.url("/test-object/f/get?key=flood");
    wait_until("the flood's outcome is stored", || async {
        get(&c, &url).await.0 == 200
    })
    .await;
    let outcome = get(&c, &url).await.1;
    assert!(outcome.starts_with("\"127 sent, then:"), "{outcome}");
    assert!(outcome.contains("memory_bytes"), "{outcome}");
    host.stop().await;
}

/// Guards against a broadcast counting its one shared buffer once per recipient against
/// the event's allowance: with an 8 MiB memory limit, a 64 KiB message to 139 other
/// sockets (8.7 MiB counted that way) reaches every one of them, before the small message
/// sent next. (All or none past the allowance is the unit test in `wasm::websockets`.)
#[tokio::test]
async fn a_broadcast_counts_its_shared_buffer_once() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory_per_instance: 8 * 1024 * 1024,
        ..Limits::default()
    };
    let host = TestHost::start_with(&["test-object"], dir.path(), limits).await;
    let mut sender = connect(&host, "/test-object/all/ws").await;
    let mut others = Vec::new();
    for _ in 0..139 {
        others.push(connect(&host, "/test-object/all/ws").await);
    }
    sender
        .send(Message::text("x".repeat(64 * 1024)))
        .await
        .unwrap();
    sender.send(Message::text("small")).await.unwrap();
    for ws in &mut others {
        let first = next_text(ws).await;
        assert_eq!(first.len(), 64 * 1024, "the broadcast comes first");
        assert_eq!(next_text(ws).await, "small");
    }
    host.stop().await;
}

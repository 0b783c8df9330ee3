//! The Rust SDK's HTTP, storage, socket and RPC helpers, seen from a client: statuses of
//! errors, the router, batching past the host's limits, typed calls between objects.

mod common;
use common::guest;
use dohost_testing::{Harness, Limits, Message, Request};
use serde_json::{Value, json};

fn host() -> Harness {
    Harness::builder().object(guest("test-object")).start()
}

#[test]
fn errors_carry_their_status_and_internal_ones_stay_in_the_log() {
    let host = host();
    let r = host.get("/test-object/e/fail?status=422");
    assert_eq!(
        (r.status, r.text().as_str()),
        (422, "failed with 422 on purpose")
    );
    let r = host.get("/test-object/e/fail-internal");
    assert_eq!(r.status, 500);
    assert!(!r.text().contains("secret"), "{}", r.text());
    let r = host.get("/test-object/e/typed?n=12");
    assert_eq!((r.status, r.json::<u32>()), (200, 12));
    let r = host.get("/test-object/e/typed?n=twelve");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("query parameter \"n\""), "{}", r.text());
    let r = host.get("/test-object/e/typed");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "missing query parameter \"n\"")
    );
}

#[test]
fn router_matches_parameters_and_answers_404_and_405() {
    let host = host();
    let r = host.post("/test-object/t/r/todo", "write tests");
    assert_eq!((r.status, r.text().as_str()), (201, "1"));
    assert_eq!(host.post("/test-object/t/r/todo", "ship").text(), "2");
    assert_eq!(
        host.get("/test-object/t/r/todo/1").json::<String>(),
        "write tests"
    );
    // A trailing slash is the same path.
    assert_eq!(
        host.get("/test-object/t/r/todo/2/").json::<String>(),
        "ship"
    );
    let r = host.get("/test-object/t/r/todo/one");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("path parameter \"id\""), "{}", r.text());
    assert_eq!(host.get("/test-object/t/r/todo/9").status, 404);
    assert_eq!(host.get("/test-object/t/r/nothing").status, 404);
    let r = host.fetch(Request::new("PUT", "/test-object/t/r/todo/1"));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("DELETE, GET, HEAD"));
    assert!(
        host.fetch(Request::new("DELETE", "/test-object/t/r/todo/1"))
            .json::<bool>()
    );
    let todos: Vec<(u64, String)> = host.get("/test-object/t/r/todos").json();
    assert_eq!(todos, vec![(2, "ship".to_string())]);
    let stored = host.storage("test-object", "t");
    assert_eq!(stored.get::<u64>("todo:#next"), Some(2));
    assert_eq!(
        stored.get::<String>("todo:00000000000000000002").as_deref(),
        Some("ship")
    );
}

#[test]
fn many_key_calls_are_batched_under_the_hosts_limit() {
    let host = host();
    let r: Value = host.post("/test-object/m/many?n=300", "").json();
    assert_eq!(
        r,
        json!({"stored": 300, "found": 300, "deleted": 300, "limit": 128})
    );

    let limits = Limits {
        max_keys_per_call: 7,
        ..Limits::default()
    };
    let host = Harness::builder()
        .object(guest("test-object"))
        .limits(limits)
        .start();
    let r: Value = host.post("/test-object/m/many?n=50", "").json();
    assert_eq!(
        r,
        json!({"stored": 50, "found": 50, "deleted": 50, "limit": 7})
    );
}

#[test]
fn a_panicking_socket_handler_closes_that_socket_with_1011() {
    let host = host();
    let mut a = host.websocket("/test-object/s/ws");
    let mut b = host.websocket("/test-object/s/ws");
    a.send_text("json");
    assert_eq!(a.recv_text(), r#"{"json":true}"#);
    a.send_text("hello");
    assert_eq!(b.recv_text(), "hello", "broadcast to the others");
    b.send_text("panic");
    match b.recv() {
        Message::Close(code, reason) => {
            assert_eq!(code, 1011);
            assert!(reason.contains("host log"), "{reason}");
        }
        other => panic!("expected a close, got {other:?}"),
    }
    // The other socket is untouched, and the object works on a new instance.
    a.send_text("json");
    assert_eq!(a.recv_text(), r#"{"json":true}"#);
}

#[test]
fn the_worker_calls_the_counters_typed_methods_and_clients_cannot() {
    let host = Harness::builder()
        .object(guest("counter"))
        .worker(guest("worker"))
        .start();
    let r = host.get("/rpc/a/increment?by=5");
    assert_eq!((r.status, r.json::<i64>()), (200, 5));
    assert_eq!(host.get("/rpc/a/increment?by=2").json::<i64>(), 7);
    assert_eq!(host.get("/objects/counter/a/get").text(), "7");
    assert_eq!(host.storage("counter", "a").get::<i64>("value"), Some(7));
    // A client naming a method itself reaches `fetch`, not the method.
    let forged = Request::get("/objects/counter/a/get")
        .header("x-dohost-rpc", "Counting.increment")
        .body("[100]");
    assert_eq!(host.fetch(forged).text(), "7");
    assert_eq!(host.storage("counter", "a").get::<i64>("value"), Some(7));
}

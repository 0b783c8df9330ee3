//! The example objects' tests on the harness: each starts its own host on a manual clock,
//! so alarms are proven to run (or not) without sleeping.

mod common;
use common::guest;
use dohost_testing::{Harness, Message, Request};
use serde_json::Value;
use std::time::Duration;

#[test]
fn counter_counts_and_keeps_its_count_across_eviction_and_restart() {
    let mut host = Harness::builder().object(guest("counter")).start();
    assert_eq!(host.post("/counter/a/increment", "").text(), "1");
    assert_eq!(host.post("/counter/a/increment", "").text(), "2");
    assert_eq!(host.post("/counter/b/increment", "").text(), "1");
    assert!(host.evict("counter", "a"));
    assert_eq!(host.get("/counter/a/get").text(), "2");
    host.restart();
    assert_eq!(host.post("/counter/a/decrement", "").text(), "1");
    assert_eq!(host.storage("counter", "a").get::<i64>("value"), Some(1));
    assert_eq!(host.storage("counter", "b").get::<i64>("value"), Some(1));
}

#[test]
fn alarm_runs_when_due_and_not_before() {
    let host = Harness::builder().object(guest("alarm")).start();
    host.post("/alarm/job/work?key=x", "");
    let set = host.post("/alarm/job/set?delay_ms=60000", "");
    assert_eq!((set.status, set.text().as_str()), (200, "Alarm set"));
    let due = host.alarm("alarm", "job").expect("an alarm is stored");
    assert_eq!(due, host.now_ms() + 60_000);

    host.advance(Duration::from_secs(59));
    assert_eq!(host.run_due_alarms(), 0, "not due yet");
    let status: Value = host.get("/alarm/job/status").json();
    assert_eq!(status["runs"], 0);
    assert_eq!(status["tmp"], 1);

    host.advance(Duration::from_secs(1));
    assert_eq!(host.run_due_alarms(), 1);
    let status: Value = host.get("/alarm/job/status").json();
    assert_eq!(status["runs"], 1);
    assert_eq!(status["tmp"], 0, "the alarm's cleanup ran");
    assert_eq!(status["history"][0]["at"], host.now_ms());
    assert_eq!(host.alarm("alarm", "job"), None, "a run alarm is cleared");
}

#[test]
fn a_failing_alarm_is_retried_with_backoff_on_the_virtual_clock() {
    let host = Harness::builder().object(guest("alarm")).start();
    host.post("/alarm/job/configure?fail=2", "");
    host.post("/alarm/job/set?delay_ms=40000", "");
    host.advance(Duration::from_secs(40));
    assert_eq!(host.run_due_alarms(), 1, "the first attempt fails");
    host.advance(Duration::from_millis(1999));
    assert_eq!(host.run_due_alarms(), 0, "the first retry waits 2 s");
    host.advance(Duration::from_millis(1));
    assert_eq!(host.run_due_alarms(), 1, "the first retry fails too");
    host.advance(Duration::from_secs(4));
    assert_eq!(
        host.run_due_alarms(),
        1,
        "the second retry, 4 s later, succeeds"
    );
    let status: Value = host.get("/alarm/job/status").json();
    assert_eq!(status["runs"], 1);
    assert_eq!(status["history"][0]["retry_count"], 2);
}

#[test]
fn an_alarm_set_by_a_panicking_request_never_fires() {
    let host = Harness::builder().object(guest("alarm")).start();
    assert_eq!(host.post("/alarm/p/set-then-panic", "").status, 500);
    assert_eq!(host.alarm("alarm", "p"), None);
    host.advance(Duration::from_secs(3600));
    assert_eq!(host.run_due_alarms(), 0);
}

#[test]
fn lock_queues_waiters_and_hands_the_lock_over_in_order() {
    let host = Harness::builder().object(guest("lock")).start();
    assert_eq!(host.post("/lock/l/acquire", "").text(), "Locked");
    // A waiter's answer is deferred until a release.
    let waiter = host.send(Request::post("/lock/l/acquire"));
    // Wait until the waiter is queued.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host.get("/lock/l/status").json::<Value>()["waiting"] != 1 {
        assert!(
            !waiter.is_done(),
            "the waiter was answered while the lock was held"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the waiter never queued"
        );
        std::thread::yield_now();
    }
    assert_eq!(host.post("/lock/l/release", "").text(), "Unlocked");
    let answer = waiter.wait();
    assert_eq!((answer.status, answer.text().as_str()), (200, "Locked"));
    let status: Value = host.get("/lock/l/status").json();
    assert_eq!(
        (status["locked"].clone(), status["waiting"].clone()),
        (Value::Bool(true), 0.into())
    );
    assert_eq!(host.storage("lock", "l").get::<bool>("locked"), Some(true));
}

#[test]
fn chat_room_broadcasts_and_keeps_its_sockets_across_eviction() {
    let host = Harness::builder().object(guest("chat-room")).start();
    let mut ann = host.websocket("/chat-room/lobby/ws?name=ann");
    let mut bob = host.websocket("/chat-room/lobby/ws?name=bob");
    ann.send_text("hello");
    assert_eq!(bob.recv_text(), "ann: hello");
    // Hibernation: the instance goes, the sockets stay, a message brings it back.
    assert!(host.evict("chat-room", "lobby"));
    bob.send_text("hi");
    assert_eq!(ann.recv_text(), "bob: hi");
    bob.send_text("who");
    assert_eq!(bob.recv_text(), "you are bob, tags [\"user:bob\"]");
    ann.send_text("close-me");
    assert_eq!(ann.recv(), Message::Close(4000, "asked to leave".into()));
    let stats: Value = host.fetch(Request::get("/chat-room/lobby/stats")).json();
    assert_eq!(stats["sockets"], 1);
    assert_eq!(stats["constructed"], 2, "built again after the eviction");
}

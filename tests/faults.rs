//! A hostile or broken guest hurts only its own event: panics, endless loops, memory bombs
//! and stack overflows fail one request, drop its writes, and the object comes back from
//! storage; bad requests and bad components get clear errors.

mod common;
use common::*;
use dohost::Limits;
use serde_json::Value;
use std::time::Duration;

fn instance_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["instance"].as_str().unwrap().to_string()
}

async fn a_panic_fails_one_request_and_the_next_gets_a_fresh_instance(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["test-object", "counter"], dir.path()).await;
    let c = client();
    for _ in 0..3 {
        get(&c, &host.url("/counter/bystander/increment")).await;
    }
    assert_eq!(
        post(&c, &host.url("/test-object/p/put?key=k"), "before")
            .await
            .0,
        200
    );
    let (_, first) = get(&c, &host.url("/test-object/p/instance")).await;

    let (s, body) = get(&c, &host.url("/test-object/p/panic")).await;
    assert_eq!(s, 500);
    assert!(body.contains("panicked"), "{body}");

    // The next request works, on a new instance, with the state from storage.
    let (s, second) = get(&c, &host.url("/test-object/p/instance")).await;
    assert_eq!(s, 200);
    assert_ne!(instance_of(&first), instance_of(&second));
    assert_eq!(
        get(&c, &host.url("/test-object/p/get?key=k")).await,
        (200, "before".into())
    );
    // Other objects never noticed.
    assert_eq!(get(&c, &host.url("/counter/bystander/get")).await.1, "3");
    host.stop().await;
}

async fn a_trap_after_writes_leaves_storage_untouched(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let c = client();
    let (s, _) = post(&c, &host.url("/test-object/w/write-then-panic?key=k"), "").await;
    assert_eq!(s, 500);
    assert_eq!(get(&c, &host.url("/test-object/w/get?key=k")).await.0, 404);
    // Also after a restart: nothing of it reached the disk.
    host.stop().await;
    let host = TestHost::start(&["test-object"], dir.path()).await;
    assert_eq!(get(&c, &host.url("/test-object/w/get?key=k")).await.0, 404);
    host.stop().await;
}

async fn an_endless_loop_is_stopped_by_the_cpu_limit(backend: Backend) {
    let dir = backend.data_dir();
    let limits = Limits {
        cpu_per_event: Duration::from_millis(200),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["test-object", "counter"], dir.path(), limits).await;
    let c = client();
    let looping = {
        let (c, url) = (c.clone(), host.url("/test-object/spin/loop"));
        tokio::spawn(async move { get(&c, &url).await })
    };
    // While it spins, other objects keep answering.
    assert_eq!(
        get(&c, &host.url("/counter/x/increment")).await,
        (200, "1".into())
    );
    let (s, body) = looping.await.unwrap();
    assert_eq!(s, 500);
    assert!(body.contains("CPU time limit"), "{body}");
    assert_eq!(
        get(&c, &host.url("/test-object/spin/instance")).await.0,
        200
    );
    host.stop().await;
}

async fn a_memory_bomb_is_stopped_by_the_memory_cap(backend: Backend) {
    let dir = backend.data_dir();
    let limits = Limits {
        memory_per_instance: 16 * 1024 * 1024,
        ..Limits::default()
    };
    let host = TestHost::start_with(&["test-object"], dir.path(), limits).await;
    let c = client();
    let (s, body) = get(&c, &host.url("/test-object/bomb/membomb")).await;
    assert_eq!(s, 500);
    assert!(body.contains("memory limit"), "{body}");
    assert_eq!(
        get(&c, &host.url("/test-object/bomb/instance")).await.0,
        200
    );
    host.stop().await;
}

async fn a_stack_overflow_fails_only_its_event(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let c = client();
    let (s, body) = get(&c, &host.url("/test-object/deep/stack")).await;
    assert_eq!(s, 500);
    assert!(body.contains("stack overflow"), "{body}");
    assert_eq!(
        get(&c, &host.url("/test-object/deep/instance")).await.0,
        200
    );
    host.stop().await;
}

async fn at_max_live_objects_a_new_object_takes_one_idle_instance_slot(backend: Backend) {
    // The limit's edge: a fourth object with room for three evicts one idle instance (the
    // one idle longest), not every idle one, and every object keeps answering from storage.
    let dir = backend.data_dir();
    // Idle eviction must not be what frees the slots here: an hour.
    let limits = Limits {
        max_live_objects: Some(3),
        idle_timeout: Duration::from_secs(3600),
        ..Limits::default()
    };
    let host = TestHost::start_observed(&["test-object"], dir.path(), limits).await;
    let rt = host.runtime().clone();
    let c = client();
    for name in ["a", "b", "c"] {
        let url = host.url(&format!("/test-object/{name}/put?key=k"));
        assert_eq!(post(&c, &url, name).await.0, 200);
    }
    assert_eq!(rt.live_instances(), 3);
    let c_url = host.url("/test-object/c/instance");
    let (_, c_before) = get(&c, &c_url).await;
    assert_eq!(
        post(&c, &host.url("/test-object/d/put?key=k"), "d").await.0,
        200
    );
    // One more round trip: any other object asked to give way would have done so by now.
    get(&c, &host.url("/test-object/d/instance")).await;
    assert_eq!(rt.live_instances(), 3, "more than one instance was evicted");
    let (_, c_after) = get(&c, &c_url).await;
    assert_eq!(
        instance_of(&c_after),
        instance_of(&c_before),
        "the most recently used idle object lost its instance"
    );
    // Each of these needs a slot in turn, taken from objects whose instances were rebuilt
    // on the request's own task: they too must give way when asked (bounded so that a
    // miss fails instead of waiting the hour).
    let every_object_answers = async {
        for name in ["a", "b", "c", "d"] {
            let url = host.url(&format!("/test-object/{name}/get?key=k"));
            assert_eq!(get(&c, &url).await, (200, name.to_string()));
            assert!(rt.live_instances() <= 3);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), every_object_answers)
        .await
        .expect("an object waited for an instance slot no idle object gave up");
    host.stop().await;
}

async fn a_client_that_gives_up_mid_event_leaves_the_object_working(backend: Backend) {
    // A request to an idle object runs on its connection's task; if the client goes away
    // the server may drop that task mid-event, cancelling the guest call. The object must
    // answer the next request (from a fresh instance), not fail on a half-run store.
    let dir = backend.data_dir();
    let limits = Limits {
        cpu_per_event: Duration::from_secs(2),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["test-object"], dir.path(), limits).await;
    let c = client();
    post(&c, &host.url("/test-object/g/put?key=k"), "kept").await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let gave_up = impatient.get(host.url("/test-object/g/loop")).send().await;
    assert!(gave_up.is_err(), "the endless loop answered");
    assert_eq!(
        get(&c, &host.url("/test-object/g/get?key=k")).await,
        (200, "kept".to_string())
    );
    host.stop().await;
}

#[tokio::test]
async fn requests_run_inline_again_after_an_admin_evict() {
    // Evict goes through the mailbox like any event and must be counted like one: a
    // miscount leaves the object looking busy forever (or lets an inline event overtake a
    // queued one).
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_observed(&["test-object"], dir.path(), Limits::default()).await;
    let rt = host.runtime().clone();
    let c = client();
    let url = host.url("/test-object/ev/instance");
    let (_, first) = get(&c, &url).await;
    assert!(rt.evict("test-object", "ev"));
    wait_until("the instance is dropped", || async {
        rt.live_instances() == 0
    })
    .await;
    let (_, rebuilt) = get(&c, &url).await;
    assert_ne!(instance_of(&rebuilt), instance_of(&first));
    let before = rt.inline_events();
    for _ in 0..3 {
        assert_eq!(get(&c, &url).await.0, 200);
    }
    assert!(
        rt.inline_events() > before,
        "no request ran inline after the evict"
    );
    host.stop().await;
}

#[tokio::test]
async fn an_object_kept_busy_is_not_evicted_as_idle() {
    // Requests to an idle object run on the connection's task, not the actor's; they must
    // still count as activity for the idle timeout.
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        idle_timeout: Duration::from_millis(400),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["test-object"], dir.path(), limits).await;
    let c = client();
    let url = host.url("/test-object/busy/instance");
    let (_, first) = get(&c, &url).await;
    // Three idle timeouts' worth of requests, each well inside the timeout of the last.
    let until = std::time::Instant::now() + Duration::from_millis(1200);
    while std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (_, now) = get(&c, &url).await;
        assert_eq!(instance_of(&now), instance_of(&first), "evicted while busy");
    }
    host.stop().await;
}

async fn idle_objects_are_evicted_and_come_back_from_storage(backend: Backend) {
    let dir = backend.data_dir();
    let limits = Limits {
        idle_timeout: Duration::from_millis(50),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["test-object"], dir.path(), limits).await;
    let c = client();
    post(&c, &host.url("/test-object/e/put?key=k"), "kept").await;
    let (_, first) = get(&c, &host.url("/test-object/e/instance")).await;
    // Wait on the condition (a new instance). Each probe is itself an event, so probes are
    // spaced wider than the idle timeout.
    let mut evicted = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (_, now) = get(&c, &host.url("/test-object/e/instance")).await;
        if instance_of(&now) != instance_of(&first) {
            evicted = true;
            break;
        }
    }
    assert!(evicted, "the object was never evicted");
    assert_eq!(
        get(&c, &host.url("/test-object/e/get?key=k")).await.1,
        "kept"
    );
    host.stop().await;
}

#[tokio::test]
async fn routing_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let c = client();
    let (s, body) = get(&c, &host.url("/nosuch/x/get")).await;
    assert_eq!(s, 404);
    assert!(
        body.contains("unknown binding") && body.contains("test-object"),
        "{body}"
    );
    let (s, body) = get(&c, &host.url("/test-object")).await;
    assert_eq!(s, 400);
    assert!(body.contains("missing object name"), "{body}");
    assert_eq!(get(&c, &host.url("/")).await.0, 404);
    // An object answering a status that is not a valid final status is a clear 500.
    let (s, body) = get(&c, &host.url("/test-object/x/status?code=42")).await;
    assert_eq!(s, 500);
    assert!(body.contains("status 42"), "{body}");
    assert_eq!(
        get(&c, &host.url("/test-object/x/status?code=418")).await.0,
        418
    );
    host.stop().await;
}

#[tokio::test]
async fn the_object_sees_its_path_query_and_context() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let c = client();
    let (_, body) = get(&c, &host.url("/test-object/ctx/echo?a=1&b=two")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["query"], "a=1&b=two");
    assert_eq!(v["method"], "GET");
    assert!(v["url"].as_str().unwrap().ends_with("/echo?a=1&b=two"));
    let (_, body) = get(&c, &host.url("/test-object/ctx/env")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "ctx");
    assert_eq!(v["binding"], "test-object");
    assert_eq!(v["id"].as_str().unwrap().len(), 64);
    assert_eq!(get(&c, &host.url("/test-object/ctx/log")).await.0, 200);
    host.stop().await;
}

/// A component that is not wasm, or not an object class, stops start-up with an error
/// naming the file, from the real binary.
#[test]
fn bad_components_stop_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not webassembly").unwrap();
    let bin = env!("CARGO_BIN_EXE_dohost");
    let out = std::process::Command::new(bin)
        .args(["run", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg(&garbage)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("garbage.wasm"), "{err}");

    // Valid wasm magic but corrupt content.
    let corrupt = dir.path().join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let out = std::process::Command::new(bin)
        .args(["run", "--data"])
        .arg(dir.path().join("data"))
        .arg(&corrupt)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt.wasm"), "{err}");

    // A file that is not there.
    let out = std::process::Command::new(bin)
        .args(["run", "missing.wasm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.wasm"));
}

#[test]
fn help_explains_every_flag() {
    let bin = env!("CARGO_BIN_EXE_dohost");
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("run"));
    let out = std::process::Command::new(bin)
        .args(["run", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data",
        "--max-key-bytes",
        "--max-value-bytes",
        "--max-keys-per-call",
        "--max-object-bytes",
        "--max-body-bytes",
        "--cpu-ms",
        "--memory-bytes",
        "--idle-secs",
        "--max-live-objects",
    ] {
        assert!(text.contains(flag), "run --help does not mention {flag}");
    }
}

/// Guards against a wedge: objects waiting on calls held every instance slot while their
/// callees waited for a slot without bound, so every new object, and shutdown, waited
/// forever.
async fn calls_from_objects_holding_every_slot_never_wedge_the_host(backend: Backend) {
    let dir = backend.data_dir();
    let limits = Limits {
        max_live_objects: Some(4),
        slot_wait: Duration::from_secs(2),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["test-object", "counter"], dir.path(), limits).await;
    let c = client();
    let calls = (0..50).map(|i| {
        let url = host.url(&format!(
            "/test-object/c{i}/call?binding=test-object&name=d{i}&path=/instance"
        ));
        let c = c.clone();
        async move { get(&c, &url).await }
    });
    let answered = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(calls))
        .await
        .expect("calls from objects holding every slot wedged the host");
    for (status, body) in &answered {
        // A call whose callee found no slot is the caller's error to handle (502 here);
        // a caller that found none is refused with 503.
        assert!([200, 502, 503].contains(status), "{status} {body}");
    }
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(60),
        get(&c, &host.url("/counter/new/increment")),
    )
    .await
    .expect("a new object waited forever for a slot");
    assert_eq!((status, body.as_str()), (200, "1"));
    tokio::time::timeout(Duration::from_secs(60), host.stop())
        .await
        .expect("shutdown did not finish");
}

/// Guards against unbounded waits for an instance slot: the wait ends with 503 and
/// Retry-After when no slot frees up in time (here the one slot is held by a lock with a
/// waiter, which is never evicted, and has no deferring slot to move to).
#[tokio::test]
async fn a_wait_for_an_instance_slot_is_bounded_and_answered_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_live_objects: Some(1),
        max_deferring_objects: 0,
        slot_wait: Duration::from_millis(300),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["lock", "counter"], dir.path(), limits).await;
    let c = client();
    let waiter = lock_with_waiter(&c, &host, "l").await;
    let r = c
        .get(host.url("/counter/x/increment"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body = r.text().await.unwrap();
    assert!(body.contains("slot_wait"), "{body}");
    // Once the lock is released its instance can go, and the counter gets the slot.
    assert_eq!(
        post(&c, &host.url("/lock/l/release"), "").await.1,
        "Unlocked"
    );
    assert_eq!(waiter.await.unwrap().1, "Locked");
    assert_eq!(
        post(&c, &host.url("/lock/l/release"), "").await.1,
        "Unlocked"
    );
    assert_eq!(
        get(&c, &host.url("/counter/x/increment")).await,
        (200, "1".into())
    );
    host.stop().await;
}

/// Guards against a shutdown that waits for in-flight requests without end (here a
/// deferred request with an hour to wait): they get 503, and the host stops.
async fn shutdown_answers_waiting_requests_and_finishes(backend: Backend) {
    let dir = backend.data_dir();
    let limits = Limits {
        deferred_timeout: Duration::from_secs(3600),
        shutdown_timeout: Duration::from_secs(3600),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["lock"], dir.path(), limits).await;
    let c = client();
    let waiter = lock_with_waiter(&c, &host, "l").await;
    tokio::time::timeout(Duration::from_secs(60), host.stop())
        .await
        .expect("shutdown waited for a deferred request");
    assert_eq!(waiter.await.unwrap().0, 503);
}

/// Guards against a shutdown that never ends when a request never finishes: past
/// `shutdown_timeout` the host stops anyway.
async fn shutdown_is_bounded_by_the_shutdown_timeout(backend: Backend) {
    let dir = backend.data_dir();
    let limits = Limits {
        cpu_per_event: Duration::from_secs(3600),
        shutdown_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let host = TestHost::start_observed(&["test-object"], dir.path(), limits).await;
    let rt = host.runtime().clone();
    let c = client();
    let spinning = {
        let url = host.url("/test-object/spin/loop");
        let c = c.clone();
        tokio::spawn(async move { c.get(url).send().await })
    };
    wait_until("the loop runs", || async { rt.live_instances() == 1 }).await;
    tokio::time::timeout(Duration::from_secs(60), host.stop())
        .await
        .expect("shutdown waited for an endless event");
    spinning.abort();
}

/// Sends raw bytes and answers the status line and body of the response.
async fn raw_request(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Connects to `addr` and sends `bytes` (possibly an incomplete request).
async fn send_raw(addr: &str, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// What the server sends on `stream` until it closes it; a connection still open after
/// 30 s fails the test (the hang is the bug these tests guard against).
async fn until_closed(mut stream: tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out))
        .await
        .expect("the connection stayed open")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// Guards against a Host header spliced into the URL the object sees: `Host:
/// evil/increment?` turned `/get` into `/increment`.
#[tokio::test]
async fn a_host_header_cannot_rewrite_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["counter", "test-object"], dir.path()).await;
    let c = client();
    for bad in ["evil/increment?", "a@b", "x#y", "a b"] {
        let response = raw_request(
            host.addr,
            format!("GET /counter/hh/get HTTP/1.1\r\nHost: {bad}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 400"), "{bad}: {response}");
        assert!(response.contains("invalid Host header"), "{response}");
    }
    assert_eq!(
        get(&c, &host.url("/counter/hh/get")).await,
        (200, "0".into())
    );
    // A proper Host still reaches the object, as its URL's authority.
    let response = raw_request(
        host.addr,
        b"GET /test-object/h/echo HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        response.contains("http://example.com:8080/echo"),
        "{response}"
    );
    host.stop().await;
}

/// Guards against a malformed chunked body answered 413 ("larger than the limit").
#[tokio::test]
async fn a_malformed_chunked_body_is_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let response = raw_request(
        host.addr,
        b"POST /test-object/m/put?key=k HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(!response.contains("limit"), "{response}");
    host.stop().await;
}

/// Guards against a guest's `exit` sending the wasm backtrace to the client.
#[tokio::test]
async fn an_exiting_guest_answers_a_short_reason_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let c = client();
    let (status, body) = get(&c, &host.url("/test-object/e/exit")).await;
    assert_eq!(status, 500);
    // WASI reports only success or failure: exit(3) arrives as status 1.
    assert_eq!(body, "object error: the object called exit (status 1)\n");
    assert_eq!(get(&c, &host.url("/test-object/e/instance")).await.0, 200);
    host.stop().await;
}

/// A small tmpfs mounted for one test (as root, or through sudo), unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let mut command = if is_root() {
            std::process::Command::new("mount")
        } else {
            let mut c = std::process::Command::new("sudo");
            c.args(["-n", "mount"]);
            c
        };
        let status = command
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs to fill it: run the tests as root (or with sudo)"
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0xA5u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new(if is_root() { "umount" } else { "sudo" })
            .args(if is_root() {
                vec!["-l"]
            } else {
                vec!["-n", "umount", "-l"]
            })
            .arg(self.dir.path())
            .status();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Guards against one full-disk error stopping every write until a restart (redb refuses
/// all writes after an I/O error until the database is reopened), with bare 500s, a log
/// line per failed batch and a health check that saw nothing.
#[tokio::test]
async fn a_full_disk_refuses_writes_with_507_and_recovers_once_space_is_freed() {
    let disk = SmallDisk::mount(24 << 20);
    let data = disk.path().join("data");
    let host = TestHost::start(&["test-object"], &data).await;
    let c = client();
    let health = host.url(dohost::edge::HEALTH_PATH);
    assert_eq!(get(&c, &health).await, (200, "ok\n".into()));
    assert_eq!(
        post(&c, &host.url("/test-object/f/put?key=kept"), "1")
            .await
            .0,
        200
    );

    let filler = disk.fill();
    // Values large enough that the database must grow into the full disk.
    let value = vec![b'v'; 100 * 1024];
    let mut refused = None;
    for i in 0..400 {
        let url = host.url(&format!("/test-object/f/put?key=big{i}"));
        let (status, body) = post(&c, &url, value.clone()).await;
        if status != 200 {
            refused = Some((status, body));
            break;
        }
    }
    let (status, body) = refused.expect("no write failed on a full disk");
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("disk is full"), "{body}");
    // Later writes are refused the same way (not "Previous I/O error"), reads still work,
    // and health says why writes fail.
    let (status, body) = post(&c, &host.url("/test-object/f/put?key=small"), "x").await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(
        get(&c, &host.url("/test-object/f/get?key=kept")).await,
        (200, "1".into())
    );
    let (status, body) = get(&c, &health).await;
    assert_eq!(status, 503);
    assert!(body.contains("disk is full"), "{body}");

    std::fs::remove_file(filler).unwrap();
    // Health recovers on its own, without a write to try.
    wait_until("health recovers", || async {
        get(&c, &health).await.0 == 200
    })
    .await;
    wait_until("writes are accepted again", || async {
        post(&c, &host.url("/test-object/f/put?key=after"), "2")
            .await
            .0
            == 200
    })
    .await;
    assert_eq!(get(&c, &health).await, (200, "ok\n".into()));
    host.stop().await;

    let host = TestHost::start(&["test-object"], &data).await;
    assert_eq!(
        get(&c, &host.url("/test-object/f/get?key=kept")).await,
        (200, "1".into())
    );
    assert_eq!(
        get(&c, &host.url("/test-object/f/get?key=after")).await,
        (200, "2".into())
    );
    host.stop().await;
}

on_both_backends!(
    a_trap_after_writes_leaves_storage_untouched,
    idle_objects_are_evicted_and_come_back_from_storage,
    a_panic_fails_one_request_and_the_next_gets_a_fresh_instance,
    an_endless_loop_is_stopped_by_the_cpu_limit,
    a_memory_bomb_is_stopped_by_the_memory_cap,
    a_stack_overflow_fails_only_its_event,
    at_max_live_objects_a_new_object_takes_one_idle_instance_slot,
    a_client_that_gives_up_mid_event_leaves_the_object_working,
    calls_from_objects_holding_every_slot_never_wedge_the_host,
    shutdown_answers_waiting_requests_and_finishes,
    shutdown_is_bounded_by_the_shutdown_timeout,
);

/// A guest that fails over and over does not flood the log: each object logs at most a
/// few failure lines a minute, the full error (its wasm backtrace) only at a trap site's
/// first failure; every request still gets its 500.
#[tokio::test]
async fn repeated_failures_are_logged_a_few_times_with_one_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let host = common::process::HostProcess::spawn(&dir.path().join("data"), &["test-object"], &[]);
    let c = client();
    for _ in 0..40 {
        let (status, _) = get(&c, &format!("http://{}/test-object/p/panic", host.addr)).await;
        assert_eq!(status, 500);
    }
    let log = host.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("instance discarded"))
        .collect();
    assert_eq!(lines.len(), 5, "{log}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("error=")).count(),
        1,
        "{log}"
    );
    // The guest's own line says where it panicked and points to the log, not to
    // RUST_BACKTRACE (which a guest cannot set).
    assert!(log.contains("panicked at test-object/src/lib.rs"), "{log}");
    assert!(!log.contains("RUST_BACKTRACE"), "{log}");
}

/// `--body-timeout-ms` at its edge: a client that sends part of its body and stops gets
/// 408 once the time is up, naming the limit, and nothing reaches the object; a body that
/// arrives in time is taken.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let host = common::process::HostProcess::spawn(
        &dir.path().join("data"),
        &["test-object"],
        &["--body-timeout-ms", "300"],
    );
    let slow = send_raw(
        &host.addr,
        b"POST /test-object/b/put?key=k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await;
    // The server answers and closes.
    let answer = until_closed(slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout_ms"), "{answer}");
    let c = client();
    let get_k = format!("http://{}/test-object/b/get?key=k", host.addr);
    assert_eq!(get(&c, &get_k).await.0, 404);
    let put = format!("http://{}/test-object/b/put?key=k", host.addr);
    assert_eq!(post(&c, &put, "in time").await.0, 200);
    assert_eq!(get(&c, &get_k).await, (200, "in time".into()));
}

/// `--header-timeout-ms` at its edge: a connection that sends part of its headers and
/// stalls (slowloris) is closed once the time is up, and so is a kept-alive connection left
/// idle after a request; a request sent in time is served.
#[tokio::test]
async fn stalled_headers_and_idle_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let host = common::process::HostProcess::spawn(
        &dir.path().join("data"),
        &["counter"],
        &["--header-timeout-ms", "300"],
    );
    let slow = send_raw(&host.addr, b"GET /counter/h/get HTTP/1.1\r\nHost: x\r\n").await;
    let answer = until_closed(slow).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    // One that connects and sends nothing at all, and one that starts a protocol preface
    // and stalls, are closed too.
    let silent = send_raw(&host.addr, b"").await;
    assert_eq!(until_closed(silent).await, "");
    until_closed(send_raw(&host.addr, b"PRI * HT").await).await;

    let idle = send_raw(
        &host.addr,
        b"GET /counter/h/get HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let answer = until_closed(idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let c = client();
    let url = format!("http://{}/counter/h/increment", host.addr);
    assert_eq!(get(&c, &url).await, (200, "1".into()));
}

/// `--max-connections` at its edge: with 2, an idle connection and a WebSocket hold both
/// slots, so a third connection is answered 503 with Retry-After naming the limit and
/// closed; once the idle one goes, a new connection is served.
#[tokio::test]
async fn connections_over_the_cap_are_answered_503() {
    let dir = tempfile::tempdir().unwrap();
    let host = common::process::HostProcess::spawn(
        &dir.path().join("data"),
        &["chat-room"],
        &["--max-connections", "2"],
    );
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat-room/cap/ws?name=a", host.addr))
            .await
            .unwrap();
    // A kept-alive connection that has been served holds the second slot. (Until the
    // socket's handshake connection has given its own slot back, it may be refused: retry.)
    let idle = {
        use tokio::io::AsyncReadExt;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut stream = send_raw(
                &host.addr,
                b"GET /chat-room/cap/stats HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .await;
            let mut head = vec![0; 12];
            stream.read_exact(&mut head).await.unwrap();
            if head.starts_with(b"HTTP/1.1 200") {
                break stream;
            }
            assert!(std::time::Instant::now() < deadline, "never served");
            tokio::task::yield_now().await;
        }
    };
    let request = b"GET /chat-room/cap/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let send =
        |request: &'static [u8]| async { until_closed(send_raw(&host.addr, request).await).await };
    let answer = send(request).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("max_connections"), "{answer}");
    // The socket still works.
    use futures::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::text("who"))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert!(
        reply.to_text().unwrap().starts_with("you are a"),
        "{reply:?}"
    );
    // A slot frees when the idle connection goes.
    drop(idle);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = send(request).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never served again: {answer}"
        );
        tokio::task::yield_now().await;
    }
}

/// `--max-memory` at its edge: a memory bomb under a budget smaller than its own limit is
/// stopped by the budget — its request answered 503 with Retry-After naming max_memory,
/// its instance dropped — and the budget comes back: the next object runs. A body that
/// would not fit is refused before it reaches the object. Under a budget of one byte, an
/// event that does not grow its memory runs and the first that does gets the same 503.
#[tokio::test]
async fn the_memory_budget_stops_a_bomb_and_is_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let host = common::process::HostProcess::spawn(
        &dir.path().join("data"),
        &["test-object"],
        &[
            "--max-memory",
            "67108864",
            "--memory-bytes",
            "134217728",
            "--max-body-bytes",
            "134217728",
        ],
    );
    let c = client();
    let url = |p: &str| format!("http://{}/test-object{p}", host.addr);
    for _ in 0..3 {
        let r = c.get(url("/bomb/membomb")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let body = r.text().await.unwrap();
        assert!(body.contains("max_memory"), "{body}");
        // Given back: another object gets an instance.
        assert_eq!(get(&c, &url("/other/instance")).await.0, 200);
    }
    // A body over what is left of the budget is refused on its announced length, before
    // it is sent.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&host.addr).await.unwrap();
        stream
            .write_all(
                b"POST /test-object/other/put?key=k HTTP/1.1\r\nHost: x\r\n\
                  Content-Length: 83886080\r\n\r\nxxxx",
            )
            .await
            .unwrap();
        let mut answer = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut answer))
            .await
            .expect("no answer")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("max_memory"), "{answer}");
    }
    assert_eq!(get(&c, &url("/other/get?key=k")).await.0, 404);

    // Initial memories count too: a component whose initial memory is more than the whole
    // budget could never run, so start-up refuses it, naming the limit.
    let dir = tempfile::tempdir().unwrap();
    let err = common::process::HostProcess::refused(
        &dir.path().join("data"),
        &["test-object"],
        &["--max-memory", "1"],
    )
    .await;
    assert!(
        err.contains("max_memory") && err.contains("--max-memory"),
        "{err}"
    );
}

/// Guards against live instances taking the host past the kernel's limit outside the
/// budget: each instance's initial linear memory counts against `--max-memory`, so with room
/// for three instances of test-object, a fourth object waits while an idle one gives its
/// instance up, and is served; live instances never hold more than the budget.
#[tokio::test]
async fn initial_memories_count_against_the_budget() {
    use dohost::runtime::Dispatch as _;
    let dir = tempfile::tempdir().unwrap();
    let probe = TestHost::start_observed(&["test-object"], dir.path(), Limits::default()).await;
    let c = client();
    assert_eq!(get(&c, &probe.url("/test-object/p/instance")).await.0, 200);
    // One instance's memory, as the budget counts it (nothing else is held between events).
    let one = probe.runtime().memory().used();
    assert!(
        one >= 64 << 10,
        "an instance's initial memory is counted: {one}"
    );
    probe.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_memory: one * 3 + one / 2,
        idle_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let host = TestHost::start_observed(&["test-object"], dir.path(), limits).await;
    let rt = host.runtime().clone();
    for n in 0..3 {
        let (status, body) = get(&c, &host.url(&format!("/test-object/o{n}/instance"))).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(rt.live_instances(), 3);
    let (status, body) = get(&c, &host.url("/test-object/o3/instance")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rt.live_instances(), 3, "one idle instance made room");
    assert!(rt.memory().used() <= rt.memory().limit());
    host.stop().await;
}

/// A queued request whose client goes away is not run to its CPU limit: two endless loops
/// on one object (the first inline, the second queued behind it), both clients give up,
/// and the object answers again — which it could not for twenty minutes if either loop ran
/// on (`--cpu-ms` is ten minutes).
#[tokio::test]
async fn abandoned_loops_stop_when_their_clients_leave() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        cpu_per_event: Duration::from_secs(600),
        ..Limits::default()
    };
    let host = TestHost::start_observed(&["test-object"], dir.path(), limits).await;
    let rt = host.runtime().clone();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let first = {
        let (c, url) = (impatient.clone(), host.url("/test-object/spin/loop"));
        tokio::spawn(async move { c.get(url).send().await.is_err() })
    };
    wait_until("the first loop runs", || async { rt.live_instances() == 1 }).await;
    let second = impatient
        .get(host.url("/test-object/spin/loop"))
        .send()
        .await;
    assert!(second.is_err(), "the queued loop answered");
    assert!(first.await.unwrap(), "the first loop answered");
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let answer = patient
        .get(host.url("/test-object/spin/instance"))
        .send()
        .await
        .expect("the object never answered again: an abandoned loop ran on");
    assert_eq!(answer.status(), 200);
    assert!(rt.metrics().cancelled_events.get() >= 1);
    host.stop().await;
}

/// Objects holding deferred requests (never evicted) move to slots of their own
/// (`--max-deferring-objects`), so they do not keep `--max-live-objects` from objects that
/// come and go: with 2 live slots and 3 deferring ones, five locks with a waiter each
/// leave a live slot free while three of them have moved; the next two keep theirs, and
/// then a new object is refused (503) after `--slot-wait-ms`.
#[tokio::test]
async fn objects_with_deferred_requests_do_not_pin_live_slots() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_live_objects: Some(2),
        max_deferring_objects: 3,
        slot_wait: Duration::from_millis(500),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["lock", "test-object"], dir.path(), limits).await;
    let c = client();
    let mut waiters = Vec::new();
    for i in 0..5 {
        let acquire = host.url(&format!("/lock/l{i}/acquire"));
        assert_eq!(
            post(&c, &acquire, "").await,
            (200, "Locked".into()),
            "lock {i}"
        );
        let (c2, url) = (c.clone(), acquire.clone());
        waiters.push(tokio::spawn(async move { post(&c2, &url, "").await }));
        let status = host.url(&format!("/lock/l{i}/status"));
        wait_until("the waiter is queued", || async {
            get(&c, &status).await.1.contains("\"waiting\":1")
        })
        .await;
        let fresh = host.url(&format!("/test-object/fresh{i}/instance"));
        let expected = if i < 4 { 200 } else { 503 };
        assert_eq!(
            get(&c, &fresh).await.0,
            expected,
            "a new object after lock {i}"
        );
    }
    for (i, w) in waiters.into_iter().enumerate() {
        let release = host.url(&format!("/lock/l{i}/release"));
        assert_eq!(post(&c, &release, "").await.0, 200);
        assert_eq!(w.await.unwrap(), (200, "Locked".into()));
    }
    host.stop().await;
}

/// `--max-long-events` at its edge: with one turn, of two endless loops on two objects one
/// runs and the other waits; a short request to a third object is answered meanwhile (it
/// ends within its free slices and never needs a turn); when the running loop's client
/// leaves, the waiting loop takes the turn, and when its own leaves, none is held.
#[tokio::test]
async fn endless_loops_take_turns_and_short_events_pass_them() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_long_events: 1,
        cpu_per_event: Duration::from_secs(600),
        ..Limits::default()
    };
    let host = TestHost::start_observed(&["test-object"], dir.path(), limits).await;
    let rt = host.runtime().clone();
    let spin = |name: &str| {
        let (c, url) = (client(), host.url(&format!("/test-object/{name}/loop")));
        tokio::spawn(async move { get(&c, &url).await })
    };
    let first = spin("turn-a");
    wait_until("the first loop holds the turn", || async {
        rt.long_events() == (1, 0)
    })
    .await;
    let second = spin("turn-b");
    wait_until("the second loop waits for it", || async {
        rt.long_events() == (1, 1)
    })
    .await;
    let c = client();
    assert_eq!(
        get(&c, &host.url("/test-object/short/instance")).await.0,
        200
    );
    first.abort();
    wait_until("the second loop takes the turn", || async {
        rt.long_events() == (1, 0)
    })
    .await;
    second.abort();
    wait_until("no turn is held", || async { rt.long_events() == (0, 0) }).await;
    host.stop().await;
}

/// Short of memory budget, idle objects give their instances (and the memory their guests
/// grew) back, one per refusal, as they give slots up: with a 48 MiB budget, an idle
/// object holding 32 MiB makes a second object's 32 MiB refused once (503), and is then
/// evicted, so the retry fits. The idle timeout is ten minutes: only the pressure evicts.
#[tokio::test]
async fn short_of_memory_idle_objects_give_their_instances_up() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_memory: 48 << 20,
        idle_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let host = TestHost::start_observed(&["test-object"], dir.path(), limits).await;
    let rt = host.runtime().clone();
    let c = client();
    let (status, body) = get(&c, &host.url("/test-object/first/hold?mib=32")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&c, &host.url("/test-object/second/hold?mib=32")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max_memory"), "{body}");
    wait_until("the idle object gives its instance up", || async {
        rt.live_instances() == 0
    })
    .await;
    let (status, body) = get(&c, &host.url("/test-object/second/hold?mib=32")).await;
    assert_eq!(status, 200, "{body}");
    host.stop().await;
}

/// A slot freed by an evicted instance is reset before the next instance gets it (the pool
/// rewrites the pages an instance touched in place, found by the kernel's PAGEMAP_SCAN,
/// rather than handing them back): with one live slot, objects in turn each find the
/// statics of the data image and of the zero-initialised data, and a freshly grown page, as
/// a new instance must, then leave their marks for the next.
#[tokio::test]
async fn a_reused_instance_slot_holds_nothing_of_its_last_instance() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_live_objects: Some(1),
        ..Limits::default()
    };
    let host = TestHost::start_with(&["test-object"], dir.path(), limits).await;
    let c = client();
    for i in 0..20 {
        let (status, body) = get(&c, &host.url(&format!("/test-object/slot-{i}/leftovers"))).await;
        assert_eq!((status, body.as_str()), (200, "7 0 0"), "object {i}");
    }
    // The same instance sees its own marks: the probe can tell.
    let (_, body) = get(&c, &host.url("/test-object/slot-19/leftovers")).await;
    assert!(body.starts_with("99 99 "), "{body}");
    host.stop().await;
}

/// A client leaving does not stop an event while its object holds deferred requests:
/// stopping it would drop the instance, and with it the deferred requests (they live in the
/// instance's memory). The spinning event runs to its end; the waiter is answered after.
#[tokio::test]
async fn a_client_leaving_does_not_stop_an_event_beside_deferred_requests() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_observed(&["test-object"], dir.path(), Limits::default()).await;
    let c = client();
    let waiter = {
        let (c, url) = (c.clone(), host.url("/test-object/d/wait"));
        tokio::spawn(async move { get(&c, &url).await })
    };
    let waiting = host.url("/test-object/d/waiting");
    wait_until("the request waits", || async {
        get(&c, &waiting).await.1 == "1"
    })
    .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(host.url("/test-object/d/spin?ms=1000"))
        .send()
        .await;
    assert!(gave_up.is_err(), "the spin answered within 100 ms");
    assert_eq!(
        get(&c, &host.url("/test-object/d/wake")).await,
        (200, "1".to_string())
    );
    assert_eq!(waiter.await.unwrap(), (200, "woken".to_string()));
    host.stop().await;
}

/// Connects with a small receive buffer and sends `request` without ever reading: the
/// answer piles up in the server, as behind a client that stopped reading.
async fn unread(addr: std::net::SocketAddr, request: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Guards against answers nobody reads holding memory outside `--max-memory` for ever:
/// the bytes of an answer not yet written count against the budget (two unread 16 MiB
/// answers fill a budget with 20 MiB to spare, so the next request gets 503), and a
/// connection whose writes make no progress for `--write-timeout-ms` is closed, which gives
/// them back (the host serves again).
#[tokio::test]
async fn unread_answers_count_against_the_budget_until_the_write_timeout_closes_them() {
    use dohost::runtime::Dispatch as _;
    let dir = tempfile::tempdir().unwrap();
    // One answer read in full: the instance's memory, which stays while it lives.
    let probe = TestHost::start_observed(&["test-object"], dir.path(), Limits::default()).await;
    let c = client();
    let (status, body) = get(&c, &probe.url("/test-object/u/big?mib=16")).await;
    assert_eq!((status, body.len()), (200, 16 << 20));
    let instance = probe.runtime().memory().used();
    probe.stop().await;

    let limits = Limits {
        max_memory: instance + (20 << 20),
        write_timeout: Duration::from_millis(1500),
        idle_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let host = TestHost::start_observed(&["test-object"], dir.path(), limits).await;
    let rt = host.runtime().clone();
    assert_eq!(get(&c, &host.url("/test-object/u/big?mib=16")).await.0, 200);
    let request = "GET /test-object/u/big?mib=16 HTTP/1.1\r\nHost: x\r\n\r\n";
    let first = unread(host.addr, request).await;
    wait_until("the first unread answer is held", || async {
        rt.memory().used() >= instance + (8 << 20)
    })
    .await;
    let second = unread(host.addr, request).await;
    wait_until("both unread answers are held", || async {
        rt.memory().used() >= instance + (20 << 20)
    })
    .await;
    let (status, body) = get(&c, &host.url("/test-object/u/instance")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("max_memory"), "{body}");

    wait_until("the write timeout closes both", || async {
        rt.memory().used() <= instance
    })
    .await;
    for stream in [first, second] {
        // Closed by the host: what the kernel buffered, then the end (or a reset).
        use tokio::io::AsyncReadExt;
        let mut stream = stream;
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut sink));
        assert!(read.await.is_ok(), "the connection stayed open");
        assert!(sink.len() < 16 << 20, "the whole answer was never written");
    }
    assert_eq!(get(&c, &host.url("/test-object/u/instance")).await.0, 200);
    host.stop().await;
}

/// Guards against HTTP/2 over cleartext (h2c) slipping past the listener's bounds: the
/// HTTP/2 preface is not answered and the connection is closed, never SETTINGS held open
/// without a header or idle timeout; an `Upgrade: h2c` request is answered as HTTP/1.1.
#[tokio::test]
async fn http2_is_not_spoken_and_its_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let host = common::process::HostProcess::spawn(&dir.path().join("data"), &["counter"], &[]);
    // The preface, then an empty SETTINGS frame, as an h2c client with prior knowledge.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    // hyper closes it unanswered: an HTTP/2 server would answer SETTINGS and hold it.
    let answer = until_closed(send_raw(&host.addr, &preface).await).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 "),
        "{answer:?}"
    );
    let upgrade = until_closed(
        send_raw(
            &host.addr,
            b"GET /counter/h/get HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, \
              close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        )
        .await,
    )
    .await;
    assert!(upgrade.starts_with("HTTP/1.1 200"), "{upgrade}");
}

/// Guards against a guest flooding the host's log through stdout and stderr: with an
/// allowance of 300 bytes a minute, an object printing about 100 bytes a request is cut
/// after its third request, and the log says so, naming the flag, instead of printing the
/// rest.
#[tokio::test]
async fn a_guests_output_past_its_allowance_is_dropped_and_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let host = common::process::HostProcess::spawn(
        &dir.path().join("data"),
        &["test-object"],
        &["--guest-log-bytes-per-minute", "300"],
    );
    let c = client();
    let url = format!("http://{}/test-object/chatty/log", host.addr);
    for _ in 0..20 {
        assert_eq!(get(&c, &url).await.0, 200);
    }
    wait_until("the log says the output is dropped", || async {
        host.log()
            .contains("(guest_log_bytes_per_minute): the rest")
    })
    .await;
    let printed = host.log().matches("hello on stdout").count();
    // Three within the minute; a slow run may see a second minute begin, never twenty.
    assert!((1..10).contains(&printed), "{printed} lines printed");
}

//! The same counter in Rust, Python (componentize-py) and JavaScript (componentize-js),
//! served by the same dohost: the seed's sequence, 404, concurrency and restart for each,
//! a class switching language without losing its data, the Python counter's stream, the
//! Python chat room across hibernation and restart, objects of the three languages reading
//! each other's values, each SDK's conventions and SQL API, the JavaScript rate limiter, and
//! the README's Python and JavaScript objects built and served.

mod common;
use common::*;

/// Everything the Rust counter's tests check, against one counter component.
async fn counter_suite(guest_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&[guest_name], dir.path()).await;
    let c = client();
    let u = |p: &str| host.url(&format!("/{guest_name}{p}"));
    assert_eq!(
        get(&c, &u("/a/get")).await,
        (200, "0".into()),
        "{guest_name}"
    );
    assert_eq!(get(&c, &u("/a/increment")).await, (200, "1".into()));
    assert_eq!(get(&c, &u("/a/increment")).await, (200, "2".into()));
    assert_eq!(get(&c, &u("/a/decrement")).await, (200, "1".into()));
    assert_eq!(get(&c, &u("/a/get")).await, (200, "1".into()));
    assert_eq!(get(&c, &u("/a/nope")).await, (404, "Not found".into()));
    assert_eq!(get(&c, &u("/b/get")).await.1, "0", "names are independent");

    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (c, url) = (c.clone(), u("/busy/increment"));
        tasks.push(tokio::spawn(async move { get(&c, &url).await }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        let (s, body) = t.await.unwrap();
        assert_eq!(s, 200);
        seen.push(body.parse::<i64>().unwrap());
    }
    seen.sort();
    assert_eq!(seen, (1..=200).collect::<Vec<_>>(), "{guest_name}");
    host.stop().await;

    // Restart on the same data directory (the compiled code now comes from the cache).
    let host = TestHost::start(&[guest_name], dir.path()).await;
    assert_eq!(
        get(&c, &host.url(&format!("/{guest_name}/busy/get")))
            .await
            .1,
        "200"
    );
    assert_eq!(
        get(&c, &host.url(&format!("/{guest_name}/a/get"))).await.1,
        "1"
    );
    host.stop().await;
}

/// A host serving `guests` whose runtime the test can evict objects of.
async fn observed(guests: &[&str], data: &std::path::Path) -> TestHost {
    TestHost::start_observed(guests, data, dohost::Limits::default()).await
}

/// A host on `data` serving the component `guest_name` as the class and binding `binding`
/// (copied to `components/{binding}.wasm`: the file's stem is the class), as if the class
/// had been rewritten in that guest's language.
async fn serving_as(dir: &std::path::Path, binding: &str, guest_name: &str) -> TestHost {
    let components = dir.join("components");
    std::fs::create_dir_all(&components).unwrap();
    let file = components.join(format!("{binding}.wasm"));
    std::fs::copy(guest(guest_name), &file).unwrap();
    let mut config = config(&[], &dir.join("data"), dohost::Limits::default());
    config.classes = vec![dohost::ClassConfig {
        binding: binding.into(),
        class_name: binding.into(),
        component: file,
    }];
    TestHost::start_config(config).await
}

#[tokio::test]
async fn rust_counter() {
    counter_suite("counter").await;
}

#[tokio::test]
async fn python_counter() {
    counter_suite("counter-py").await;
}

#[tokio::test]
async fn javascript_counter() {
    counter_suite("counter-js").await;
}

/// The Python counter's `/watch` streams the value through the WIT `streams` interface
/// straight from componentize-py's bindings: the current value first, then one event per
/// change, read as they arrive.
#[tokio::test]
async fn the_python_counter_streams_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["counter-py"], dir.path()).await;
    let c = client();
    get(&c, &host.url("/counter-py/w/increment")).await;
    let mut watch = sse::Subscriber::open_raw(&host.url("/counter-py/w/watch")).await;
    assert_eq!(watch.next_event().await.data, "1");
    for expected in ["2", "3"] {
        get(&c, &host.url("/counter-py/w/increment")).await;
        assert_eq!(watch.next_event().await.data, expected);
    }
    get(&c, &host.url("/counter-py/w/decrement")).await;
    assert_eq!(watch.next_event().await.data, "2");
    host.stop().await;
}

/// The Python chat room (on the SDK) behaves as the Rust one: messages cross, tags and
/// attachments come through forced eviction, the host answers auto-responses without waking
/// it, `close-me` closes with 4000 and the close is recorded, and its storage survives a
/// restart.
#[tokio::test]
async fn the_python_chat_room_chats_across_hibernation_and_restart() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let start = || observed(&["chat-room-py"], dir.path());
    let host = start().await;
    let rt = host.runtime().clone();
    let c = client();
    let stats = |host: &TestHost| {
        let (c, url) = (c.clone(), host.url("/chat-room-py/r/stats"));
        async move { serde_json::from_str::<serde_json::Value>(&get(&c, &url).await.1).unwrap() }
    };
    let (status, page) = get(&c, &host.url("/chat-room-py/r/")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<title>dohost chat</title>"),
        "the Rust room's page"
    );
    let mut a = connect(&host, "/chat-room-py/r/ws?name=alice").await;
    let mut b = connect(&host, "/chat-room-py/r/ws?name=bob").await;
    a.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_text(&mut b).await, "alice: hi");
    for round in 0..2 {
        assert!(rt.evict("chat-room-py", "r"));
        wait_until("the instance is gone", || async {
            rt.live_instances() == 0
        })
        .await;
        b.send(Message::text(format!("after eviction {round}")))
            .await
            .unwrap();
        assert_eq!(
            next_text(&mut a).await,
            format!("bob: after eviction {round}")
        );
        a.send(Message::text("who")).await.unwrap();
        assert_eq!(
            next_text(&mut a).await,
            r#"you are alice, tags ["user:alice"]"#
        );
    }
    assert_eq!(
        post(&c, &host.url("/chat-room-py/r/auto?on=1"), "").await,
        (200, "ok".to_string())
    );
    assert!(rt.evict("chat-room-py", "r"));
    wait_until("the instance is gone", || async {
        rt.live_instances() == 0
    })
    .await;
    b.send(Message::text("ping")).await.unwrap();
    assert_eq!(next_text(&mut b).await, "pong");
    assert_eq!(rt.live_instances(), 0, "answered without waking the room");
    b.send(Message::text("close-me")).await.unwrap();
    loop {
        match b.next().await {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 4000);
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    }
    let s = stats(&host).await;
    assert_eq!(s["sockets"], 1, "{s}");
    let constructed = s["constructed"].as_u64().unwrap();
    assert!(constructed >= 4, "rebuilt after each eviction: {s}");
    drop(a);
    host.stop().await;
    let host = start().await;
    let s = stats(&host).await;
    assert_eq!(s["sockets"], 0, "{s}");
    assert_eq!(s["constructed"].as_u64().unwrap(), constructed + 1, "{s}");
    host.stop().await;
}

/// Objects in the three languages read each other's values through stubs: a Rust object
/// (`test-object`'s `/call`) reads the Python and JavaScript counters, and the Python
/// counter (`/peek`) reads the Rust and JavaScript ones.
#[tokio::test]
async fn objects_in_three_languages_read_each_others_values() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(
        &["counter", "counter-py", "counter-js", "test-object"],
        dir.path(),
    )
    .await;
    let c = client();
    for (binding, times) in [("counter", 1), ("counter-py", 2), ("counter-js", 3)] {
        for _ in 0..times {
            get(&c, &host.url(&format!("/{binding}/shared/increment"))).await;
        }
    }
    for (binding, value) in [("counter-py", 2), ("counter-js", 3)] {
        let url = host.url(&format!(
            "/test-object/t/call?binding={binding}&name=shared&path=/get"
        ));
        assert_eq!(
            get(&c, &url).await.1,
            format!("200 {value}"),
            "Rust reads {binding}"
        );
    }
    for (binding, value) in [("counter", 1), ("counter-js", 3)] {
        let url = host.url(&format!("/counter-py/p/peek?binding={binding}&name=shared"));
        assert_eq!(
            get(&c, &url).await,
            (200, value.to_string()),
            "Python reads {binding}"
        );
    }
    host.stop().await;
}

/// The Python and JavaScript SDKs behave as the Rust one where an author can slip (each
/// language's `test-object` has the same routes): an exception from `fetch` is a 500 whose
/// writes are kept, `HttpError` answers its status and message, a `fetch` returning nothing
/// is a 500 (not a trap), bytes or a value JSON cannot hold are refused with a clear error
/// (nothing stored), multi-key calls past the host's per-call limit are split, a
/// transaction that raises rolls back, a storage error carries its code, and an alarm is
/// set by delay.
async fn the_sdk_behaves_as_the_rust_one(guest_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&[guest_name], dir.path()).await;
    let c = client();
    let u = |p: &str| host.url(&format!("/{guest_name}/t{p}"));
    assert_eq!(
        get(&c, &u("/raise")).await,
        (500, "Internal Server Error".into())
    );
    assert_eq!(get(&c, &u("/get?key=before")).await.1, r#""kept""#);
    assert_eq!(
        get(&c, &u("/http-error")).await,
        (418, "short and stout".into())
    );
    assert_eq!(get(&c, &u("/none")).await.0, 500);
    let v: serde_json::Value = serde_json::from_str(&get(&c, &u("/bad-value")).await.1).unwrap();
    let bytes_refused = v["errors"][0].as_str().unwrap().to_lowercase();
    assert!(bytes_refused.contains("bytes"), "names the bytes call: {v}");
    assert!(v["errors"][1].as_str().unwrap().contains("as JSON"), "{v}");
    assert_eq!(v["stored"], serde_json::Value::Null, "nothing stored: {v}");
    let v: serde_json::Value = serde_json::from_str(&get(&c, &u("/many?n=300")).await.1).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"got": 300, "listed": 300, "deleted": 300, "left": 1}),
        "past max_keys_per_call (128); `before` is left"
    );
    assert_eq!(get(&c, &u("/rollback")).await.1, r#"{"inside":null}"#);
    let v: serde_json::Value = serde_json::from_str(&get(&c, &u("/too-large")).await.1).unwrap();
    assert_eq!(v["code"], "value-too-large", "{v}");
    // The host moves alarms sooner than its minimum interval (30 s) later.
    let ms: i64 = get(&c, &u("/alarm-in?secs=120")).await.1.parse().unwrap();
    assert!((119_000..=121_000).contains(&ms), "{ms}");
    host.stop().await;
}

#[tokio::test]
async fn the_python_sdk_behaves_as_the_rust_one() {
    the_sdk_behaves_as_the_rust_one("test-object-py").await;
}

#[tokio::test]
async fn the_javascript_sdk_behaves_as_the_rust_one() {
    the_sdk_behaves_as_the_rust_one("test-object-js").await;
}

/// The Python and JavaScript SQL APIs (Cloudflare's `ctx.storage.sql`) answer alike: each
/// test object's `/sql` runs the same scenario (a table created, two rows inserted with a
/// blob and NULLs, read back by iteration and `to_array`/`toArray`, `raw`, `one` with a
/// boolean binding, a syntax error and a constraint failure as `SqlError` codes, a storage
/// transaction that rolls back an insert, the database's size) and answers what each step
/// gave; a second run (it drops and recreates its table) answers the same.
async fn the_sql_api_works(guest_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&[guest_name], dir.path()).await;
    let c = client();
    let expected = serde_json::json!({
        "columns": ["id", "name", "score", "data"],
        "written": 2,
        "rows": [
            {"id": 1, "name": "ada", "score": 1.5, "data": [0, 1, 255]},
            {"id": 2, "name": "bob", "score": null, "data": null},
        ],
        "read_some": true,
        "raw": [["ada"], ["bob"]],
        "one": {"n": 2, "flag": 1},
        "errors": {"syntax": "syntax", "constraint": "constraint"},
        "after_rollback": 2,
        "sized": true,
    });
    for run in 0..2 {
        let (status, body) = get(&c, &host.url(&format!("/{guest_name}/s/sql"))).await;
        assert_eq!(status, 200, "{guest_name}, run {run}: {body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v, expected, "{guest_name}, run {run}");
    }
    host.stop().await;
}

#[tokio::test]
async fn the_python_sql_api_works() {
    the_sql_api_works("test-object-py").await;
}

#[tokio::test]
async fn the_javascript_sql_api_works() {
    the_sql_api_works("test-object-js").await;
}

/// No JavaScript value is stored or answered as empty bytes: a string is stored as its JSON
/// text, a Response built from a string answers it, and one built from an object is an
/// error (500), not an empty body.
#[tokio::test]
async fn no_javascript_value_becomes_empty_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["test-object-js"], dir.path()).await;
    let c = client();
    let u = |p: &str| host.url(&format!("/test-object-js/t{p}"));
    assert_eq!(
        get(&c, &u("/string-value")).await,
        (200, r#""a string""#.into())
    );
    assert_eq!(
        get(&c, &u("/string-body")).await,
        (200, "plain body".into())
    );
    assert_eq!(get(&c, &u("/object-body")).await.0, 500);
    host.stop().await;
}

/// A JavaScript object's WebSocket on the SDK: text arrives as a string and binary as bytes,
/// the ID is a plain number listed by tag, and the attachment survives forced eviction.
#[tokio::test]
async fn a_javascript_websocket_keeps_its_attachment_across_eviction() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let host = observed(&["test-object-js"], dir.path()).await;
    let rt = host.runtime().clone();
    let mut ws = connect(&host, "/test-object-js/w/ws?name=ada").await;
    for round in 0..2 {
        ws.send(Message::text(format!("hi {round}"))).await.unwrap();
        assert_eq!(next_text(&mut ws).await, format!("ada: hi {round}"));
        ws.send(Message::binary(vec![0u8, 1, 255])).await.unwrap();
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => assert_eq!(b.as_ref(), &[0u8, 1, 255]),
            other => panic!("expected the bytes back, got {other:?}"),
        }
        ws.send(Message::text("who")).await.unwrap();
        assert_eq!(
            next_text(&mut ws).await,
            r#"{"idType":"number","listed":true,"tags":["user:ada"]}"#
        );
        assert!(rt.evict("test-object-js", "w"));
        wait_until("the instance is gone", || async {
            rt.live_instances() == 0
        })
        .await;
    }
    host.stop().await;
}

/// The seed's RateLimiter in JavaScript (on the SDK): 100 requests, then 429, per object;
/// its window is in storage, so eviction and a restart do not reset it.
#[tokio::test]
async fn the_javascript_rate_limiter_keeps_its_window_across_eviction_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || observed(&["rate-limiter-js"], dir.path());
    let host = start().await;
    let rt = host.runtime().clone();
    let c = client();
    let url = |host: &TestHost, user: &str| host.url(&format!("/rate-limiter-js/{user}/"));
    for i in 0..100 {
        assert_eq!(
            get(&c, &url(&host, "me")).await,
            (200, "OK".into()),
            "request {i}"
        );
    }
    let limited = (429, "Rate limit exceeded".to_string());
    assert_eq!(get(&c, &url(&host, "me")).await, limited);
    assert_eq!(
        get(&c, &url(&host, "other")).await.0,
        200,
        "a window per object"
    );
    assert!(rt.evict("rate-limiter-js", "me"));
    wait_until("its instance is gone", || async {
        rt.live_instances() == 1
    })
    .await;
    assert_eq!(get(&c, &url(&host, "me")).await, limited);
    host.stop().await;
    let host = start().await;
    assert_eq!(get(&c, &url(&host, "me")).await, limited);
    host.stop().await;
}

/// A rate limiter rewritten from Rust to JavaScript keeps its window: both keep the times of
/// the last minute's requests as the same JSON under the same key.
#[tokio::test]
async fn a_rate_limiter_switches_language_keeping_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let mut sent = 0;
    for (guest_name, requests) in [("rate-limiter", 60), ("rate-limiter-js", 40)] {
        let host = serving_as(dir.path(), "rate-limiter", guest_name).await;
        for _ in 0..requests {
            sent += 1;
            let answer = get(&c, &host.url("/rate-limiter/shared/")).await;
            assert_eq!(answer, (200, "OK".into()), "{guest_name}, request {sent}");
        }
        // The JavaScript limiter counted the Rust one's 60: the 101st request is refused.
        if sent == 100 {
            assert_eq!(
                get(&c, &host.url("/rate-limiter/shared/")).await,
                (429, "Rate limit exceeded".into())
            );
        }
        host.stop().await;
    }
}

/// The README's Python and JavaScript objects, taken from the README itself, build with the
/// commands it gives (the pinned toolchains; the JavaScript one beside a copy of the SDK, as
/// componentize-js loads only modules under its working directory) and answer as it says.
#[tokio::test]
async fn the_readme_python_and_javascript_objects_build_and_run() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let block = |section: &str, fence: &str| {
        let at = readme.find(section).expect(section);
        let start = at + readme[at..].find(fence).expect(fence) + fence.len();
        let end = start + readme[start..].find("\n```\n").unwrap();
        readme[start..end].trim_start_matches('\n').to_string()
    };
    let dir = tempfile::tempdir().unwrap();
    let py = dir.path().join("myobj");
    std::fs::create_dir_all(&py).unwrap();
    std::fs::write(py.join("app.py"), block("### Python", "```python")).unwrap();
    let counter = dir.path().join("counter.wasm");
    let built = std::process::Command::new("componentize-py")
        .current_dir(repo_root())
        .args(["-d", "wit", "-w", "object", "componentize", "-p"])
        .arg(&py)
        .args(["-p", "sdk-python", "app", "-o"])
        .arg(&counter)
        .status()
        .unwrap();
    assert!(built.success(), "the README's Python object builds");
    let js = dir.path().join("js");
    std::fs::create_dir_all(js.join("guests/hello-js")).unwrap();
    std::fs::create_dir_all(js.join("sdk-js")).unwrap();
    std::fs::copy(
        repo_root().join("sdk-js/dohost.js"),
        js.join("sdk-js/dohost.js"),
    )
    .unwrap();
    std::fs::write(
        js.join("guests/hello-js/hello.js"),
        block("### JavaScript", "```js"),
    )
    .unwrap();
    let hello = dir.path().join("hello-js.wasm");
    let built = std::process::Command::new(
        repo_root().join("guests/counter-js/node_modules/.bin/componentize-js"),
    )
    .current_dir(&js)
    .arg("guests/hello-js/hello.js")
    .arg("-w")
    .arg(repo_root().join("wit"))
    .args(["-n", "object", "-d", "http", "fetch-event", "-o"])
    .arg(&hello)
    .status()
    .unwrap();
    assert!(built.success(), "the README's JavaScript object builds");
    let mut config = config(&[], &dir.path().join("data"), dohost::Limits::default());
    config.classes = [("counter", counter), ("hello-js", hello)]
        .into_iter()
        .map(|(binding, component)| dohost::ClassConfig {
            binding: binding.into(),
            class_name: binding.into(),
            component,
        })
        .collect();
    let host = TestHost::start_config(config).await;
    let c = client();
    assert_eq!(
        get(&c, &host.url("/counter/x/increment?by=5")).await,
        (200, "5".into())
    );
    assert_eq!(
        get(&c, &host.url("/counter/x/get")).await,
        (200, r#"{"value":5}"#.into())
    );
    assert_eq!(get(&c, &host.url("/counter/x/nope")).await.0, 404);
    assert_eq!(
        get(&c, &host.url("/hello-js/x/hello?name=ada")).await,
        (200, r#"{"hello":"ada","count":1}"#.into())
    );
    assert_eq!(get(&c, &host.url("/hello-js/x/nope")).await.0, 404);
    host.stop().await;
}

/// A class rewritten in another language keeps its data: the Rust SDK's JSON values are what
/// the Python and JavaScript counters read.
#[tokio::test]
async fn a_class_switches_language_without_losing_data() {
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let mut expected = 0;
    for guest_name in ["counter", "counter-py", "counter-js", "counter"] {
        // The class is the file's stem: the same class, served by another component.
        let host = serving_as(dir.path(), "counter", guest_name).await;
        assert_eq!(
            get(&c, &host.url("/counter/shared/get")).await.1,
            expected.to_string(),
            "{guest_name} reads what the previous language wrote"
        );
        expected += 1;
        assert_eq!(
            get(&c, &host.url("/counter/shared/increment")).await.1,
            expected.to_string()
        );
        host.stop().await;
    }
}

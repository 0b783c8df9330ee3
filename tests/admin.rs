//! The admin listener of a real `dohost` process: Prometheus metrics at `/metrics` that
//! count what the public port served, a bearer token that guards them, and nothing of it
//! on the public port.

mod common;
use common::process::{self, HostProcess};
use common::*;

/// A host serving `guests` with its data behind `data` and its admin listener on a free
/// port (and `more` flags): the host, and the admin listener's address.
fn with_admin(data: &std::path::Path, guests: &[&str], more: &[&str]) -> (HostProcess, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut flags = vec!["--admin", admin.as_str()];
    flags.extend_from_slice(more);
    (HostProcess::spawn(data, guests, &flags), admin)
}

/// The value of the series `series` (name and labels, exactly as printed) in `text`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_count_what_was_served_and_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let (host, admin) = with_admin(
        &dir.path().join("data"),
        &["counter", "chat-room", "test-object"],
        &["--admin-token-file", token.to_str().unwrap()],
    );
    let c = client();
    let public = |path: &str| format!("http://{}{path}", host.addr);
    for i in 1..=3 {
        assert_eq!(
            get(&c, &public("/counter/m/increment")).await,
            (200, i.to_string())
        );
    }
    assert_eq!(get(&c, &public("/counter/m/get")).await.0, 200);
    assert_eq!(get(&c, &public("/nothing/m/get")).await.0, 404);
    // An event that panics: counted by cause; its instance is gone.
    assert_eq!(get(&c, &public("/test-object/p/panic")).await.0, 500);
    let url = format!("ws://{}/chat-room/r/ws?name=a", host.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    {
        use futures::SinkExt;
        let who = tokio_tungstenite::tungstenite::Message::text("who");
        ws.send(who).await.unwrap();
        assert!(next_text(&mut ws).await.contains("user:a"));
    }

    let metrics = format!("http://{admin}/metrics");
    assert_eq!(c.get(&metrics).send().await.unwrap().status(), 401);
    let wrong = c.get(&metrics).bearer_auth("guess").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let r = c
        .get(&metrics)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(
        value(
            &text,
            r#"dohost_requests_total{binding="counter",status="200"}"#
        ),
        4.0
    );
    assert_eq!(
        value(&text, r#"dohost_requests_total{binding="-",status="404"}"#),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"dohost_requests_total{binding="chat-room",status="101"}"#
        ),
        1.0
    );
    assert!(
        value(
            &text,
            r#"dohost_event_duration_seconds_count{kind="fetch"}"#
        ) >= 5.0
    );
    assert_eq!(
        value(
            &text,
            r#"dohost_event_failures_total{cause="panic",kind="fetch"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, "dohost_instance_builds_total"), 3.0);
    assert_eq!(value(&text, "dohost_live_instances"), 2.0);
    assert_eq!(value(&text, "dohost_websockets_open"), 1.0);
    let messages = |d: &str| {
        value(
            &text,
            &format!(r#"dohost_websocket_messages_total{{direction="{d}"}}"#),
        )
    };
    assert_eq!((messages("in"), messages("out")), (1.0, 1.0));
    assert_eq!(value(&text, "dohost_mailbox_events"), 0.0);
    // Three increments, each its own commit (one at a time), and the room's name.
    assert!(value(&text, "dohost_commit_batch_writes_sum") >= 3.0);
    assert!(value(&text, "dohost_commit_duration_seconds_count") >= 1.0);
    drop(ws);

    // The public port knows nothing of it.
    assert_eq!(get(&c, &public("/metrics")).await.0, 404);
}

/// `--admin` takes an address or `off`; anything else stops start-up with the flag named.
#[test]
fn a_bad_admin_address_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "nowhere",
            "--data",
        ])
        .arg(dir.path())
        .arg(guest("counter"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin \"nowhere\""), "{err}");
}

/// `dohost inspect` (the admin API's CLI client) against a running host, on each backend:
/// the classes, a class's objects a page at a time with their names, an object's entries
/// (JSON values as JSON, others as base64), its alarm; refused without the token, and a
/// clear error for an unknown binding.
async fn inspect_shows_classes_objects_entries_and_alarms(backend: Backend) {
    let dir = backend.data_dir();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let token_flag = token.to_str().unwrap();
    let (host, admin) = with_admin(
        dir.path(),
        &["counter", "test-object"],
        &["--admin-token-file", token_flag],
    );
    let c = client();
    let public = |path: &str| format!("http://{}{path}", host.addr);
    for name in ["alice", "alice", "bob"] {
        get(&c, &public(&format!("/counter/{name}/increment"))).await;
    }
    let raw = c
        .post(public("/test-object/t/put?key=raw"))
        .body(vec![0xFFu8, 0x00, 0x01])
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(
        post(&c, &public("/test-object/t/set-alarm"), "").await.0,
        200
    );

    let inspect = |args: &[&str]| -> serde_json::Value {
        let mut all = vec![
            "inspect",
            "--admin",
            &admin,
            "--admin-token-file",
            token_flag,
        ];
        all.extend_from_slice(args);
        serde_json::from_str(&process::run_dohost(all)).unwrap()
    };
    let classes = inspect(&["classes"]);
    let bindings: Vec<&str> = classes["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["binding"].as_str().unwrap())
        .collect();
    assert_eq!(bindings, ["counter", "test-object"]);

    // Two counters, one per page.
    let first = inspect(&["objects", "counter", "--limit", "1"]);
    let next = first["next"].as_str().expect("a next page").to_string();
    let second = inspect(&["objects", "counter", "--limit", "1", "--after", &next]);
    let mut seen: Vec<(String, String)> = [&first, &second]
        .iter()
        .map(|p| {
            let o = &p["objects"][0];
            (
                o["name"].as_str().unwrap().into(),
                o["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen[0].0, "alice");
    assert_eq!(seen[1].0, "bob");
    let third = inspect(&[
        "objects",
        "counter",
        "--limit",
        "1",
        "--after",
        &seen.iter().map(|s| s.1.clone()).max().unwrap(),
    ]);
    assert_eq!(third["objects"], serde_json::json!([]));
    assert_eq!(third["next"], serde_json::Value::Null);

    let entries = inspect(&["entries", "counter", &seen[0].1]);
    assert_eq!(
        entries["entries"],
        serde_json::json!([{"key": "value", "json": 2}])
    );
    let t = inspect(&["objects", "test-object"])["objects"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let raw = inspect(&["entries", "test-object", &t, "--prefix", "ra"]);
    assert_eq!(
        raw["entries"],
        serde_json::json!([{"key": "raw", "base64": "/wAB"}])
    );
    let alarm = inspect(&["alarm", "test-object", &t]);
    assert!(alarm["alarm"].as_u64().is_some(), "{alarm}");
    // Storage's sizes per binding, among the metrics: two counters' `value`s, at least.
    let metrics = c
        .get(format!("http://{admin}/metrics"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(value(&metrics, r#"dohost_storage_bytes{binding="counter"}"#) >= 10.0);

    // Without the token; an unknown binding.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["inspect", "--admin", &admin, "classes"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args([
            "inspect",
            "--admin",
            &admin,
            "--admin-token-file",
            token_flag,
        ])
        .args(["objects", "nothing"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no binding named \"nothing\""),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

/// `dohost inspect sql` runs an operator's query on an object's database as one of its
/// events: rows come back (and the metrics count the statements and pages), a write is
/// refused and changes nothing.
async fn an_operator_reads_an_object_s_database(backend: Backend) {
    let dir = backend.data_dir();
    let (host, admin) = with_admin(dir.path(), &["todos"], &[]);
    let c = client();
    let public = |path: &str| format!("http://{}{path}", host.addr);
    for title in ["milk", "bread"] {
        assert_eq!(post(&c, &public("/todos/list/todos"), title).await.0, 201);
    }
    let listed: serde_json::Value = serde_json::from_str(&process::run_dohost([
        "inspect", "--admin", &admin, "objects", "todos",
    ]))
    .unwrap();
    let id = listed["objects"][0]["id"].as_str().unwrap().to_string();
    let rows: serde_json::Value = serde_json::from_str(&process::run_dohost([
        "inspect",
        "--admin",
        &admin,
        "sql",
        "todos",
        &id,
        "SELECT title, done FROM todos ORDER BY id",
    ]))
    .unwrap();
    assert_eq!(
        rows,
        serde_json::json!({"columns": ["title", "done"], "rows": [["milk", 0], ["bread", 0]]})
    );
    let said = process::dohost_refused([
        "inspect",
        "--admin",
        &admin,
        "sql",
        "todos",
        &id,
        "DELETE FROM todos",
    ]);
    assert!(said.contains("may only read"), "{said}");
    assert_eq!(
        get(&c, &public("/todos/list/count")).await,
        (200, "2".into())
    );
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(value(&text, "dohost_sql_statements_total") >= 4.0, "{text}");
    assert!(
        value(&text, "dohost_sql_pages_written_total") >= 2.0,
        "{text}"
    );
    host.kill();
}

on_both_backends!(
    inspect_shows_classes_objects_entries_and_alarms,
    edits_are_events_of_the_object,
    an_operator_reads_an_object_s_database
);

/// Edits through the admin API are events of the object: a value an operator sets while
/// the counter is being incremented loses no increment on either side (the increments
/// before it count from 1, those after from the new value, and the last is what stays);
/// the alarm can be set, run now and deleted; a bad edit is refused with the limit's
/// message; evict answers, and sockets lists WebSockets and streams.
async fn edits_are_events_of_the_object(backend: Backend) {
    let dir = backend.data_dir();
    let (host, admin) = with_admin(
        dir.path(),
        &["counter", "test-object", "chat-room", "notifications"],
        &["--max-key-bytes", "16"],
    );
    let c = client();
    let public = |path: &str| format!("http://{}{path}", host.addr);
    assert_eq!(get(&c, &public("/counter/race/increment")).await.1, "1");
    let inspect = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["inspect", "--admin", &admin];
        all.extend_from_slice(args);
        serde_json::from_str(&process::run_dohost(all)).unwrap()
    };
    // An object that wrote nothing yet has its name recorded just after its first answer
    // (the answer does not wait for it): wait until it is listed.
    let id_of = |binding: &str| {
        for _ in 0..600 {
            if let Some(id) = inspect(&["objects", binding])["objects"][0]["id"].as_str() {
                return id.to_string();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no object of {binding} listed");
    };
    let race = id_of("counter");
    const N: u64 = 100;
    let increments = {
        let (c, url) = (c.clone(), public("/counter/race/increment"));
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..N {
                answers.push(get(&c, &url).await.1.parse::<u64>().unwrap());
            }
            answers
        })
    };
    let admin_for_edit = admin.clone();
    let race_for_edit = race.clone();
    tokio::task::spawn_blocking(move || {
        process::run_dohost([
            "inspect",
            "--admin",
            &admin_for_edit,
            "put",
            "counter",
            &race_for_edit,
            "value",
            "1000",
        ])
    })
    .await
    .unwrap();
    let mut answers = increments.await.unwrap();
    answers.sort();
    let (before, after): (Vec<u64>, Vec<u64>) = answers.iter().partition(|v| **v <= 1000);
    assert_eq!(before, (2..2 + before.len() as u64).collect::<Vec<_>>());
    assert_eq!(after, (1001..1001 + after.len() as u64).collect::<Vec<_>>());
    let last = if after.is_empty() {
        1000
    } else {
        1000 + after.len() as u64
    };
    assert_eq!(
        get(&c, &public("/counter/race/get")).await.1,
        last.to_string()
    );

    // The alarm: far away, then run now (the test object records its name when it runs).
    assert_eq!(post(&c, &public("/test-object/t/log"), "").await.0, 200);
    let t = id_of("test-object");
    inspect(&["set-alarm", "test-object", &t, "99999999999999"]);
    assert_eq!(
        inspect(&["alarm", "test-object", &t])["alarm"],
        99999999999999u64
    );
    inspect(&["run-alarm", "test-object", &t]);
    wait_until("the alarm ran", || async {
        get(&c, &public("/test-object/t/get?key=alarm-name"))
            .await
            .0
            == 200
    })
    .await;
    inspect(&["set-alarm", "test-object", &t, "99999999999999"]);
    inspect(&["delete-alarm", "test-object", &t]);
    assert_eq!(
        inspect(&["alarm", "test-object", &t])["alarm"],
        serde_json::Value::Null
    );

    // A key over --max-key-bytes is refused with the limit's own message; nothing changed.
    let long = "k".repeat(17);
    let err = process::dohost_refused([
        "inspect",
        "--admin",
        &admin,
        "put",
        "test-object",
        &t,
        &long,
        "1",
    ]);
    assert!(err.contains("400") && err.contains("KeyTooLarge"), "{err}");
    inspect(&["delete", "test-object", &t, "alarm-name"]);
    assert_eq!(
        get(&c, &public("/test-object/t/get?key=alarm-name"))
            .await
            .0,
        404
    );

    // Sockets and eviction.
    let (_ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat-room/r/ws?name=zoe", host.addr))
            .await
            .unwrap();
    let room = id_of("chat-room");
    let sockets = inspect(&["sockets", "chat-room", &room]);
    assert_eq!(
        sockets["sockets"][0]["tags"],
        serde_json::json!(["user:zoe"])
    );
    let _subscribed = c
        .get(public("/notifications/feed/subscribe?topic=news"))
        .send()
        .await
        .unwrap();
    let feed = id_of("notifications");
    let streams = inspect(&["sockets", "notifications", &feed]);
    assert_eq!(
        streams["streams"][0]["tags"],
        serde_json::json!(["topic:news"])
    );
    assert_eq!(inspect(&["evict", "counter", &race])["evicted"], true);
    assert_eq!(
        get(&c, &public("/counter/race/get")).await.1,
        last.to_string()
    );
    inspect(&["delete-all", "counter", &race]);
    assert_eq!(get(&c, &public("/counter/race/get")).await.1, "0");
}

/// `dohost backup` of a node under increments, then `dohost restore` into an empty
/// directory: a node started there reads a value that was acknowledged — at least every
/// increment answered before the backup began, at most those sent before it ended — and
/// an object's SQL rows written before the backup (not one added after it).
#[tokio::test]
async fn a_backup_under_writes_restores_an_acknowledged_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (host, admin) = with_admin(&dir.path().join("data"), &["counter", "todos"], &[]);
    let c = client();
    let todos = |addr: &str| format!("http://{addr}/todos/backed-up/todos");
    for title in ["milk", "bread"] {
        assert_eq!(post(&c, &todos(&host.addr), title).await.0, 201);
    }
    let url = format!("http://{}/counter/b/increment", host.addr);
    // (answer, sent, received), one increment at a time until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (c, stop) = (c.clone(), stop.clone());
        tokio::spawn(async move {
            let mut log = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let sent = std::time::Instant::now();
                let value: u64 = get(&c, &url).await.1.parse().unwrap();
                log.push((value, sent, std::time::Instant::now()));
            }
            log
        })
    };
    wait_until("some increments answered", || async {
        get(&c, &format!("http://{}/counter/b/get", host.addr))
            .await
            .1
            .parse::<u64>()
            .unwrap()
            >= 50
    })
    .await;
    let file = dir.path().join("node.backup");
    let started = std::time::Instant::now();
    let saved = {
        let (admin, file) = (admin.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            process::run_dohost([
                "backup".as_ref(),
                "--admin".as_ref(),
                admin.as_ref(),
                "--to".as_ref(),
                file.as_os_str(),
            ])
        })
        .await
        .unwrap()
    };
    let ended = std::time::Instant::now();
    assert!(saved.contains("written to"), "{saved}");
    assert_eq!(post(&c, &todos(&host.addr), "after").await.0, 201);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a backup is readable by its user only");
    }
    let value_now = || async {
        get(&c, &format!("http://{}/counter/b/get", host.addr))
            .await
            .1
            .parse::<u64>()
            .unwrap()
    };
    let at_end = value_now().await;
    wait_until("more increments after the backup", || async {
        value_now().await > at_end + 10
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let log = writer.await.unwrap();
    let lower = log
        .iter()
        .filter(|e| e.2 < started)
        .map(|e| e.0)
        .max()
        .unwrap();
    let upper = log
        .iter()
        .filter(|e| e.1 < ended)
        .map(|e| e.0)
        .max()
        .unwrap();
    let total = log.iter().map(|e| e.0).max().unwrap();
    assert!(
        total > upper,
        "increments went on during and after the backup"
    );

    // Not over an existing file; not into a directory that has a database.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["backup", "--admin", &admin, "--to"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let occupied = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&occupied.stderr).contains("already holds a database"),
        "{}",
        String::from_utf8_lossy(&occupied.stderr)
    );

    let restored = dir.path().join("restored");
    process::run_dohost([
        "restore".as_ref(),
        "--from".as_ref(),
        file.as_os_str(),
        "--data".as_ref(),
        restored.as_os_str(),
    ]);
    let copy = HostProcess::spawn(&restored, &["counter", "todos"], &[]);
    let (status, listed) = get(&c, &todos(&copy.addr)).await;
    assert_eq!(status, 200, "{listed}");
    let titles: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&listed)
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        titles,
        ["bread", "milk"],
        "the SQL rows from before the backup"
    );
    let value: u64 = get(&c, &format!("http://{}/counter/b/get", copy.addr))
        .await
        .1
        .parse()
        .unwrap();
    assert!(
        (lower..=upper).contains(&value),
        "restored {value}; acknowledged before the backup {lower}, sent before its end {upper}"
    );
}

/// On PostgreSQL the backup points to PostgreSQL's own tools.
#[tokio::test]
async fn a_backup_on_postgres_names_its_tools() {
    let dir = Backend::Postgres.data_dir();
    let (_host, admin) = with_admin(dir.path(), &["counter"], &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["backup", "--admin", &admin, "--to"])
        .arg(dir.path().join("x.backup"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pg_dump"), "{err}");
    assert!(!dir.path().join("x.backup").exists());
}

/// `dohost deploy` under load: a broken component is refused with the reason and the old
/// code serves on; the counter's next version then takes over without a request failing
/// (every increment answered, +1 until the switch and +10 after, never back); a chat
/// room's sockets stay connected across a deploy of its class.
#[tokio::test]
async fn deploys_change_code_without_dropping_requests_or_sockets() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let (host, admin) = with_admin(&dir.path().join("data"), &["counter", "chat-room"], &[]);
    let c = client();
    let public = |path: &str| format!("http://{}{path}", host.addr);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (c, stop, url) = (c.clone(), stop.clone(), public("/counter/d/increment"));
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                answers.push(get(&c, &url).await);
            }
            answers
        })
    };
    let ws = |name: &str| {
        let url = format!("ws://{}/chat-room/r/ws?name={name}", host.addr);
        async move { tokio_tungstenite::connect_async(url).await.unwrap().0 }
    };
    let (mut alice, mut bob) = (ws("alice").await, ws("bob").await);
    let deploy = |binding: &str, file: std::path::PathBuf| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
            .args(["deploy", binding])
            .arg(file)
            .args(["--admin", &admin])
            .output()
            .unwrap()
    };

    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0not really").unwrap();
    let refused = deploy("counter", broken);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("400") && err.contains("the new code was refused"),
        "{err}"
    );
    // The refusal names the class, not a file in the data directory.
    assert!(
        !err.contains(&*dir.path().to_string_lossy()) && err.contains("\"counter\""),
        "{err}"
    );
    assert_eq!(get(&c, &public("/counter/d/version")).await.0, 404);

    let out = deploy("counter", guest("counter-v2"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"version\": 1"));
    assert_eq!(
        get(&c, &public("/counter/d/version")).await,
        (200, "2".into())
    );
    let before = get(&c, &public("/counter/d/get"))
        .await
        .1
        .parse::<i64>()
        .unwrap();
    wait_until("increments on the new code", || async {
        get(&c, &public("/counter/d/get"))
            .await
            .1
            .parse::<i64>()
            .unwrap()
            >= before + 50
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = load.await.unwrap();
    let values: Vec<i64> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "a request failed across the deploy: {body}");
            body.parse().unwrap()
        })
        .collect();
    let steps: Vec<i64> = values.windows(2).map(|w| w[1] - w[0]).collect();
    let switch = steps
        .iter()
        .position(|s| *s == 10)
        .expect("the new code ran");
    assert!(steps[..switch].iter().all(|s| *s == 1), "{steps:?}");
    assert!(steps[switch..].iter().all(|s| *s == 10), "{steps:?}");

    // The room's class is deployed again (same code, a new version): its sockets stay.
    let out = deploy("chat-room", guest("chat-room"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    alice.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_text(&mut bob).await, "alice: still here");
}

/// SIGHUP deploys the classes whose component files changed: nothing when none did, a
/// broken file is refused (logged) with the old code serving on, the counter's next
/// version is taken up in place, its stored value kept.
#[tokio::test]
async fn sighup_deploys_changed_component_files() {
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).unwrap();
    let file = code.join("counter.wasm");
    std::fs::copy(guest("counter"), &file).unwrap();
    let host = HostProcess::spawn(&dir.path().join("data"), &[], &[file.to_str().unwrap()]);
    let c = client();
    let public = |path: &str| format!("http://{}{path}", host.addr);
    let hup = || {
        let pid = host.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    assert_eq!(get(&c, &public("/counter/h/increment")).await.1, "1");
    hup();
    wait_until("the reload looked", || async {
        host.log().contains("SIGHUP: no component file changed")
    })
    .await;
    std::fs::write(&file, b"\0asm\x0d\0\x01\0broken").unwrap();
    hup();
    wait_until("the broken file was refused", || async {
        host.log().contains("SIGHUP: the new code was refused")
    })
    .await;
    assert_eq!(get(&c, &public("/counter/h/version")).await.0, 404);
    assert_eq!(get(&c, &public("/counter/h/increment")).await.1, "2");
    std::fs::copy(guest("counter-v2"), &file).unwrap();
    hup();
    wait_until("the new version serves", || async {
        get(&c, &public("/counter/h/version")).await == (200, "2".into())
    })
    .await;
    assert_eq!(get(&c, &public("/counter/h/increment")).await.1, "12");
}

/// `--max-queued-events` at its edge: behind an event that spins, two requests queue for
/// the object and the third is refused at once with 503 and `Retry-After`; the queued
/// ones run once the spinning request's client leaves (which stops its event); other
/// objects are not affected. The loop ends only then, however slow the machine: its CPU
/// limit is ten minutes.
#[tokio::test]
async fn an_object_with_a_full_mailbox_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (host, admin) = with_admin(
        &dir.path().join("data"),
        &["test-object"],
        &["--max-queued-events", "2", "--cpu-ms", "600000"],
    );
    let c = client();
    let public = |path: &str| format!("http://{}{path}", host.addr);
    let spinning = tokio::spawn({
        let (c, url) = (c.clone(), public("/test-object/busy/loop"));
        async move { get(&c, &url).await.0 }
    });
    let metrics = format!("http://{admin}/metrics");
    // The spinning event has started: its instance is built and nothing waits.
    wait_until("the loop runs", || async {
        let text = get(&c, &metrics).await.1;
        value(&text, "dohost_instance_builds_total") >= 1.0
            && value(&text, "dohost_mailbox_events") == 0.0
    })
    .await;
    // Two requests, one at a time: each is in the mailbox before the next is sent.
    let mut waiting = Vec::new();
    for i in 0..2 {
        let (sender, url) = (
            c.clone(),
            public(&format!("/test-object/busy/instance?n={i}")),
        );
        waiting.push(tokio::spawn(async move { get(&sender, &url).await }));
        wait_until("the request is queued", || async {
            let text = get(&c, &metrics).await.1;
            value(&text, "dohost_mailbox_events") >= (i + 1) as f64
        })
        .await;
    }
    let refused = c
        .get(public("/test-object/busy/instance"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = refused.text().await.unwrap();
    assert!(body.contains("max_queued_events"), "{body}");
    // Another object is served meanwhile.
    assert_eq!(get(&c, &public("/test-object/other/instance")).await.0, 200);
    // Its client leaves: the connection closes and the loop stops.
    spinning.abort();
    for w in waiting {
        let (status, body) = w.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

/// `request` written as is to `addr` (it must ask the server to close); the answer as text.
async fn raw(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Guards against a web page redeploying a class or reading the admin API: a cross-origin
/// "simple" request (text/plain, any Origin) is refused, and so is any Host that is not an
/// IP address, localhost or an `--admin-host` name (DNS rebinding), without naming the data
/// directory; the operator's own clients are unaffected.
#[tokio::test]
async fn a_web_page_can_neither_change_nor_read_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (host, admin) = with_admin(&data, &["counter"], &["--admin-host", "Admin.Test"]);
    let c = client();
    wait_until("the admin listener answers", || async {
        c.get(format!("http://{admin}/classes"))
            .send()
            .await
            .is_ok()
    })
    .await;
    let wasm = std::fs::read(guest("counter-v2")).unwrap();
    let deploy = |headers: &str| {
        let mut r = format!(
            "POST /classes/counter/deploy HTTP/1.1\r\nHost: {admin}\r\n{headers}\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            wasm.len()
        )
        .into_bytes();
        r.extend_from_slice(&wasm);
        r
    };
    let page = deploy("Origin: http://attacker.example\r\nContent-Type: text/plain\r\n");
    let answer = raw(&admin, &page).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("another site"), "{answer}");
    let form = deploy("Content-Type: application/x-www-form-urlencoded\r\n");
    let answer = raw(&admin, &form).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let fetched = deploy("Sec-Fetch-Site: cross-site\r\nContent-Type: application/wasm\r\n");
    assert!(raw(&admin, &fetched).await.starts_with("HTTP/1.1 403"));
    let public = format!("http://{}/counter/d/version", host.addr);
    assert_eq!(
        get(&c, &public).await.0,
        404,
        "the class still runs its old code"
    );

    for path in ["/classes", "/backup", "/"] {
        let rebound = format!(
            "GET {path} HTTP/1.1\r\nHost: attacker.example:8788\r\nConnection: close\r\n\r\n"
        );
        let answer = raw(&admin, rebound.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{path}: {answer}");
        assert!(answer.contains("--admin-host attacker.example"), "{answer}");
        assert!(!answer.contains(&*data.to_string_lossy()), "{answer}");
    }
    for name in ["localhost", "admin.test", "127.0.0.1"] {
        let port = admin.rsplit_once(':').unwrap().1;
        let read =
            format!("GET /classes HTTP/1.1\r\nHost: {name}:{port}\r\nConnection: close\r\n\r\n");
        let answer = raw(&admin, read.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{name}: {answer}");
    }
    // The inspector's own requests (same origin, a non-simple type) still change things.
    let own = deploy(&format!(
        "Origin: http://{admin}\r\nSec-Fetch-Site: same-origin\r\n\
         Content-Type: application/octet-stream\r\n"
    ));
    let answer = raw(&admin, &own).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(get(&c, &public).await, (200, "2".into()));
}

/// The admin router of an in-process host, called without a listener: an answer's body
/// is read only when the test reads it.
fn admin_router(host: &TestHost) -> axum::Router {
    dohost::admin::router(host.runtime().clone(), dohost::admin::Access::default())
}

async fn call(
    admin: &axum::Router,
    mut req: axum::http::Request<axum::body::Body>,
) -> axum::response::Response {
    use tower::ServiceExt;
    // As a client over the network would (the listener refuses a request without one).
    req.headers_mut()
        .entry(axum::http::header::HOST)
        .or_insert(axum::http::HeaderValue::from_static("127.0.0.1"));
    admin.clone().oneshot(req).await.unwrap()
}

async fn text_of(answer: axum::response::Response) -> String {
    use http_body_util::BodyExt;
    let bytes = answer.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Guards against backups copied into the system's temporary directory, readable by every
/// user, as many at once as asked for: the copy is written beside the data with mode 0600
/// (seen through the download's open file, which has left the directory already), and a
/// second backup while the first downloads is refused 503 with `Retry-After`, without
/// naming the data directory; once the first download is done, the next runs.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn backups_are_private_beside_the_data_and_one_at_a_time() {
    use axum::body::Body;
    use axum::http::Request;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_observed(&["counter"], dir.path(), dohost::Limits::default()).await;
    let c = client();
    assert_eq!(get(&c, &host.url("/counter/b/increment")).await.1, "1");
    let admin = admin_router(&host);
    let backup = || Request::get("/backup").body(Body::empty()).unwrap();
    let first = call(&admin, backup()).await;
    assert_eq!(first.status(), 200);
    let data = std::fs::canonicalize(&host.data).unwrap();
    let prefix = format!("{}/dohost.redb.backup-", data.display());
    let copies: Vec<std::path::PathBuf> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| {
            let fd = fd.ok()?.path();
            let target = std::fs::read_link(&fd).ok()?;
            target.to_str()?.starts_with(&prefix).then_some(fd)
        })
        .collect();
    assert_eq!(copies.len(), 1, "one copy beside the data, held open");
    let mode = std::fs::metadata(&copies[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the copy is readable by its user only");
    assert!(
        std::fs::read_dir(&data).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("backup")),
        "the copy has left the directory already"
    );

    let second = call(&admin, backup()).await;
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "5");
    let why = text_of(second).await;
    assert!(why.contains("a backup is running already"), "{why}");
    assert!(!why.contains(&*dir.path().to_string_lossy()), "{why}");

    assert!(!text_of(first).await.is_empty());
    assert_eq!(call(&admin, backup()).await.status(), 200);
    drop(admin);
    host.stop().await;
}

/// Guards against deploys without bound (each holds up to 256 MiB of component, and its
/// compilation, in memory): while `MAX_CONCURRENT_DEPLOYS` deploys are still sending their
/// bodies, one more is refused 503 with `Retry-After` before its body is read; once they
/// end, a deploy runs again (this one is refused for what it is: not a component).
#[tokio::test]
async fn deploys_past_the_bound_are_refused_until_one_ends() {
    use axum::body::Body;
    use axum::http::Request;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_observed(&["counter"], dir.path(), dohost::Limits::default()).await;
    let admin = admin_router(&host);
    fn deploy(body: Body) -> Request<Body> {
        Request::post("/classes/counter/deploy").body(body).unwrap()
    }
    let garbage = || deploy(Body::from("not a component"));
    // A deploy whose body never ends, holding its permit until aborted.
    let endless = || {
        let admin = admin.clone();
        let body = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
        tokio::spawn(async move { call(&admin, deploy(Body::from_stream(body))).await })
    };
    let mut deploying: Vec<_> = (0..dohost::admin::MAX_CONCURRENT_DEPLOYS)
        .map(|_| endless())
        .collect();
    // A probe holds a permit for a moment too, so an endless deploy may be refused in its
    // place: it is started again. A probe refused while every endless deploy runs was
    // refused for them.
    let mut refused = None;
    for _ in 0..6000 {
        for d in deploying.iter_mut().filter(|d| d.is_finished()) {
            *d = endless();
        }
        let probe = call(&admin, garbage()).await;
        if probe.status() == 503 && deploying.iter().all(|d| !d.is_finished()) {
            refused = Some(probe);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let refused = refused.expect("a deploy past the bound is refused");
    assert_eq!(refused.headers()["retry-after"], "5");
    let why = text_of(refused).await;
    assert!(why.contains("deploys are running already"), "{why}");
    for d in deploying {
        d.abort();
        let _ = d.await;
    }
    assert_eq!(call(&admin, garbage()).await.status(), 400);
    drop(admin);
    host.stop().await;
}

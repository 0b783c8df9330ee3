//! Objects' SQL end to end, through real HTTP and real components: statements commit with
//! the event (a trap rolls them back, a storage transaction covers SQL and key-value writes
//! together), acknowledged rows survive SIGKILL of the real binary on both backends, a long
//! query is stopped by the event's CPU limit, and a class declared with `new_classes` has no
//! database. (The rules at their edges are unit tests of `objstore::sql`; the model test
//! against a plain SQLite is `sql_model.rs`.)

mod common;
use common::process::HostProcess;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn sql(c: &reqwest::Client, host: &TestHost, object: &str, query: &str) -> (u16, Value) {
    let (status, body) = post(
        c,
        &host.url(&format!("/test-object/{object}/sql")),
        query.to_string(),
    )
    .await;
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, v)
}

async fn statements_commit_with_their_event(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let c = client();
    let (status, v) = sql(
        &c,
        &host,
        "a",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('one')",
    )
    .await;
    assert_eq!((status, &v["written"]), (200, &json!(1)), "{v}");
    // A trap after a statement discards it with the instance.
    let (status, _) = post(
        &c,
        &host.url("/test-object/a/sql-then-panic"),
        "INSERT INTO t (v) VALUES ('lost')",
    )
    .await;
    assert_eq!(status, 500);
    let (_, v) = sql(&c, &host, "a", "SELECT v FROM t ORDER BY id").await;
    assert_eq!(v["rows"], json!([["one"]]));
    // One storage transaction covers a SQL insert and a key-value put: both or neither.
    let (_, kept) = get(&c, &host.url("/test-object/a/sql-and-kv?key=k1")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&kept).unwrap(),
        json!({"rows": 1, "value": "with its row"})
    );
    let (_, undone) = get(&c, &host.url("/test-object/a/sql-and-kv?key=k2&rollback=1")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&undone).unwrap(),
        json!({"rows": 0, "value": null})
    );
    // A typed error for SQL an object may not run, never a trap.
    let (status, v) = sql(&c, &host, "a", "BEGIN").await;
    assert_eq!((status, &v["code"]), (400, &json!("NotAuthorized")), "{v}");
    // Objects do not share databases; a restarted host reads the rows back.
    let (_, v) = sql(&c, &host, "b", "SELECT count(*) FROM sqlite_master").await;
    assert_eq!(v["rows"], json!([[0]]));
    host.stop().await;
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let (_, v) = sql(&c, &host, "a", "SELECT v FROM t ORDER BY id").await;
    assert_eq!(v["rows"], json!([["one"]]));
    let (_, v) = sql(&c, &host, "a", "SELECT k FROM pairs").await;
    assert_eq!(v["rows"], json!([["k1"]]));
    host.stop().await;
}

async fn acknowledged_rows_survive_sigkill(backend: Backend) {
    let dir = backend.data_dir();
    let data = dir.path().join("data");
    let host = HostProcess::spawn(&data, &["todos"], &[]);
    let c = client();
    let url = format!("http://{}/todos/crash/todos", host.addr);
    // 8 writers insert rows until the host dies, keeping every id that was answered.
    let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (c, url, acked) = (c.clone(), url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let r = match c.post(&url).body(format!("w{w}-{n}")).send().await {
                    Ok(r) if r.status() == 201 => r,
                    _ => return,
                };
                let Ok(body) = r.text().await else { return };
                let v: Value = serde_json::from_str(&body).unwrap();
                acked.lock().unwrap().insert(v["id"].as_i64().unwrap());
            }
        }));
    }
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    host.kill();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let host = HostProcess::spawn(&data, &["todos"], &[]);
    let (status, body) = get(&c, &format!("http://{}/todos/crash/todos", host.addr)).await;
    assert_eq!(status, 200, "{body}");
    let rows: Vec<Value> = serde_json::from_str(&body).unwrap();
    let found: BTreeSet<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let (_, count) = get(&c, &format!("http://{}/todos/crash/count", host.addr)).await;
    host.kill();
    let missing: Vec<_> = acked.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "acknowledged rows lost in the crash: {missing:?}"
    );
    assert_eq!(count.parse::<usize>().unwrap(), found.len());
}

on_both_backends!(
    statements_commit_with_their_event,
    acknowledged_rows_survive_sigkill
);

#[tokio::test]
async fn a_long_query_is_stopped_by_the_event_cpu_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = dohost::Limits {
        cpu_per_event: Duration::from_millis(200),
        ..Default::default()
    };
    let host = TestHost::start_with(&["test-object"], dir.path(), limits).await;
    let c = client();
    let started = std::time::Instant::now();
    let (status, v) = sql(
        &c,
        &host,
        "spin",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    )
    .await;
    // The query is stopped and the event with it: the CPU limit, not a hang.
    assert_eq!(status, 500, "{v}");
    assert!(v.to_string().contains("CPU"), "{v}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let (status, v) = sql(&c, &host, "spin", "SELECT 1").await;
    assert_eq!((status, &v["rows"]), (200, &json!([[1]])));
    host.stop().await;
}

#[tokio::test]
async fn a_class_declared_with_new_classes_has_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangler.json");
    let config = json!({
        "name": "w",
        "durable_objects": { "bindings": [
            { "name": "KV", "class_name": "Kv" },
            { "name": "SQL", "class_name": "Sq" },
        ] },
        "migrations": [ { "tag": "v1", "new_classes": ["Kv"], "new_sqlite_classes": ["Sq"] } ],
        "dohost": { "components": { "Kv": guest("test-object"), "Sq": guest("test-object") } },
    });
    std::fs::write(&path, config.to_string()).unwrap();
    let config = dohost::config::file::load(&path).unwrap();
    let host = TestHost::start_config(config).await;
    let c = client();
    let (status, body) = post(&c, &host.url("/KV/a/sql"), "SELECT 1").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &v["code"]), (400, &json!("SqlDisabled")), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("new_sqlite_classes"),
        "{v}"
    );
    let (status, body) = post(&c, &host.url("/SQL/a/sql"), "SELECT 1").await;
    assert_eq!(status, 200, "{body}");
    host.stop().await;
}

/// Two hosts on one PostgreSQL database by mistake: the second fences the first, whose next
/// SQL write is refused (503) and absent; the second serves every acknowledged row.
#[tokio::test]
async fn a_fenced_host_s_sql_writes_are_refused_and_absent() {
    let dir = Backend::Postgres.data_dir();
    let mut first = HostProcess::spawn(&dir.path().join("data"), &["todos"], &[]);
    let c = client();
    let at = |h: &HostProcess, p: &str| format!("http://{}/todos/shared{p}", h.addr);
    for title in ["one", "two", "three"] {
        let (status, body) = post(&c, &at(&first, "/todos"), title).await;
        assert_eq!(status, 201, "{body}");
    }
    let second = HostProcess::spawn(&dir.path().join("data2"), &["todos"], &[]);
    let (status, body) = post(&c, &at(&first, "/todos"), "fenced").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        !first.exited().await.success(),
        "a fenced host exits non-zero"
    );
    let (_, body) = get(&c, &at(&second, "/todos")).await;
    let rows: Vec<Value> = serde_json::from_str(&body).unwrap();
    let titles: Vec<&str> = rows.iter().map(|r| r["title"].as_str().unwrap()).collect();
    assert_eq!(
        titles,
        ["three", "two", "one"],
        "newest first, the fenced one absent"
    );
    let (status, body) = post(&c, &at(&second, "/todos"), "four").await;
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], 4);
    second.kill();
}

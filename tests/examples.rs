//! The README's quick start, run as printed: every line of its second `sh` block, in
//! order, against the objects `make run` serves, with the outputs its comments promise; and
//! the examples whose routes the quick start does not cover (the SQL to-do list).

mod common;
use common::*;
use std::process::Stdio;

/// What `make run` serves (the Makefile's EXAMPLES).
const EXAMPLES: [&str; 9] = [
    "counter",
    "storage-demo",
    "bank",
    "alarm",
    "rate-limiter",
    "lock",
    "chat-room",
    "connection-pool",
    "todos",
];

/// The commands of the quick start's "in another terminal" block.
fn quick_start_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("## Quick start")
        .nth(1)
        .expect("a Quick start section");
    let block = section
        .split("```sh")
        .nth(2)
        .expect("a second sh block in the quick start")
        .split("```")
        .next()
        .unwrap();
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A command line split from its comment.
fn split_comment(line: &str) -> (&str, &str) {
    match line.split_once("  #") {
        Some((command, comment)) => (command.trim(), comment.trim()),
        None => (line, ""),
    }
}

fn shell(command: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("bash");
    c.arg("-c")
        .arg(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c
}

/// Guards against a quick start that fails as printed (the storage demo's `seed` answered
/// 400 `Decode` after an earlier line stored a map, and kept half its writes).
#[tokio::test]
async fn the_readme_quick_start_works_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&EXAMPLES, dir.path()).await;
    let here = host.addr.to_string();
    let mut background = Vec::new();
    let mut ran = 0;
    for line in quick_start_lines() {
        let (command, comment) = split_comment(&line);
        let command = command.replace("localhost:8787", &here);
        if let Some(command) = command.strip_suffix('&') {
            let child = shell(command).spawn().expect("bash");
            background.push((line.clone(), child, comment.to_string()));
            continue;
        }
        let out = shell(&command).output().await.expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(out.status.success(), "{line}: exit {:?}", out.status);
        ran += 1;
        let expected = comment.split([' ', ',', '(']).next().unwrap_or_default();
        if command.contains(" -i ") {
            assert!(
                stdout.contains(&format!(" {expected} ")),
                "{line}: {stdout}"
            );
        } else if expected.parse::<i64>().is_ok() && !command.contains('|') {
            assert_eq!(stdout.lines().last(), Some(expected), "{line}");
        }
        assert!(!stdout.contains("Decode"), "{line}: {stdout}");
        if command.contains("/seed") {
            let v: serde_json::Value =
                serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{line}: {e}: {stdout}"));
            assert_eq!(v["list_filtered"][0][0], "user:1", "{stdout}");
        }
        if command.contains("uniq -c") {
            assert!(stdout.contains("100 OK"), "{line}: {stdout}");
            assert!(stdout.contains("1 Rate limit exceeded"), "{line}: {stdout}");
        }
        if command.contains("/lock/l/") {
            assert!(
                ["Locked", "Unlocked"].contains(&stdout.as_str()),
                "{line}: {stdout}"
            );
        }
    }
    for (line, child, _) in background {
        let out = child.wait_with_output().await.expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(stdout, "Locked", "{line}");
    }
    assert!(ran >= 15, "only {ran} lines ran: is the block still there?");
    host.stop().await;
}

/// A request with a method reqwest has no shorthand for here, answering (status, body text).
async fn send(c: &reqwest::Client, method: &str, url: &str, body: &str) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = c
        .request(method, url)
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The body parsed as JSON, or the test fails naming it.
fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The SQL to-do list (guests/todos): every route's status and body, 404s for rows that are
/// not there, 400 for bad input, one list per object, and the list (and its AUTOINCREMENT
/// ids, never reused) across a restart.
#[tokio::test]
async fn the_todos_example_serves_every_route_from_sql() {
    use serde_json::json as j;
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["todos"], dir.path()).await;
    let c = client();
    let u = |host: &TestHost, p: &str| host.url(&format!("/todos/mine{p}"));
    assert_eq!(get(&c, &u(&host, "/count")).await, (200, "0".into()));
    assert_eq!(get(&c, &u(&host, "/todos")).await, (200, "[]".into()));

    let (status, body) = post(&c, &u(&host, "/todos"), "buy milk").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        json(&body),
        j!({"id": 1, "title": "buy milk", "done": false})
    );
    let (status, body) = post(&c, &u(&host, "/todos"), "write tests").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        json(&body),
        j!({"id": 2, "title": "write tests", "done": false})
    );

    let (status, body) = get(&c, &u(&host, "/todos/1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body),
        j!({"id": 1, "title": "buy milk", "done": false})
    );
    let (status, body) = get(&c, &u(&host, "/todos")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body),
        j!([
            {"id": 2, "title": "write tests", "done": false},
            {"id": 1, "title": "buy milk", "done": false},
        ]),
        "newest first"
    );
    assert_eq!(get(&c, &u(&host, "/count")).await, (200, "2".into()));

    let (status, body) = send(&c, "PATCH", &u(&host, "/todos/1"), r#"{"done":true}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body),
        j!({"id": 1, "title": "buy milk", "done": true})
    );
    let (_, body) = get(&c, &u(&host, "/todos/1")).await;
    assert_eq!(json(&body)["done"], true, "the change is stored: {body}");

    let (status, body) = send(&c, "DELETE", &u(&host, "/todos/2"), "").await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(get(&c, &u(&host, "/count")).await, (200, "1".into()));

    // Rows that are not there, and input that makes no sense.
    assert_eq!(get(&c, &u(&host, "/todos/2")).await.0, 404);
    assert_eq!(send(&c, "DELETE", &u(&host, "/todos/2"), "").await.0, 404);
    assert_eq!(
        send(&c, "PATCH", &u(&host, "/todos/99"), r#"{"done":true}"#)
            .await
            .0,
        404
    );
    assert_eq!(
        send(&c, "PATCH", &u(&host, "/todos/1"), "not json").await.0,
        400
    );
    assert_eq!(get(&c, &u(&host, "/todos/x")).await.0, 400);
    assert_eq!(post(&c, &u(&host, "/todos"), "").await.0, 400);
    assert_eq!(get(&c, &u(&host, "/count")).await.1, "1", "nothing added");

    // Each object is a list of its own.
    assert_eq!(
        get(&c, &host.url("/todos/theirs/count")).await,
        (200, "0".into())
    );
    host.stop().await;

    let host = TestHost::start(&["todos"], dir.path()).await;
    let (_, body) = get(&c, &u(&host, "/todos")).await;
    assert_eq!(
        json(&body),
        j!([{"id": 1, "title": "buy milk", "done": true}])
    );
    let (status, body) = post(&c, &u(&host, "/todos"), "after restart").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        json(&body)["id"],
        3,
        "AUTOINCREMENT does not reuse 2: {body}"
    );
    host.stop().await;
}

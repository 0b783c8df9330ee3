//! A real browser uses the chat page: headless Chromium (Debian's, driven by Playwright from
//! `tests/browser`) opens the chat-room page twice and sees the messages cross; and the
//! notifications page, whose `EventSource` subscribers see a publish arrive.

mod common;
use common::*;

#[tokio::test]
async fn two_browser_tabs_chat() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["chat-room"], dir.path()).await;
    let script_dir = repo_root().join("tests/browser");
    assert!(
        script_dir.join("node_modules/playwright-core").exists(),
        "tests/browser has no node_modules: run `make browser-deps` (part of `make test`)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run `make browser-deps` (part of `make test`)"
    );
    let url = host.url("/chat-room/browser-room/");
    let stdout = run_script("chat.mjs", &[&url]).await;
    assert!(stdout.contains("messages crossed"), "{stdout}");
    host.stop().await;
}

/// Two tabs of the notifications page subscribe with `EventSource` (server-sent events);
/// what one publishes reaches both, with its event ID.
#[tokio::test]
async fn two_browser_tabs_get_server_sent_events() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["notifications"], dir.path()).await;
    let url = host.url("/notifications/browser-feed/");
    let stdout = run_script("notifications.mjs", &[&url]).await;
    assert!(stdout.contains("events arrived"), "{stdout}");
    host.stop().await;
}

/// The admin listener's web inspector in headless Chromium: with the token, it browses to
/// the counter a request wrote, shows its value (and that it has no SQL tables), and saves
/// a new one, which the public route then answers.
#[tokio::test]
async fn the_web_inspector_edits_a_value_the_public_route_then_reads() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "inspector-token\n").unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let host = common::process::HostProcess::spawn(
        &dir.path().join("data"),
        &["counter"],
        &[
            "--admin",
            &admin,
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
    );
    let c = client();
    for _ in 0..3 {
        get(&c, &format!("http://{}/counter/web/increment", host.addr)).await;
    }
    let stdout = run_script(
        "inspector.mjs",
        &[&format!("http://{admin}/"), "inspector-token", "web"],
    )
    .await;
    assert!(stdout.contains("value shown: 3"), "{stdout}");
    assert!(stdout.contains("sql: no SQL tables"), "{stdout}");
    assert!(stdout.contains("value saved: 42"), "{stdout}");
    assert_eq!(
        get(&c, &format!("http://{}/counter/web/get", host.addr)).await,
        (200, "42".to_string())
    );
}

/// The web inspector shows an object's SQL tables and their first rows: a todos list's
/// `todos` table with its columns and rows; and, for test-object, a table whose name and
/// values hold quotes and markup, shown as text (nothing from the data becomes an element
/// or runs).
#[tokio::test]
async fn the_web_inspector_shows_an_object_s_sql_tables() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let host = common::process::HostProcess::spawn(
        &dir.path().join("data"),
        &["todos", "test-object"],
        &["--admin", &admin],
    );
    let c = client();
    let public = |path: &str| format!("http://{}{path}", host.addr);
    for title in ["milk", "<b>bread</b>"] {
        assert_eq!(post(&c, &public("/todos/list/todos"), title).await.0, 201);
    }
    let odd = r#"we"ird <i>t</i>"#;
    let xss = r#"<img src=x onerror="document.body.dataset.pwned=1">"#;
    let made = post(
        &c,
        &public("/test-object/odd/sql"),
        format!(
            r#"CREATE TABLE "we""ird <i>t</i>" (v TEXT, b BLOB);
               INSERT INTO "we""ird <i>t</i>" VALUES ('{xss}', x'00ff'), (NULL, 7)"#
        ),
    )
    .await;
    assert_eq!(made.0, 200, "{}", made.1);

    let shown = |stdout: String| -> serde_json::Value {
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("sql shown: "))
            .unwrap_or_else(|| panic!("{stdout}"));
        serde_json::from_str(line).unwrap()
    };
    let url = format!("http://{admin}/");
    let todos = shown(run_script("inspector-sql.mjs", &[&url, "todos", "list", "todos"]).await);
    assert_eq!(todos["tables"], serde_json::json!(["todos"]), "{todos}");
    assert_eq!(
        todos["headers"],
        serde_json::json!(["id", "title", "done", "created"]),
        "{todos}"
    );
    // id, title, done (created is a time).
    let rows: Vec<Vec<&str>> = todos["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array().unwrap()[..3]
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        rows,
        [["1", "milk", "0"], ["2", "<b>bread</b>", "0"]],
        "{todos}"
    );
    assert_eq!(todos["markup"], 0, "{todos}");

    let weird = shown(run_script("inspector-sql.mjs", &[&url, "test-object", "odd", odd]).await);
    assert_eq!(weird["headers"], serde_json::json!(["v", "b"]), "{weird}");
    assert_eq!(
        weird["rows"],
        serde_json::json!([[xss, "base64:AP8="], ["NULL", "7"]]),
        "{weird}"
    );
    assert_eq!(weird["markup"], 0, "{weird}");
    assert_eq!(weird["pwned"], serde_json::Value::Null, "{weird}");
}

/// Runs the Playwright script `script` of `tests/browser` with `args`; its stdout, once it
/// succeeded (the test fails with both outputs otherwise).
async fn run_script(script: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(repo_root().join("tests/browser"))
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    stdout
}

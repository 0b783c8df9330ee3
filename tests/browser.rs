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
/// the counter a request wrote, shows its value, and saves a new one, which the public
/// route then answers.
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
    assert!(stdout.contains("value saved: 42"), "{stdout}");
    assert_eq!(
        get(&c, &format!("http://{}/counter/web/get", host.addr)).await,
        (200, "42".to_string())
    );
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

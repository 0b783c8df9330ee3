//! A real browser uses the chat page: headless Chromium (Debian's, driven by Playwright from
//! `tests/browser`) opens the chat-room page twice and sees the messages cross.

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
    let out = tokio::process::Command::new("node")
        .arg("chat.mjs")
        .arg(&url)
        .current_dir(&script_dir)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("messages crossed"), "{stdout}");
    host.stop().await;
}

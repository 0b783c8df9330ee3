//! An acknowledged write survives the host being killed: the real binary is killed with
//! SIGKILL while clients are writing, and every increment that was answered is on disk. And
//! SIGTERM stops it even while a request never finishes.

mod common;
use common::process::HostProcess;
use common::*;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Starts the binary serving the counter on an OS-chosen port.
fn spawn_host(data: &std::path::Path) -> HostProcess {
    HostProcess::spawn(data, &["counter"], &[])
}

async fn acknowledged_increments_survive_sigkill(backend: Backend) {
    let dir = backend.data_dir();
    let data = dir.path().join("data");
    let host = spawn_host(&data);
    let addr = host.addr.clone();
    let c = client();
    let url = format!("http://{addr}/counter/crash/increment");
    // 16 writers increment until the host dies, keeping the highest answer any got.
    let acked = Arc::new(AtomicI64::new(0));
    let mut writers = Vec::new();
    for _ in 0..16 {
        let (c, url, acked) = (c.clone(), url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            loop {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(t) => {
                            acked.fetch_max(t.parse::<i64>().unwrap(), Ordering::SeqCst);
                        }
                        Err(_) => return,
                    },
                    _ => return,
                }
            }
        }));
    }
    // Kill once a good number of writes were acknowledged to their clients (a condition,
    // not a sleep; the counter's own value may run ahead of the answers received).
    while acked.load(Ordering::SeqCst) < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    host.kill();
    for w in writers {
        w.await.unwrap();
    }
    let max_acked = acked.load(Ordering::SeqCst);

    let host = spawn_host(&data);
    let (_, value) = get(&c, &format!("http://{}/counter/crash/get", host.addr)).await;
    let value: i64 = value.parse().unwrap();
    host.kill();
    // Every answered increment is durable; unanswered ones may or may not have landed.
    assert!(
        value >= max_acked,
        "acknowledged {max_acked} but found {value} after the crash"
    );
}

/// Guards against a host that SIGTERM could not stop: shutdown waited for every in-flight
/// request, and one that never ends kept the process alive.
async fn sigterm_stops_the_host_within_the_shutdown_timeout(backend: Backend) {
    let dir = backend.data_dir();
    let flags = ["--shutdown-timeout-secs", "1", "--cpu-ms", "3600000"];
    let mut host = HostProcess::spawn(&dir.path().join("data"), &["test-object"], &flags);
    let addr = host.addr.clone();
    let c = client();
    let spinning = {
        let c = c.clone();
        let url = format!("http://{addr}/test-object/spin/loop");
        tokio::spawn(async move { c.get(url).send().await })
    };
    // The loop runs once the object's next request queues behind it (no answer).
    let probe = format!("http://{addr}/test-object/spin/instance");
    loop {
        let answered = c
            .get(&probe)
            .timeout(Duration::from_millis(300))
            .send()
            .await
            .is_ok();
        if !answered {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &host.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = host.exited().await;
    assert!(exit.success(), "{exit:?}");
    spinning.abort();
}

on_both_backends!(
    acknowledged_increments_survive_sigkill,
    sigterm_stops_the_host_within_the_shutdown_timeout,
);

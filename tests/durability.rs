//! An acknowledged write survives the host being killed: the real binary is killed with
//! SIGKILL while clients are writing, and every increment that was answered is on disk. And
//! SIGTERM stops it even while a request never finishes.

mod common;
use common::process::HostProcess;
use common::*;
use std::process::Command;
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
    // 16 writers increment until the host dies; each remembers the answers it got.
    let mut writers = Vec::new();
    for _ in 0..16 {
        let (c, url) = (c.clone(), url.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            loop {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(t) => acked.push(t.parse::<i64>().unwrap()),
                        Err(_) => return acked,
                    },
                    _ => return acked,
                }
            }
        }));
    }
    // Kill once a good number of writes were acknowledged (a condition, not a sleep).
    let probe = format!("http://{addr}/counter/crash/get");
    loop {
        let n: i64 = get(&c, &probe).await.1.parse().unwrap();
        if n >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    host.kill();
    let mut max_acked = 0;
    for w in writers {
        let acked = w.await.unwrap();
        max_acked = max_acked.max(acked.into_iter().max().unwrap_or(0));
    }
    assert!(max_acked >= 300);

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

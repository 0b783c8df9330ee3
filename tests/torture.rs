//! kill -9 under load, cycle after cycle, on the real binary: appends (by request and by
//! alarm), bank transfers, counters, SQL inserts and WebSockets run while the host is
//! killed at a random moment and restarted on the same data. Nothing acknowledged may be
//! missing, nothing doubled, no transfer half applied. `make torture` runs 100 cycles
//! (`DOHOST_TORTURE_CYCLES`), `make test` 10.

mod common;
use common::history::{self, Lists, Nodes, Outcome, Workload};
use common::process::HostProcess;
use common::*;
use rand::Rng;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GUESTS: &[&str] = &["test-object", "bank", "counter", "chat-room", "todos"];
const ACCOUNTS: &[&str] = &["a", "b", "c", "d", "e"];
const OPENING_BALANCE: i64 = 1000;
const COUNTERS: usize = 4;

fn spawn(data: &std::path::Path) -> HostProcess {
    // Alarms at once, so that alarm appends race the kills too.
    HostProcess::spawn(data, GUESTS, &["--min-alarm-interval", "0"])
}

/// SQL inserts (rows of the `todos` example): titles sent, and the id acknowledged for each.
#[derive(Default)]
struct Rows {
    sent: Mutex<std::collections::HashSet<String>>,
    acked: Mutex<std::collections::BTreeMap<i64, String>>,
}

/// Counter increments: requests sent and the highest value acknowledged, per counter.
#[derive(Default)]
struct Counts {
    sent: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_under_load_loses_nothing_acknowledged() {
    let cycles: usize = std::env::var("DOHOST_TORTURE_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let c = client();
    let objects: Vec<String> = (0..6).map(|i| format!("list{i}")).collect();
    let nodes: Nodes = Arc::new(Mutex::new(Vec::new()));
    let counts = Arc::new(Counts {
        sent: (0..COUNTERS).map(|_| AtomicU64::new(0)).collect(),
        acked: (0..COUNTERS).map(|_| AtomicU64::new(0)).collect(),
    });
    let rows = Arc::new(Rows::default());
    let mut ops = Vec::new();
    let mut transfers_acked = 0u64;
    let started = Instant::now();
    let mut rng = rand::rng();
    for cycle in 0..cycles {
        let host = spawn(&data);
        *nodes.lock().unwrap() = vec![host.addr.clone()];
        if cycle == 0 {
            for a in ACCOUNTS {
                let url = format!(
                    "http://{}/bank/vault/open?account={a}&balance={OPENING_BALANCE}",
                    host.addr
                );
                assert_eq!(post(&c, &url, "").await.0, 200);
            }
        }
        check_after_restart(&c, &host.addr, &counts).await;
        check_rows(&c, &host.addr, &rows).await;
        let stop = Arc::new(AtomicBool::new(false));
        let appends = Workload::start_with_prefix(
            &format!("c{cycle}"),
            "test-object",
            nodes.clone(),
            &objects,
            3,
        );
        let bank = tokio::spawn(transfers(host.addr.clone(), stop.clone()));
        let counters = tokio::spawn(increments(host.addr.clone(), stop.clone(), counts.clone()));
        let sockets = tokio::spawn(chat(host.addr.clone(), stop.clone()));
        let inserts = tokio::spawn(inserts(
            host.addr.clone(),
            stop.clone(),
            cycle,
            rows.clone(),
        ));
        // Some progress, then the kill at a random moment within it.
        appends.progress(10).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        drop(host); // SIGKILL
        stop.store(true, Ordering::SeqCst);
        ops.extend(appends.stop().await);
        transfers_acked += bank.await.unwrap();
        counters.await.unwrap();
        sockets.await.unwrap();
        inserts.await.unwrap();
    }
    // The last restart: every acknowledged alarm append lands, then the whole history is
    // checked against what the host kept.
    let host = spawn(&data);
    check_after_restart(&c, &host.addr, &counts).await;
    check_rows(&c, &host.addr, &rows).await;
    let lists = history::lists_once_alarms_ran(&ops, || read_lists(&c, &host.addr, &objects)).await;
    let violations = history::check(&ops, &lists);
    let acked = ops
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok { .. }))
        .count() as u64
        + transfers_acked
        + counts
            .acked
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .sum::<u64>()
        + rows.acked.lock().unwrap().len() as u64;
    println!(
        "torture: {cycles} kill -9 cycles in {:.1} s, {acked} acknowledged operations \
         ({}), {} violations",
        started.elapsed().as_secs_f64(),
        history::summary(&ops),
        violations.len()
    );
    assert!(violations.is_empty(), "{violations:#?}");
}

/// After a restart: the bank's total is what it opened with, no account is negative; each
/// counter holds at least its highest acknowledged value and at most one per request.
async fn check_after_restart(c: &reqwest::Client, addr: &str, counts: &Counts) {
    let (status, body) = get(c, &format!("http://{addr}/bank/vault/accounts")).await;
    assert_eq!(status, 200, "{body}");
    // [["a", 1000], ...]
    let accounts: Vec<(String, i64)> = serde_json::from_str(&body).unwrap();
    let balances: Vec<i64> = ACCOUNTS
        .iter()
        .map(|a| {
            accounts
                .iter()
                .find(|(name, _)| name == a)
                .unwrap_or_else(|| panic!("{a} in {body}"))
                .1
        })
        .collect();
    assert_eq!(
        balances.iter().sum::<i64>(),
        OPENING_BALANCE * ACCOUNTS.len() as i64,
        "money made or lost: {body}"
    );
    assert!(balances.iter().all(|b| *b >= 0), "{body}");
    for i in 0..COUNTERS {
        let (status, value) = get(c, &format!("http://{addr}/counter/c{i}/get")).await;
        assert_eq!(status, 200);
        let value: u64 = value.parse().unwrap();
        let (acked, sent) = (
            counts.acked[i].load(Ordering::SeqCst),
            counts.sent[i].load(Ordering::SeqCst),
        );
        assert!(
            value >= acked,
            "counter c{i} is {value}, below acknowledged {acked}"
        );
        assert!(
            value <= sent,
            "counter c{i} is {value}, above the {sent} requests sent"
        );
    }
    // The chat room works on the restarted host.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/chat-room/t/ws?name=x"))
            .await
            .unwrap();
    use futures::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::text("who"))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert!(
        reply.to_text().unwrap().starts_with("you are x"),
        "{reply:?}"
    );
}

/// Random transfers between the vault's accounts until stopped; how many were
/// acknowledged.
async fn transfers(addr: String, stop: Arc<AtomicBool>) -> u64 {
    let c = client();
    let mut acked = 0;
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let (from, to) = (ACCOUNTS[n % 5], ACCOUNTS[(n * 3 + 1) % 5]);
        let url = format!(
            "http://{addr}/bank/vault/transfer?from={from}&to={to}&amount={}",
            n % 300
        );
        match c.post(&url).timeout(Duration::from_secs(3)).send().await {
            Ok(r) if r.status() == 200 => acked += 1,
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    acked
}

/// After a restart: every acknowledged row is there under its id, no row appears twice,
/// and none was made up.
async fn check_rows(c: &reqwest::Client, addr: &str, rows: &Rows) {
    let (status, body) = get(c, &format!("http://{addr}/todos/torture/todos")).await;
    assert_eq!(status, 200, "{body}");
    let found: Vec<Value> = serde_json::from_str(&body).unwrap();
    let mut by_id = HashMap::new();
    let mut titles = std::collections::HashSet::new();
    for row in &found {
        let title = row["title"].as_str().unwrap().to_string();
        assert!(titles.insert(title.clone()), "row {title} doubled: {body}");
        by_id.insert(row["id"].as_i64().unwrap(), title);
    }
    let sent = rows.sent.lock().unwrap();
    for title in by_id.values() {
        assert!(sent.contains(title), "row {title} was never sent");
    }
    for (id, title) in rows.acked.lock().unwrap().iter() {
        assert_eq!(
            by_id.get(id),
            Some(title),
            "acknowledged row {id} ({title}) lost"
        );
    }
}

/// Rows inserted one by one until stopped.
async fn inserts(addr: String, stop: Arc<AtomicBool>, cycle: usize, rows: Arc<Rows>) {
    let c = client();
    let url = format!("http://{addr}/todos/torture/todos");
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let title = format!("c{cycle}-{n}");
        rows.sent.lock().unwrap().insert(title.clone());
        match c
            .post(&url)
            .body(title.clone())
            .timeout(Duration::from_secs(3))
            .send()
            .await
        {
            Ok(r) if r.status() == 201 => {
                let Ok(body) = r.text().await else { continue };
                let v: Value = serde_json::from_str(&body).unwrap();
                rows.acked
                    .lock()
                    .unwrap()
                    .insert(v["id"].as_i64().unwrap(), title);
            }
            Ok(_) => {}
            Err(e) if e.is_connect() => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => {}
        }
    }
}

/// Increments spread over the counters until stopped.
async fn increments(addr: String, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let c = client();
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let i = n % COUNTERS;
        counts.sent[i].fetch_add(1, Ordering::SeqCst);
        let url = format!("http://{addr}/counter/c{i}/increment");
        match c.post(&url).timeout(Duration::from_secs(3)).send().await {
            Ok(r) if r.status() == 200 => {
                let value: u64 = r.text().await.unwrap_or_default().parse().unwrap_or(0);
                counts.acked[i].fetch_max(value, Ordering::SeqCst);
            }
            Ok(_) => {}
            Err(e) if e.is_connect() => {
                // Never sent: not an increment.
                counts.sent[i].fetch_sub(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => {}
        }
    }
}

/// Two clients chatting in a room until stopped (or until the kill cuts them).
async fn chat(addr: String, stop: Arc<AtomicBool>) {
    use futures::{SinkExt, StreamExt};
    let url = |name: &str| format!("ws://{addr}/chat-room/torture/ws?name={name}");
    let Ok((mut a, _)) = tokio_tungstenite::connect_async(url("a")).await else {
        return;
    };
    let Ok((mut b, _)) = tokio_tungstenite::connect_async(url("b")).await else {
        return;
    };
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let sent = a
            .send(tokio_tungstenite::tungstenite::Message::text(format!(
                "m{n}"
            )))
            .await;
        if sent.is_err() {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(3), b.next()).await {
            Ok(Some(Ok(m))) if m.is_text() => {
                assert_eq!(m.to_text().unwrap(), format!("a: m{n}"), "in order");
            }
            _ => return,
        }
    }
}

/// Every list as the restarted host serves it (durable state), with stored indices.
async fn read_lists(c: &reqwest::Client, addr: &str, objects: &[String]) -> Lists {
    let mut lists = HashMap::new();
    for o in objects {
        let (status, body) = get(c, &format!("http://{addr}/test-object/{o}/items")).await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let items: Vec<(u64, String)> = v["indices"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["items"].as_array().unwrap())
            .map(|(i, op)| (i.as_u64().unwrap(), op.as_str().unwrap().to_string()))
            .collect();
        lists.insert(o.clone(), (v["len"].as_u64().unwrap(), items));
    }
    lists.into_iter().collect()
}

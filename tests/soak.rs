//! Mixed load for a long time on the real binary: increments spread over thousands of
//! objects, alarms, WebSockets in many rooms, and hostile guests (panics, endless loops,
//! memory bombs). Every sample interval it prints the host's RSS, open file descriptors and
//! the increments' p99. After warm-up (the first third) the RSS must not keep growing: a
//! run of five minutes or more fails when the least-squares slope of RSS over the samples
//! is above 1 MiB a minute. `make soak` runs an hour at full size (`DOHOST_SOAK_SECS`);
//! `make test` runs 20 s at a tenth of the size, checking the load runs and is answered.

mod common;
use common::process::HostProcess;
use common::*;
use rand::Rng;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// RSS growth allowed after warm-up, in bytes per minute.
const MAX_SLOPE: f64 = 1024.0 * 1024.0;

struct Shared {
    stop: AtomicBool,
    /// Increment latencies of the current sample interval, in microseconds.
    latencies: Mutex<Vec<u64>>,
    increments: AtomicU64,
    /// Increments answered with anything but 200 (or not answered).
    failed: AtomicU64,
    messages: AtomicU64,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_holds_steady() {
    let secs = env_or("DOHOST_SOAK_SECS", 20);
    let long = secs >= 300;
    let objects = env_or("DOHOST_SOAK_OBJECTS", if long { 5000 } else { 500 });
    let sockets = env_or("DOHOST_SOAK_SOCKETS", if long { 2000 } else { 200 });
    let every = Duration::from_secs(env_or("DOHOST_SOAK_SAMPLE_SECS", if long { 10 } else { 5 }));
    let dir = tempfile::tempdir().unwrap();
    let host = HostProcess::spawn(
        &dir.path().join("data"),
        &["counter", "alarm", "chat-room", "test-object"],
        &[
            "--min-alarm-interval",
            "1000",
            "--cpu-ms",
            "200",
            "--memory-bytes",
            "33554432",
        ],
    );
    let pid = host.child.id();
    let addr = host.addr.clone();
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        latencies: Mutex::new(Vec::new()),
        increments: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        messages: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for _ in 0..6 {
        tasks.push(tokio::spawn(increments(
            addr.clone(),
            objects,
            shared.clone(),
        )));
    }
    tasks.push(tokio::spawn(alarms(addr.clone(), shared.clone())));
    tasks.push(tokio::spawn(hostile(addr.clone(), shared.clone())));
    tasks.push(tokio::spawn(rooms(addr.clone(), sockets, shared.clone())));

    let started = Instant::now();
    let mut samples: Vec<(f64, f64)> = Vec::new();
    println!("soak: {secs} s, {objects} objects, {sockets} sockets");
    println!("   t(s)    RSS(MiB)  fds   p99(ms)  increments  messages");
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(every).await;
        let t = started.elapsed().as_secs_f64();
        let rss = rss_bytes(pid);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        let mut window = std::mem::take(&mut *shared.latencies.lock().unwrap());
        window.sort_unstable();
        let p99 = window
            .get(window.len().saturating_sub(1) * 99 / 100)
            .copied()
            .unwrap_or(0);
        println!(
            "{t:7.0} {:11.1} {fds:5} {:9.1} {:11} {:9}",
            rss / 1048576.0,
            p99 as f64 / 1000.0,
            shared.increments.load(Ordering::SeqCst),
            shared.messages.load(Ordering::SeqCst)
        );
        samples.push((t, rss));
    }
    shared.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let after_warm_up: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= secs as f64 / 3.0)
        .collect();
    let slope = slope_per_minute(&after_warm_up);
    println!(
        "soak: RSS slope after warm-up {:.2} MiB/min over {} samples; {} increments, {} failed",
        slope / 1048576.0,
        after_warm_up.len(),
        shared.increments.load(Ordering::SeqCst),
        shared.failed.load(Ordering::SeqCst)
    );
    assert!(
        shared.increments.load(Ordering::SeqCst) > 0,
        "no increment answered"
    );
    assert_eq!(shared.failed.load(Ordering::SeqCst), 0, "increments failed");
    assert!(
        shared.messages.load(Ordering::SeqCst) > 0,
        "no broadcast arrived"
    );
    if long {
        assert!(
            slope <= MAX_SLOPE,
            "RSS kept growing after warm-up: {:.2} MiB/min",
            slope / 1048576.0
        );
    }
}

fn rss_bytes(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib * 1024.0)
}

/// The least-squares slope of `samples` (seconds, bytes), in bytes per minute.
fn slope_per_minute(samples: &[(f64, f64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mt, mr) = (
        samples.iter().map(|s| s.0).sum::<f64>() / n,
        samples.iter().map(|s| s.1).sum::<f64>() / n,
    );
    let cov: f64 = samples.iter().map(|(t, r)| (t - mt) * (r - mr)).sum();
    let var: f64 = samples.iter().map(|(t, _)| (t - mt).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var * 60.0 }
}

/// Increments of random counters among `objects`, timed.
async fn increments(addr: String, objects: u64, shared: Arc<Shared>) {
    let c = client();
    while !shared.stop.load(Ordering::SeqCst) {
        let object = rand::rng().random_range(0..objects);
        let url = format!("http://{addr}/counter/o{object}/increment");
        let started = Instant::now();
        match c.post(&url).timeout(Duration::from_secs(10)).send().await {
            Ok(r) if r.status() == 200 => {
                shared
                    .latencies
                    .lock()
                    .unwrap()
                    .push(started.elapsed().as_micros() as u64);
                shared.increments.fetch_add(1, Ordering::SeqCst);
            }
            _ => {
                shared.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Alarms set on 50 objects, a few a second, each re-armed by its own run.
async fn alarms(addr: String, shared: Arc<Shared>) {
    let c = client();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        n += 1;
        let url = format!("http://{addr}/alarm/a{}/set?delay_ms=1000", n % 50);
        let _ = c.post(&url).timeout(Duration::from_secs(10)).send().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A panic, an endless loop (cut by --cpu-ms) and a memory bomb (cut by --memory-bytes),
/// one every second.
async fn hostile(addr: String, shared: Arc<Shared>) {
    let c = client();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        n += 1;
        let what = ["panic", "loop", "membomb"][(n % 3) as usize];
        let url = format!("http://{addr}/test-object/h{}/{what}", n % 10);
        let _ = c.get(&url).timeout(Duration::from_secs(10)).send().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `sockets` WebSockets in rooms of 100; in each room one client sends a message a second
/// and every other reads (counting what arrives).
async fn rooms(addr: String, sockets: u64, shared: Arc<Shared>) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for i in 0..sockets {
        let url = format!("ws://{addr}/chat-room/room{}/ws?name=u{i}", i / 100);
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let (sink, mut stream) = ws.split();
        if i % 100 == 0 {
            senders.push(sink);
        }
        let shared = shared.clone();
        readers.push(tokio::spawn(async move {
            while !shared.stop.load(Ordering::SeqCst) {
                match tokio::time::timeout(Duration::from_secs(2), stream.next()).await {
                    Ok(Some(Ok(m))) if m.is_text() => {
                        shared.messages.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Some(Ok(_))) | Err(_) => {}
                    // Closed, or failed.
                    Ok(_) => break,
                }
            }
        }));
    }
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        n += 1;
        for s in &mut senders {
            let _ = s.send(Message::text(format!("tick {n}"))).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for mut s in senders {
        let _ = s.close().await;
    }
    for r in readers {
        r.abort();
    }
}

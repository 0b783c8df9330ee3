//! The bounds table: dohost under the attacks its limits exist for — memory bombs, slowloris
//! connections, endless loops beside a bystander, one object flooded — each on a fresh host;
//! and two measurements of scale beside them: instance churn, and many WebSockets held.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::future::join_all;
use futures::{StreamExt, stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::format::ms;
use crate::probes::{broadcast, quantile, sequential_latencies};
use crate::servers::{Paths, Server};

/// How many of each attack, and the limits the hosts run with.
pub struct BoundsOpts {
    pub bombs: u32,
    pub max_memory_mib: u64,
    pub slowloris: u32,
    pub header_timeout_ms: u64,
    pub loops: u32,
    pub loop_cpu_ms: u64,
    pub loop_window: Duration,
    pub flood: u32,
    pub sockets: u32,
    pub rooms: u32,
}

/// One row: what was done, what was measured, whether the bound held.
pub struct Row {
    pub workload: String,
    pub figures: String,
    pub held: bool,
}

pub async fn measure(o: &BoundsOpts, paths: &Paths) -> Result<Vec<Row>> {
    eprintln!("== bounds");
    Ok(vec![
        memory_bombs(o, paths).await?,
        slowloris(o, paths).await?,
        loops(o, paths).await?,
        flood(o, paths).await?,
        churn(paths).await?,
        sockets(o, paths).await?,
    ])
}

pub fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "\n| bounds (dohost alone, a fresh host each) | figures | bound held |\n| --- | --- | --- |\n",
    );
    for r in rows {
        t.push_str(&format!(
            "| {} | {} | {} |\n",
            r.workload,
            r.figures,
            if r.held { "✓" } else { "✗" }
        ));
    }
    t
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client")
}

/// Status of a GET, or 0 when it failed outright.
async fn status(c: &reqwest::Client, url: &str) -> u16 {
    match c.get(url).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            s
        }
        Err(_) => 0,
    }
}

/// Memory bombs on distinct objects at once, under `--max-memory`: the peak resident
/// memory of the host, sampled every 10 ms, must stay under what it held before plus the
/// budget plus, per bomb, what the budget leaves out by design (an instance's initial
/// memory and its stack: `UNCOUNTED_PER_INSTANCE`).
async fn memory_bombs(o: &BoundsOpts, paths: &Paths) -> Result<Row> {
    let budget = o.max_memory_mib << 20;
    let s = Server::start_flagged(
        paths,
        "bounds-bombs",
        &["--max-memory".into(), budget.to_string()],
        &["test-object"],
    )
    .await?;
    let c = client();
    status(&c, &s.url("/counter/warm/get")).await;
    let before = s.rss_kib()?;
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), s.pid());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = rss_of(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let statuses = join_all((0..o.bombs).map(|i| {
        let (c, url) = (c.clone(), s.url(&format!("/test-object/bomb-{i}/membomb")));
        async move { status(&c, &url).await }
    }))
    .await;
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    let bystander = status(&c, &s.url("/counter/bystander/increment")).await;
    s.kill().await?;
    let peak_kib = peak.load(Ordering::Relaxed);
    let count = |code: u16| statuses.iter().filter(|&&s| s == code).count();
    let allowed = budget + u64::from(o.bombs) * UNCOUNTED_PER_INSTANCE;
    let held = (peak_kib - before) * 1024 <= allowed && bystander == 200;
    eprintln!("   bombs: RSS {before} -> peak {peak_kib} KiB");
    Ok(Row {
        workload: format!(
            "{} memory bombs at once (`--max-memory {}` = {} MiB, 128 MiB per instance)",
            o.bombs, budget, o.max_memory_mib
        ),
        figures: format!(
            "peak RSS {} MiB ({} MiB before: {} MiB more, against {} MiB of budget and initial memories); {} answered 500 (instance limit), {} answered 503 (budget), {} other; a bystander's request after them: {}",
            peak_kib / 1024,
            before / 1024,
            (peak_kib - before) / 1024,
            allowed >> 20,
            count(500),
            count(503),
            statuses.len() - count(500) - count(503),
            bystander
        ),
        held,
    })
}

/// What an instance holds outside `--max-memory`: its initial linear memory (the test
/// object's is about 1.1 MiB; `--max-live-objects` bounds these) and its stack.
const UNCOUNTED_PER_INSTANCE: u64 = 2 << 20;

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Connections that send half a request's headers and then nothing: each must be closed
/// by the host within the header timeout (p99 within it plus a second), a bystander served
/// meanwhile.
async fn slowloris(o: &BoundsOpts, paths: &Paths) -> Result<Row> {
    let flags = [
        "--header-timeout-ms".to_string(),
        o.header_timeout_ms.to_string(),
    ];
    let s = Server::start_flagged(paths, "bounds-slowloris", &flags, &["test-object"]).await?;
    let addr = s.addr;
    // Each connection's time to its close counts from its own opening, watched from then
    // on by a task of its own: opening 2,000 one after another takes a while on a busy
    // machine.
    let mut watchers = Vec::new();
    for _ in 0..o.slowloris {
        let opened = Instant::now();
        let mut t = TcpStream::connect(addr)
            .await
            .context("slowloris connect")?;
        t.write_all(b"GET /counter/slow/get HTTP/1.1\r\nHost: bench\r\n")
            .await?;
        watchers.push(tokio::spawn(async move {
            let mut buf = [0u8; 512];
            // Whatever the host answers (a 408, or nothing) ends with the close.
            loop {
                match tokio::time::timeout(Duration::from_secs(120), t.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some(opened.elapsed()),
                    Ok(Ok(_)) => continue,
                    Err(_) => return None,
                }
            }
        }));
    }
    let c = client();
    let started = Instant::now();
    let bystander = status(&c, &s.url("/counter/bystander/increment")).await;
    let bystander_ms = started.elapsed();
    let mut closes = Vec::new();
    for w in watchers {
        closes.push(w.await?);
    }
    s.kill().await?;
    let open_still = closes.iter().filter(|c| c.is_none()).count();
    let closed: Vec<Duration> = closes.into_iter().flatten().collect();
    ensure!(!closed.is_empty(), "no slowloris connection was closed");
    let (p50, p99) = (quantile(&closed, 0.5), quantile(&closed, 0.99));
    let last = closed.iter().max().copied().unwrap_or_default();
    // The timer starts when the host has accepted the connection and started its task,
    // which in a burst of thousands on two shared cores lags the client's connect.
    let bound = Duration::from_millis(o.header_timeout_ms) + Duration::from_secs(1);
    eprintln!(
        "   slowloris: closed after p50 {p50:?}, p99 {p99:?}, max {last:?}; {open_still} still open"
    );
    Ok(Row {
        workload: format!(
            "{} slowloris connections (half a request's headers, then silence; `--header-timeout-ms {}`)",
            o.slowloris, o.header_timeout_ms
        ),
        figures: format!(
            "closed by the host after p50 {}, p99 {}, at most {}, each from its own opening ({} still open after 120 s); a bystander's request meanwhile: {} in {}",
            ms(p50),
            ms(p99),
            ms(last),
            open_still,
            bystander,
            ms(bystander_ms)
        ),
        held: open_still == 0 && p99 <= bound && bystander == 200,
    })
}

/// Endless loops on distinct objects, kept in flight (each cut by `--cpu-ms`, then sent
/// again), while a bystander times requests to a counter one after another.
async fn loops(o: &BoundsOpts, paths: &Paths) -> Result<Row> {
    let flags = ["--cpu-ms".to_string(), o.loop_cpu_ms.to_string()];
    let s = Server::start_flagged(paths, "bounds-loops", &flags, &["test-object"]).await?;
    let c = client();
    let stop = Arc::new(AtomicBool::new(false));
    let loopers: Vec<_> = (0..o.loops)
        .map(|i| {
            let (c, url, stop) = (
                c.clone(),
                s.url(&format!("/test-object/loop-{i}/loop")),
                stop.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    status(&c, &url).await;
                }
            })
        })
        .collect();
    // Let every loop start before timing the bystander.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bystander = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let url = s.url("/counter/bystander/increment");
    let mut samples = Vec::new();
    let mut failed = 0;
    let until = Instant::now() + o.loop_window;
    while Instant::now() < until {
        let t = Instant::now();
        match bystander.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                r.bytes().await?;
                samples.push(t.elapsed());
            }
            _ => failed += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in loopers {
        l.abort();
    }
    s.kill().await?;
    ensure!(!samples.is_empty(), "the bystander was never answered");
    let (p50, p99) = (quantile(&samples, 0.5), quantile(&samples, 0.99));
    eprintln!("   loops: bystander p50 {p50:?}, p99 {p99:?}");
    Ok(Row {
        workload: format!(
            "{} endless loops on distinct objects kept in flight (`--cpu-ms {}`), a bystander incrementing a counter one request at a time for {} s",
            o.loops,
            o.loop_cpu_ms,
            o.loop_window.as_secs()
        ),
        figures: format!(
            "bystander p50 {}, p99 {} over {} requests ({} failed)",
            ms(p50),
            ms(p99),
            samples.len(),
            failed
        ),
        held: failed == 0 && p99 <= Duration::from_millis(100),
    })
}

/// Many requests at once to one object whose events are slow: past `--max-queued-events`
/// (1000) they must be refused at once with 503 and `Retry-After`.
async fn flood(o: &BoundsOpts, paths: &Paths) -> Result<Row> {
    let flags = ["--cpu-ms".to_string(), "100".to_string()];
    let s = Server::start_flagged(paths, "bounds-flood", &flags, &["test-object"]).await?;
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()?;
    let started = Instant::now();
    let answers = join_all((0..o.flood).map(|_| {
        let (c, url) = (c.clone(), s.url("/test-object/hot/loop"));
        async move {
            match c.get(&url).send().await {
                Ok(r) => Some((
                    r.status().as_u16(),
                    r.headers().contains_key("retry-after"),
                    started.elapsed(),
                )),
                // Still queued when the client gave up: it leaves, and its event is dropped.
                Err(_) => None,
            }
        }
    }))
    .await;
    let bystander = status(&client(), &s.url("/counter/bystander/increment")).await;
    s.kill().await?;
    let refused: Vec<Duration> = answers
        .iter()
        .flatten()
        .filter(|(st, retry, _)| *st == 503 && *retry)
        .map(|(_, _, t)| *t)
        .collect();
    let waited = answers.iter().filter(|a| a.is_none()).count();
    let ran = answers
        .iter()
        .flatten()
        .filter(|(st, _, _)| *st == 500)
        .count();
    let slowest = refused.iter().max().copied().unwrap_or_default();
    eprintln!(
        "   flood: {} refused, slowest refusal {slowest:?}",
        refused.len()
    );
    Ok(Row {
        workload: format!(
            "{} requests at once to one object whose events each spin 100 ms (`--cpu-ms 100`, `--max-queued-events` 1000)",
            o.flood
        ),
        figures: format!(
            "{} refused with 503 and `Retry-After`, the last of them {} after the first request was sent; {} ran (cut at 100 ms); {} were still queued when their clients gave up at 5 s; another object meanwhile: {}",
            refused.len(),
            ms(slowest),
            ran,
            waited,
            bystander
        ),
        // Every request that neither ran nor found a place in the mailbox was refused.
        held: refused.len() + ran + 1000 + 1 >= o.flood as usize && bystander == 200,
    })
}

/// The cost of one eviction and rebuild: with `--max-live-objects 100`, first requests to
/// the first 100 objects only build an instance; past 1,000 objects every first request
/// also evicts the idle instance that waited longest. Both one at a time.
async fn churn(paths: &Paths) -> Result<Row> {
    let flags = ["--max-live-objects".to_string(), "100".to_string()];
    let s = Server::start_flagged(paths, "bounds-churn", &flags, &["test-object"]).await?;
    let path = |i: u32| format!("/counter/churn-{i}/get");
    let fresh = sequential_latencies(&s, &(0..100).map(path).collect::<Vec<_>>()).await?;
    sequential_latencies(&s, &(100..1_000).map(path).collect::<Vec<_>>()).await?;
    let churned = sequential_latencies(&s, &(1_000..3_000).map(path).collect::<Vec<_>>()).await?;
    s.kill().await?;
    let (f50, c50) = (quantile(&fresh, 0.5), quantile(&churned, 0.5));
    eprintln!("   churn: build p50 {f50:?}, evict + build p50 {c50:?}");
    Ok(Row {
        workload: "first requests one at a time under `--max-live-objects 100`: 100 that only build an instance, then 2,000 that each evict one and build one".into(),
        figures: format!(
            "build p50 {}, p99 {}; evict + build p50 {}, p99 {}: an eviction adds {:+} µs to the p50",
            ms(f50),
            ms(quantile(&fresh, 0.99)),
            ms(c50),
            ms(quantile(&churned, 0.99)),
            c50.as_micros() as i128 - f50.as_micros() as i128
        ),
        // A measurement, not a bound: it holds when every request was answered.
        held: true,
    })
}

/// WebSockets held open at once over many chat rooms (hibernating objects): resident memory
/// per socket, then broadcast throughput in one more room of 100 while they are held.
async fn sockets(o: &BoundsOpts, paths: &Paths) -> Result<Row> {
    let s = Server::start_flagged(paths, "bounds-sockets", &[], &["chat-room"]).await?;
    status(&client(), &s.url("/counter/warm/get")).await;
    let before = s.rss_kib()?;
    let opened = Instant::now();
    let addr = s.addr;
    let held: Vec<_> = stream::iter(0..o.sockets)
        .map(|i| {
            let url = format!("ws://{addr}/chat-room/held-{}/ws?name=m{i}", i % o.rooms);
            async move {
                tokio_tungstenite::connect_async(url)
                    .await
                    .map(|(ws, _)| ws)
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .context("opening the held sockets")?;
    let open_secs = opened.elapsed().as_secs_f64();
    // Let the joins' greetings drain and idle instances hibernate before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = s.rss_kib()?;
    let per_socket = (after.saturating_sub(before) as f64) / f64::from(o.sockets);
    let b = broadcast(&s, "scale-room", 100, 200, 50, Duration::from_secs(120)).await?;
    ensure!(
        b.deliveries == 100 * 200,
        "{} of 20,000 broadcast messages arrived",
        b.deliveries
    );
    drop(held);
    s.kill().await?;
    eprintln!(
        "   sockets: {per_socket:.1} KiB each, broadcast {:.0}/s",
        b.per_sec()
    );
    Ok(Row {
        workload: format!(
            "{} WebSockets held open over {} chat rooms, then a broadcast room of 100 (200 messages) beside them",
            o.sockets, o.rooms
        ),
        figures: format!(
            "opened in {open_secs:.1} s; RSS {} MiB → {} MiB: {per_socket:.1} KiB per socket (its connection task, buffers and the room's share of an instance); broadcast {:.0} deliveries/s while they are held",
            before / 1024,
            after / 1024,
            b.per_sec()
        ),
        held: true,
    })
}

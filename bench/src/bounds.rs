//! The bounds table: dohost under the attacks its limits exist for — memory bombs, slowloris
//! connections, endless loops beside a bystander, one object flooded, large answers left
//! unread, HTTP/2 prefaces left idle, many Python objects under a small budget — each on a
//! fresh host; and two measurements of scale beside them: instance churn, and many
//! WebSockets held.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::future::join_all;
use futures::{StreamExt, stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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
    /// Connections that ask for a large answer and read only its status line.
    pub unread: u32,
    /// MiB of each of those answers.
    pub unread_answer_mib: u64,
    /// `--max-memory` of the host they hit, in MiB.
    pub unread_budget_mib: u64,
    /// `--write-timeout-ms` of that host.
    pub write_timeout_ms: u64,
    /// Connections that open with the HTTP/2 preface and then idle; also that host's
    /// `--max-connections`.
    pub h2c: u32,
    /// Python objects created one after another.
    pub py_objects: u32,
    /// `--max-memory` of the host they run on, in MiB.
    pub py_budget_mib: u64,
    /// The rows to run, in this order.
    pub rows: Vec<Bound>,
}

/// The rows of the table, by the names `--bounds-rows` takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Bound {
    Bombs,
    Slowloris,
    Loops,
    Flood,
    Churn,
    Sockets,
    Unread,
    H2c,
    Python,
}

impl Bound {
    pub const ALL: [Bound; 9] = [
        Bound::Bombs,
        Bound::Slowloris,
        Bound::Loops,
        Bound::Flood,
        Bound::Churn,
        Bound::Sockets,
        Bound::Unread,
        Bound::H2c,
        Bound::Python,
    ];
}

/// One row: what was done, what was measured, whether the bound held.
pub struct Row {
    pub workload: String,
    pub figures: String,
    pub held: bool,
}

pub async fn measure(o: &BoundsOpts, paths: &Paths) -> Result<Vec<Row>> {
    eprintln!("== bounds");
    let mut rows = Vec::with_capacity(o.rows.len());
    for row in &o.rows {
        rows.push(match row {
            Bound::Bombs => memory_bombs(o, paths).await?,
            Bound::Slowloris => slowloris(o, paths).await?,
            Bound::Loops => loops(o, paths).await?,
            Bound::Flood => flood(o, paths).await?,
            Bound::Churn => churn(paths).await?,
            Bound::Sockets => sockets(o, paths).await?,
            Bound::Unread => unread_answers(o, paths).await?,
            Bound::H2c => h2c_idle(o, paths).await?,
            Bound::Python => python_objects(o, paths).await?,
        });
    }
    Ok(rows)
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
/// budget plus, per bomb, what the budget leaves out by design (an instance's stack and the
/// host's structures for it: `UNCOUNTED_PER_INSTANCE`).
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
            "peak RSS {} MiB ({} MiB before: {} MiB more, against {} MiB of budget and per-instance allowance); {} answered 500 (instance limit), {} answered 503 (budget), {} other; a bystander's request after them: {}",
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

/// What an instance holds outside `--max-memory`. Its initial linear memory (the test
/// object's is about 1.1 MiB) is counted against the budget from the instance's first
/// moment, like all it grows; what is still outside is its stack and the host's structures
/// for it (its store, tables and bookkeeping). The allowance is kept at its old size.
const UNCOUNTED_PER_INSTANCE: u64 = 2 << 20;

/// What the host as a whole may hold above `--max-memory`, whatever the attack: its code,
/// runtime and connection buffers.
const HOST_ALLOWANCE: u64 = 64 << 20;

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

/// Samples the host every 50 ms, until stopped: the peak of its resident memory and, for
/// the client ports it is given, when the host's side of each connection left ESTABLISHED
/// (from /proc/net/tcp: the host closed it, whatever its client has read).
struct Sampler {
    peak: Arc<AtomicU64>,
    closed: Arc<Mutex<HashMap<u16, Instant>>>,
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Samples `pid` from `before_kib`; with `watch` (the host's port, client ports), also
    /// watches those connections.
    fn start(pid: u32, before_kib: u64, watch: Option<(u16, Vec<u16>)>) -> Sampler {
        let peak = Arc::new(AtomicU64::new(before_kib));
        let closed = Arc::new(Mutex::new(HashMap::new()));
        let done = Arc::new(AtomicBool::new(false));
        let task = {
            let (peak, closed, done) = (peak.clone(), closed.clone(), done.clone());
            let (host_port, ports) = watch.unwrap_or_default();
            let mut open: HashSet<u16> = ports.into_iter().collect();
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_of(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    if !open.is_empty()
                        && let Some(established) = host_established(host_port)
                    {
                        let now = Instant::now();
                        let mut closed = closed.lock().expect("the closes");
                        open.retain(|port| {
                            let still = established.contains(port);
                            if !still {
                                closed.insert(*port, now);
                            }
                            still
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        Sampler {
            peak,
            closed,
            done,
            task,
        }
    }

    /// When the host's side of the connection from client port `port` was first seen closed.
    fn closed_at(&self, port: u16) -> Option<Instant> {
        self.closed.lock().expect("the closes").get(&port).copied()
    }

    /// Stops sampling; the peak resident memory, in KiB.
    async fn stop(self) -> Result<u64> {
        self.done.store(true, Ordering::Relaxed);
        self.task.await?;
        Ok(self.peak.load(Ordering::Relaxed))
    }
}

/// The client ports of the loopback connections to `host_port` whose host side is
/// ESTABLISHED, from /proc/net/tcp.
fn host_established(host_port: u16) -> Option<HashSet<u16>> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |address: &str| {
        address
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    Some(
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().take(4).collect();
                // sl, local address, remote address, state (01: ESTABLISHED).
                (f.len() == 4 && port(f[1]) == Some(host_port) && f[3] == "01")
                    .then(|| port(f[2]))
                    .flatten()
            })
            .collect(),
    )
}

/// Whether `pid` still runs: a zombie (exited, not yet reaped) counts as dead.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses.
            let (_, rest) = stat.rsplit_once(')')?;
            rest.trim_start().chars().next()
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// One connection of `unread_answers`: its answer's status, when its status line arrived,
/// its client port and the connection itself (kept open, unread).
struct Unread {
    status: u16,
    at: Instant,
    port: u16,
    stream: TcpStream,
}

/// Connections that ask for a large answer each and read only its status line, with a
/// small receive buffer: the host must not hold their answers beyond `--max-memory` (past
/// it, new requests get 503), and must close each stalled connection within its write
/// timeout.
async fn unread_answers(o: &BoundsOpts, paths: &Paths) -> Result<Row> {
    let budget = o.unread_budget_mib << 20;
    let flags = [
        "--max-memory".to_string(),
        budget.to_string(),
        "--write-timeout-ms".to_string(),
        o.write_timeout_ms.to_string(),
    ];
    let s = Server::start_flagged(paths, "bounds-unread", &flags, &["test-object"]).await?;
    let c = client();
    status(&c, &s.url("/counter/warm/get")).await;
    // The object's instance is built before the baseline: what follows is the answers.
    status(&c, &s.url("/test-object/big/big?mib=1")).await;
    let before = s.rss_kib()?;
    let mut streams = Vec::new();
    for _ in 0..o.unread {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let stream = socket.connect(s.addr).await.context("unread connect")?;
        let port = stream.local_addr()?.port();
        streams.push((port, stream));
    }
    let ports = streams.iter().map(|(port, _)| *port).collect();
    let sampler = Sampler::start(s.pid(), before, Some((s.addr.port(), ports)));
    let request = format!(
        "GET /test-object/big/big?mib={} HTTP/1.1\r\nHost: bench\r\n\r\n",
        o.unread_answer_mib
    );
    let answers: Vec<Unread> = join_all(streams.into_iter().map(|(port, mut stream)| {
        let request = request.as_bytes();
        async move {
            let mut line = [0u8; 12];
            let answered = async {
                stream.write_all(request).await?;
                stream.read_exact(&mut line).await
            };
            let status = match tokio::time::timeout(Duration::from_secs(60), answered).await {
                // "HTTP/1.1 200"
                Ok(Ok(_)) => std::str::from_utf8(&line[9..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                _ => 0,
            };
            Unread {
                status,
                at: Instant::now(),
                port,
                stream,
            }
        }
    }))
    .await;
    // Wait for the host to close every connection answered 200.
    let bound = Duration::from_millis(o.write_timeout_ms) + Duration::from_secs(1);
    let last = answers
        .iter()
        .map(|a| a.at)
        .max()
        .unwrap_or_else(Instant::now);
    let give_up = last + bound + Duration::from_secs(10);
    let answered = || answers.iter().filter(|a| a.status == 200);
    while answered().any(|a| sampler.closed_at(a.port).is_none()) && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closes: Vec<Option<Duration>> = answered()
        .map(|a| {
            sampler
                .closed_at(a.port)
                .map(|t| t.saturating_duration_since(a.at))
        })
        .collect();
    let peak_kib = sampler.stop().await?;
    let count = |code: u16| answers.iter().filter(|a| a.status == code).count();
    let (ok, refused) = (count(200), count(503));
    let failed = answers.len() - ok - refused;
    // What each closed connection still delivers: what the host had written into its kernel
    // buffers before the close (outside its resident memory).
    let delivered: Vec<u64> = join_all(answers.into_iter().filter(|a| a.status == 200).map(
        |mut a| async move {
            let (mut n, mut buf) = (0u64, vec![0u8; 64 << 10]);
            while let Ok(Ok(read @ 1..)) =
                tokio::time::timeout(Duration::from_secs(2), a.stream.read(&mut buf)).await
            {
                n += read as u64;
            }
            n
        },
    ))
    .await;
    let bystander = status(&c, &s.url("/counter/bystander/increment")).await;
    s.kill().await?;
    let open_still = closes.iter().filter(|c| c.is_none()).count();
    let closed: Vec<Duration> = closes.iter().flatten().copied().collect();
    let slowest = closed.iter().max().copied().unwrap_or_default();
    let rose = peak_kib.saturating_sub(before);
    let allowed = budget + HOST_ALLOWANCE;
    let most_delivered = delivered.iter().max().copied().unwrap_or_default();
    eprintln!(
        "   unread: RSS {before} -> peak {peak_kib} KiB; {ok} answered 200, {refused} 503, {failed} failed; slowest close {slowest:?}, {open_still} still open"
    );
    let closes_figure = if closed.is_empty() {
        "none closed".to_string()
    } else {
        format!(
            "closed by the host p50 {}, at most {} after its status line",
            ms(quantile(&closed, 0.5)),
            ms(slowest)
        )
    };
    Ok(Row {
        workload: format!(
            "{} connections (4 KiB receive buffers) each asking for a {} MiB answer at once and reading only its status line (`--max-memory` {} MiB, `--write-timeout-ms {}`)",
            o.unread, o.unread_answer_mib, o.unread_budget_mib, o.write_timeout_ms
        ),
        figures: format!(
            "{ok} answered 200, {refused} 503 (budget), {failed} failed; of the 200s: {closes_figure} ({open_still} still open), each having delivered at most {} KiB of its answer before the close; peak RSS {} MiB ({} MiB before: {} MiB more, against {} MiB of budget and host allowance); a bystander's request after them: {bystander}",
            most_delivered >> 10,
            peak_kib / 1024,
            before / 1024,
            rose / 1024,
            allowed >> 20,
        ),
        held: rose * 1024 <= allowed
            && open_still == 0
            && slowest <= bound
            && failed == 0
            && bystander == 200,
    })
}

/// HTTP/2 with prior knowledge: the preface, then an empty SETTINGS frame.
const H2C_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// What a host answered, in a few words: nothing, an HTTP/1 status line, or its first bytes.
fn describe(answer: &[u8]) -> String {
    if answer.is_empty() {
        "nothing".into()
    } else if answer.starts_with(b"HTTP/") {
        let line = answer.split(|&b| b == b'\r').next().unwrap_or(answer);
        format!("`{}`", String::from_utf8_lossy(line))
    } else {
        format!(
            "{} bytes starting {:02x?}",
            answer.len(),
            &answer[..answer.len().min(9)]
        )
    }
}

/// Connections that open with the HTTP/2 prior-knowledge preface and then idle, as many as
/// `--max-connections`: the host (HTTP/1.1 only) must close each within the header timeout,
/// so that the slots they took come back and an HTTP/1.1 bystander is served.
async fn h2c_idle(o: &BoundsOpts, paths: &Paths) -> Result<Row> {
    let flags = [
        "--header-timeout-ms".to_string(),
        o.header_timeout_ms.to_string(),
        "--max-connections".to_string(),
        o.h2c.to_string(),
    ];
    let s = Server::start_flagged(paths, "bounds-h2c", &flags, &["test-object"]).await?;
    let addr = s.addr;
    let mut watchers = Vec::new();
    for _ in 0..o.h2c {
        let opened = Instant::now();
        let mut t = TcpStream::connect(addr).await.context("h2c connect")?;
        let sent = t.write_all(H2C_PREFACE).await;
        watchers.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            if sent.is_err() {
                return (answer, Some(opened.elapsed()));
            }
            let mut buf = [0u8; 512];
            loop {
                match tokio::time::timeout(Duration::from_secs(60), t.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return (answer, Some(opened.elapsed())),
                    Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                    Err(_) => return (answer, None),
                }
            }
        }));
    }
    // An HTTP/1.1 request beside them, retried while refused (every slot taken) until the
    // header timeout has had time to free them.
    let c = client();
    let url = s.url("/counter/bystander/increment");
    let started = Instant::now();
    let patience = Duration::from_millis(o.header_timeout_ms) + Duration::from_secs(1);
    let (mut bystander, mut attempts) = (0, 0);
    while bystander != 200 {
        attempts += 1;
        bystander = status(&c, &url).await;
        if bystander == 200 || started.elapsed() >= patience {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bystander_after = started.elapsed();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut closes = Vec::new();
    for w in watchers {
        let (answer, closed) = w.await?;
        *answers.entry(describe(&answer)).or_default() += 1;
        closes.push(closed);
    }
    s.kill().await?;
    let open_still = closes.iter().filter(|c| c.is_none()).count();
    let closed: Vec<Duration> = closes.into_iter().flatten().collect();
    ensure!(!closed.is_empty(), "no h2c connection was closed");
    let (p50, p99) = (quantile(&closed, 0.5), quantile(&closed, 0.99));
    let last = closed.iter().max().copied().unwrap_or_default();
    let answered = answers
        .iter()
        .map(|(what, n)| format!("{what} to {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "   h2c: answered {answered}; closed after p50 {p50:?}, p99 {p99:?}, max {last:?}; {open_still} still open"
    );
    Ok(Row {
        workload: format!(
            "{} connections sending the HTTP/2 preface and an empty SETTINGS frame, then idle (`--max-connections {}`, `--header-timeout-ms {}`)",
            o.h2c, o.h2c, o.header_timeout_ms
        ),
        figures: format!(
            "the host answered {answered}; closed after p50 {}, p99 {}, at most {}, each from its own opening ({open_still} still open after 60 s); an HTTP/1.1 bystander meanwhile: {bystander} after {} ({attempts} {}, refusals retried every 50 ms)",
            ms(p50),
            ms(p99),
            ms(last),
            ms(bystander_after),
            if attempts == 1 { "attempt" } else { "attempts" },
        ),
        held: open_still == 0 && last <= patience && bystander == 200,
    })
}

/// Python objects (counter-py, each a componentize-py instance of several MiB) created one
/// after another under a small `--max-memory`: idle ones must give their instances up for
/// new ones (a 503 while they do is retried), the host must stay within its budget and
/// alive, and every object must count its first increment.
async fn python_objects(o: &BoundsOpts, paths: &Paths) -> Result<Row> {
    let budget = o.py_budget_mib << 20;
    let flags = ["--max-memory".to_string(), budget.to_string()];
    let s = Server::start_flagged(paths, "bounds-python", &flags, &["counter-py"]).await?;
    let pid = s.pid();
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()?;
    status(&c, &s.url("/counter/warm/get")).await;
    let before = s.rss_kib()?;
    let sampler = Sampler::start(pid, before, None);
    let (mut first_time, mut retried, mut retried_objects) = (0u32, 0u32, 0u32);
    let mut failures: Vec<String> = Vec::new();
    let mut latencies = Vec::new();
    let mut answered = 0u32;
    let started = Instant::now();
    for i in 0..o.py_objects {
        let url = s.url(&format!("/counter-py/py-{i}/increment"));
        let (sent, give_up) = (Instant::now(), Instant::now() + Duration::from_secs(30));
        let mut tries = 0u32;
        let failure = loop {
            tries += 1;
            let (code, body) = match c.get(&url).send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(e) => break Some(format!("py-{i}: {e}")),
            };
            if code == 200 && body.trim() == "1" {
                break None;
            }
            if code == 503 && Instant::now() < give_up {
                retried += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            break Some(format!("py-{i}: {code} {:?}", body.trim()));
        };
        match failure {
            None => {
                answered += 1;
                latencies.push(sent.elapsed());
                if tries == 1 {
                    first_time += 1;
                } else {
                    retried_objects += 1;
                }
            }
            Some(f) => failures.push(f),
        }
        if !alive(pid) {
            failures.push(format!("the host died at object {i}"));
            break;
        }
    }
    let took = started.elapsed();
    let peak_kib = sampler.stop().await?;
    let alive_at_end = alive(pid);
    if let Err(e) = s.kill().await {
        eprintln!("   python: killing the host: {e}");
    }
    let rose = peak_kib.saturating_sub(before);
    let allowed = budget + HOST_ALLOWANCE;
    let latency = if latencies.is_empty() {
        String::new()
    } else {
        format!(
            " (each p50 {}, p99 {}, retries included)",
            ms(quantile(&latencies, 0.5)),
            ms(quantile(&latencies, 0.99))
        )
    };
    eprintln!(
        "   python: {answered} of {} answered in {took:?}, {retried} 503s retried; RSS {before} -> peak {peak_kib} KiB; alive {alive_at_end}; failures: {:?}",
        o.py_objects,
        failures.iter().take(5).collect::<Vec<_>>()
    );
    Ok(Row {
        workload: format!(
            "{} Python objects (counter-py) created one at a time, each incremented once (`--max-memory` {} MiB; a 503 retried after 50 ms, for up to 30 s)",
            o.py_objects, o.py_budget_mib
        ),
        figures: format!(
            "{answered} answered `1` in {:.1} s{latency}: {first_time} at the first request, {retried_objects} after retries ({retried} 503s retried); {} failed{}; peak RSS {} MiB ({} MiB before: {} MiB more, against {} MiB of budget and host allowance); the host {} at the end",
            took.as_secs_f64(),
            failures.len(),
            match failures.first() {
                Some(f) => format!(" (first: {f})"),
                None => String::new(),
            },
            peak_kib / 1024,
            before / 1024,
            rose / 1024,
            allowed >> 20,
            if alive_at_end { "alive" } else { "dead" },
        ),
        held: alive_at_end
            && answered == o.py_objects
            && failures.is_empty()
            && rose * 1024 <= allowed,
    })
}

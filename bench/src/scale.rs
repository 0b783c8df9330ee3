//! The scale table: dohost on its default flags beside workerd and the axum ceiling, all
//! kept up at once and each workload's runs interleaved (A, B, C, A, B, C …) so that a
//! disturbance lands on every server alike; medians reported with the share of the CPU
//! other processes took. Then 100,000 objects kept live on one host.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::cpu::{self, Usage};
use crate::format::{mark, ms, rate, times};
use crate::load::{self, Load, WrkResult};
use crate::probes::{self, counter, counter_sum, touch};
use crate::rounds::check_clean;
use crate::servers::{Kind, Paths, Server};

pub struct ScaleOpts {
    pub rounds: u32,
    pub duration: Duration,
    pub connections: u32,
    pub threads: u32,
    /// Objects the random increments are spread over, one workload each.
    pub spreads: Vec<u32>,
    /// workerd keeps every object it has seen live, each with its SQLite database open
    /// (about two file descriptors): 11,000 objects exhaust a 20,000 open-file limit and
    /// every request fails, so it is not run on spreads above this.
    pub workerd_max_spread: u32,
    /// Objects touched and kept live on one host (0: skip).
    pub live_objects: u32,
    pub dohost_only: bool,
}

/// One wrk run with what the server used meanwhile.
#[derive(Clone, Copy, Debug)]
struct Run {
    wrk: WrkResult,
    usage: Usage,
    /// Instances the server built during the run (dohost only).
    builds: Option<u64>,
}

impl Run {
    fn cpu_per_request(&self) -> Duration {
        self.usage.server / u32::try_from(self.wrk.requests.max(1)).unwrap_or(u32::MAX)
    }

    fn builds_per_request(&self) -> Option<f64> {
        self.builds
            .map(|b| b as f64 / self.wrk.requests.max(1) as f64)
    }
}

/// The runs of one workload against one server, every round.
#[derive(Default)]
struct Runs(Vec<Run>);

impl Runs {
    /// The run with the median requests/s.
    fn median(&self) -> Run {
        load::median(&self.0, |r| r.wrk.rps()).expect("every workload ran at least once")
    }
}

/// A server in the rounds, and where its admin metrics are (dohost).
struct Contender {
    server: Server,
    metrics: Option<String>,
}

impl Contender {
    fn label(&self) -> &'static str {
        self.server.kind.label()
    }
}

/// What the 100,000-object host measured.
struct Live {
    objects: u32,
    rss_before_kib: u64,
    rss_after_kib: u64,
    pss_before_kib: u64,
    pss_after_kib: u64,
    live_instances: u64,
    wrk: WrkResult,
}

pub struct Figures {
    opts_rounds: u32,
    runs: BTreeMap<(String, &'static str), Runs>,
    /// dohost's `max_live_objects` as sized from this machine.
    sized_live: u64,
    live: std::result::Result<Live, String>,
}

const GET: &str = "get, one object";
const GET_PINNED: &str = "get, one object, wrk on CPU 0 and the server on CPU 1";

fn spread_name(n: u32) -> String {
    format!("increment, random over {n} objects")
}

pub async fn measure(o: &ScaleOpts, paths: &Paths) -> Result<Figures> {
    eprintln!(
        "== scale: servers side by side, {} interleaved rounds",
        o.rounds
    );
    let client = probes::client();
    let admin = format!("127.0.0.1:{}", crate::servers::free_port()?);
    let dohost = Server::start_flagged(
        paths,
        "scale-dohost",
        &["--admin".into(), admin.clone()],
        &[],
    )
    .await?;
    let sized_live = serving_field(&paths.work.join("scale-dohost.log"), "max_live_objects")?;
    let mut contenders = vec![Contender {
        server: dohost,
        metrics: Some(admin),
    }];
    if !o.dohost_only {
        contenders.push(Contender {
            server: Server::start(Kind::Workerd, paths, 0).await?,
            metrics: None,
        });
    }
    contenders.push(Contender {
        server: Server::start(Kind::Hello, paths, 0).await?,
        metrics: None,
    });
    // The get object reads 1 throughout.
    for c in &contenders {
        if c.server.kind != Kind::Hello {
            probes::get_text(
                &client,
                &c.server
                    .url(&c.server.kind.counter_path("scale-get", "increment")),
            )
            .await?;
        }
    }

    let mut runs: BTreeMap<(String, &'static str), Runs> = BTreeMap::new();
    let mut acked: BTreeMap<(u32, &'static str), (i64, i64)> = BTreeMap::new();
    for round in 0..o.rounds {
        eprintln!("   round {}", round + 1);
        for (workload, pinned) in [(GET, false), (GET_PINNED, true)] {
            for c in &contenders {
                let path = c.server.kind.counter_path("scale-get", "get");
                let base = c.server.url("");
                let load = shape(o, &base, &path, "", 0, pinned, c.server.pid());
                let r = run(&client, c, &load, pinned, &paths.work).await?;
                check_clean(c.server.kind, workload, &r.wrk)?;
                runs.entry((workload.into(), c.label()))
                    .or_default()
                    .0
                    .push(r);
            }
        }
        for &n in &o.spreads {
            for c in &contenders {
                let kind = c.server.kind;
                if kind == Kind::Hello || (kind == Kind::Workerd && n > o.workerd_max_spread) {
                    continue;
                }
                let prefix = match kind {
                    Kind::Workerd => format!("/scale{n}-"),
                    _ => format!("/counter/scale{n}-"),
                };
                // The rounds measure the steady state, not first activations: the spread's
                // objects are touched first where the server can keep them all live
                // (dohost, each round, since a wider spread evicted them; workerd keeps
                // everything, so once). A spread wider than dohost's live set keeps evicting
                // whatever is done first.
                let warm = match kind {
                    Kind::Workerd => round == 0,
                    _ => u64::from(n) <= sized_live,
                };
                if warm {
                    let started = std::time::Instant::now();
                    touch(&client, &c.server, &format!("scale{n}-"), n).await?;
                    eprintln!(
                        "     {} touched {n} objects in {:?}",
                        c.label(),
                        started.elapsed()
                    );
                }
                let base = c.server.url("");
                let load = shape(o, &base, &prefix, "/increment", n, false, c.server.pid());
                let r = run(&client, c, &load, false, &paths.work).await?;
                check_clean(c.server.kind, &spread_name(n), &r.wrk)?;
                let a = acked.entry((n, c.label())).or_default();
                a.0 += r.wrk.requests as i64;
                a.1 += r.wrk.unanswered_bound(o.connections) as i64;
                runs.entry((spread_name(n), c.label()))
                    .or_default()
                    .0
                    .push(r);
            }
        }
    }

    // Every acknowledged increment is in the counters, and the get object still reads 1.
    for c in &contenders {
        if c.server.kind == Kind::Hello {
            continue;
        }
        ensure!(
            counter(&client, &c.server, "scale-get").await? == 1,
            "{}: scale-get changed under a read-only load",
            c.label()
        );
        for &n in &o.spreads {
            let Some(&(least, slack)) = acked.get(&(n, c.label())) else {
                continue;
            };
            let sum = counter_sum(&client, &c.server, &format!("scale{n}-"), n).await?;
            ensure!(
                (least..=least + slack).contains(&sum),
                "{}: {n} counters sum to {sum} after {least} acknowledged increments",
                c.label()
            );
        }
    }
    for c in contenders {
        c.server.kill().await?;
    }

    let live = if o.live_objects == 0 {
        Err("skipped (--live-objects 0)".into())
    } else {
        keep_live(o, paths).await?
    };
    Ok(Figures {
        opts_rounds: o.rounds,
        runs,
        sized_live,
        live,
    })
}

fn shape<'a>(
    o: &ScaleOpts,
    base: &'a str,
    prefix: &'a str,
    suffix: &'a str,
    spread: u32,
    pinned: bool,
    server_pid: u32,
) -> Load<'a> {
    Load {
        base_url: base,
        prefix,
        suffix,
        spread,
        post: None,
        random: true,
        cpus: pinned.then_some("0"),
        server_pid: Some(server_pid),
        connections: o.connections,
        threads: o.threads,
        duration: o.duration,
    }
}

/// One wrk run against `c`, pinned (the server to CPU 1 for the run) or not.
async fn run(
    client: &reqwest::Client,
    c: &Contender,
    load: &Load<'_>,
    pinned: bool,
    work: &std::path::Path,
) -> Result<Run> {
    let pid = c.server.pid();
    if pinned {
        set_affinity(pid, "1").await?;
    }
    let builds_before = match &c.metrics {
        Some(m) => Some(metric(client, m, "dohost_instance_builds_total").await?),
        None => None,
    };
    let wrk = load::run(load, work).await;
    if pinned {
        set_affinity(pid, &format!("0-{}", cores() - 1)).await?;
    }
    let wrk = wrk?;
    let builds = match (&c.metrics, builds_before) {
        (Some(m), Some(b)) => Some(metric(client, m, "dohost_instance_builds_total").await? - b),
        _ => None,
    };
    let usage = wrk.usage.context("a run without the server's CPU time")?;
    eprintln!(
        "     {}: {:.0}/s, p99 {:?}, server CPU {:?}/request, others {:.1}% of the CPU{}",
        c.label(),
        wrk.rps(),
        wrk.p99,
        usage.server / u32::try_from(wrk.requests.max(1)).unwrap_or(u32::MAX),
        100.0 * usage.others,
        if usage.disturbed() {
            " (disturbed)"
        } else {
            ""
        }
    );
    Ok(Run { wrk, usage, builds })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins every thread of `pid` to `cpus` (`taskset -a -p -c`).
async fn set_affinity(pid: u32, cpus: &str) -> Result<()> {
    let out = tokio::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .await
        .context("running taskset (util-linux)")?;
    ensure!(
        out.status.success(),
        "taskset -a -p -c {cpus} {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A field of dohost's start-up line (`dohost is serving … NAME=VALUE`) in its log.
fn serving_field(log: &std::path::Path, name: &str) -> Result<u64> {
    let text = std::fs::read_to_string(log)?;
    let line = text
        .lines()
        .find(|l| l.contains("dohost is serving"))
        .context("no start-up line in the log")?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .with_context(|| format!("no {name} in {line}"))?
        .parse()
        .with_context(|| format!("{name} in {line}"))
}

/// One value of dohost's Prometheus metrics at `admin`.
async fn metric(client: &reqwest::Client, admin: &str, name: &str) -> Result<u64> {
    let text = probes::get_text(client, &format!("http://{admin}/metrics")).await?;
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .with_context(|| format!("no {name} in the metrics"))?;
    let v: f64 = line
        .split_whitespace()
        .nth(1)
        .context("a metric line without a value")?
        .parse()?;
    Ok(v as u64)
}

/// Memory mappings a host of `live` objects needs (see `wasm::engine`: about ten per live
/// slot, with the 1,064 default deferring and worker slots, and some headroom).
fn maps_needed(live: u32) -> u64 {
    (u64::from(live) + 1_064) * 10 + 4_000
}

/// `live_objects` objects touched on one host sized for them, kept live (idle timeout an
/// hour): resident memory per idle object, then random requests among them.
async fn keep_live(o: &ScaleOpts, paths: &Paths) -> Result<std::result::Result<Live, String>> {
    let n = o.live_objects;
    let cap: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")?
        .trim()
        .parse()?;
    if cap < maps_needed(n) {
        return Ok(Err(format!(
            "not measured: {n} live objects need vm.max_map_count ≥ {}, this machine has \
             {cap} (make bench raises it as root)",
            maps_needed(n)
        )));
    }
    eprintln!("== {n} live objects on one host");
    let client = probes::client();
    let admin = format!("127.0.0.1:{}", crate::servers::free_port()?);
    let flags = [
        "--max-live-objects".to_string(),
        n.to_string(),
        // Each live instance counts its whole initial memory (a Rust counter's is 1.1 MiB)
        // against the budget, though an idle one touches about 60 KiB of it: room for all n,
        // or the budget would evict them before this row could measure n held live.
        "--max-memory".into(),
        (u64::from(n) * (2 << 20)).to_string(),
        "--idle-secs".into(),
        "3600".into(),
        "--admin".into(),
        admin.clone(),
    ];
    let s = Server::start_flagged(paths, "scale-live", &flags, &[]).await?;
    touch(&client, &s, "warmup-", 100).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_before_kib, pss_before_kib) = (s.rss_kib()?, s.pss_kib()?);
    let started = std::time::Instant::now();
    touch(&client, &s, "live-", n).await?;
    eprintln!("   touched {n} in {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_after_kib, pss_after_kib) = (s.rss_kib()?, s.pss_kib()?);
    let live_instances = metric(&client, &admin, "dohost_live_instances").await?;
    let base = s.url("");
    let load = shape(o, &base, "/counter/live-", "/get", n, false, s.pid());
    let wrk = load::run(&load, &paths.work).await?;
    check_clean(Kind::Dohost, "get over the live objects", &wrk)?;
    let after_run = metric(&client, &admin, "dohost_live_instances").await?;
    if after_run < live_instances {
        bail!(
            "{} of {live_instances} instances were evicted during the run",
            live_instances - after_run
        );
    }
    s.kill().await?;
    Ok(Ok(Live {
        objects: n,
        rss_before_kib,
        rss_after_kib,
        pss_before_kib,
        pss_after_kib,
        live_instances,
        wrk,
    }))
}

pub fn table(o: &ScaleOpts, f: &Figures) -> String {
    let get = |w: &str, who: Kind| f.runs.get(&(w.to_string(), who.label()));
    let mut out = format!(
        "
| scale: dohost on default flags (max_live_objects sized to {} here), servers side by \
         side, {} interleaved rounds, medians | dohost | workerd | dohost vs workerd | vs \
         ceiling (axum hello) | target |
| --- | ---: | ---: | ---: | --- | --- |\n",
        f.sized_live, f.opts_rounds
    );
    for w in [GET, GET_PINNED] {
        let (Some(d), Some(h)) = (get(w, Kind::Dohost), get(w, Kind::Hello)) else {
            continue;
        };
        let (d, h) = (d.median(), h.median());
        let wd = get(w, Kind::Workerd).map(Runs::median);
        let share = d.wrk.rps() / h.wrk.rps();
        out.push_str(&format!(
            "| {w} (req/s; p99) | {} ; {} | {} | {} | {:.0}% of {} | {} |\n",
            rate(d.wrk.rps()),
            ms(d.wrk.p99),
            wd.map_or("-".into(), |w| format!(
                "{} ; {}",
                rate(w.wrk.rps()),
                ms(w.wrk.p99)
            )),
            wd.map_or("-".into(), |w| times(d.wrk.rps() / w.wrk.rps())),
            100.0 * share,
            rate(h.wrk.rps()),
            mark(Some(share >= 0.7), "≥ 70% of ceiling"),
        ));
    }
    let base = o
        .spreads
        .first()
        .and_then(|&n| get(&spread_name(n), Kind::Dohost))
        .map(Runs::median);
    for &n in &o.spreads {
        let Some(d) = get(&spread_name(n), Kind::Dohost).map(Runs::median) else {
            continue;
        };
        let wd = get(&spread_name(n), Kind::Workerd).map(Runs::median);
        let of_base = base.map(|b| d.wrk.rps() / b.wrk.rps());
        let target = match (n, of_base) {
            (10_000, Some(r)) => mark(Some(r >= 0.7), "≥ 70% of the first row"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "| {} (req/s; p99; server CPU per request; instances built per request) | {} ; {} \
             ; {:.0} µs ; {:.2} | {} | {} | {} | {} |\n",
            spread_name(n),
            rate(d.wrk.rps()),
            ms(d.wrk.p99),
            d.cpu_per_request().as_secs_f64() * 1e6,
            d.builds_per_request().unwrap_or(0.0),
            wd.map_or("-".into(), |w| format!(
                "{} ; {} ; {:.0} µs",
                rate(w.wrk.rps()),
                ms(w.wrk.p99),
                w.cpu_per_request().as_secs_f64() * 1e6
            )),
            wd.map_or("-".into(), |w| times(d.wrk.rps() / w.wrk.rps())),
            of_base.map_or("-".into(), |r| format!(
                "{:.0}% of the first row",
                100.0 * r
            )),
            target,
        ));
    }
    // One eviction and rebuild: the extra CPU per request of the widest spread over the
    // narrowest, per extra instance built.
    if let (Some(narrow), Some(wide)) = (
        o.spreads
            .first()
            .and_then(|&n| get(&spread_name(n), Kind::Dohost)),
        o.spreads
            .last()
            .and_then(|&n| get(&spread_name(n), Kind::Dohost)),
    ) {
        let (narrow, wide) = (narrow.median(), wide.median());
        let extra_builds =
            wide.builds_per_request().unwrap_or(0.0) - narrow.builds_per_request().unwrap_or(0.0);
        if extra_builds > 0.05 {
            let cost = (wide.cpu_per_request().as_secs_f64()
                - narrow.cpu_per_request().as_secs_f64())
                / extra_builds;
            out.push_str(&format!(
                "| one eviction + instance build (server CPU, from the two rows above) | {:.0} \
                 µs | - | - | - | - |\n",
                cost * 1e6
            ));
        }
    }
    match &f.live {
        Ok(l) => {
            let per =
                (l.rss_after_kib.saturating_sub(l.rss_before_kib)) as f64 / f64::from(l.objects);
            let pss =
                (l.pss_after_kib.saturating_sub(l.pss_before_kib)) as f64 / f64::from(l.objects);
            out.push_str(&format!(
                "| {} objects touched and kept live (`--max-live-objects {}`): RSS per idle \
                 live object; the same counting pages shared by every instance once (PSS); \
                 instances live | {per:.1} KiB ; {pss:.1} KiB ; {} | - | - | RSS {} MiB → {} \
                 MiB | {} |\n",
                l.objects,
                l.objects,
                l.live_instances,
                l.rss_before_kib / 1024,
                l.rss_after_kib / 1024,
                mark(Some(per <= 50.0), "≤ 50 KiB"),
            ));
            out.push_str(&format!(
                "| get, random over those {} live objects (req/s; p99) | {} ; {} | - | - | - | \
                 {} |\n",
                l.objects,
                rate(l.wrk.rps()),
                ms(l.wrk.p99),
                mark(Some(l.wrk.p99 <= Duration::from_millis(10)), "p99 ≤ 10 ms"),
            ));
        }
        Err(why) => out.push_str(&format!(
            "| {} objects kept live | {why} | - | - | - | - |\n",
            o.live_objects
        )),
    }
    out.push_str(&format!(
        "\nEach round runs every workload against every server in turn (wrk {} threads, {} \
         connections, {} s); objects picked at random. {}\n",
        o.threads,
        o.connections,
        o.duration.as_secs(),
        cpu::disturbance(f.runs.values().flat_map(|r| r.0.iter().map(|r| &r.usage))),
    ));
    out
}

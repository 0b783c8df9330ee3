//! `make bench`: the same workloads against dohost, workerd and a bare axum server, one table.
//!
//! Every figure comes from one run on this machine. Each correctness check (counter values
//! against acknowledged responses, the values surviving SIGKILL, every broadcast message
//! arriving in order) must pass or the run fails: a fast wrong answer prints no table.

mod bounds;
mod cluster;
mod cpu;
mod format;
mod load;
mod postgres;
mod probes;
mod scale;
mod servers;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use clap::Parser;

use format::{mark, ms, rate, times};
use load::{Load, WrkResult};
use probes::{counter, counter_sum, quantile, sequential_latencies, touch};
use servers::{Kind, Paths, Server};

/// Benchmark dohost against workerd (and a bare axum "hello" as the HTTP ceiling).
#[derive(Parser, Clone)]
struct Opts {
    /// Seconds each wrk run lasts.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Keep-alive connections wrk holds open.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// wrk threads (this machine has 2 cores, shared with the server under test).
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Objects the spread increment workload cycles through.
    #[arg(long, default_value_t = 1000)]
    objects: u32,
    /// Distinct objects touched before resident memory is read.
    #[arg(long, default_value_t = 10_000)]
    rss_objects: u32,
    /// First requests to new objects timed one by one.
    #[arg(long, default_value_t = 500)]
    cold_samples: u32,
    /// Requests to one warm object timed one by one.
    #[arg(long, default_value_t = 2000)]
    warm_samples: u32,
    /// Sockets listening in the broadcast room (the sender is one more).
    #[arg(long, default_value_t = 32)]
    listeners: u32,
    /// Messages the broadcast sender sends; each reaches every listener.
    #[arg(long, default_value_t = 2000)]
    messages: u32,
    /// wrk runs of the `get` workload (ceiling included); the median one is reported.
    #[arg(long, default_value_t = 3)]
    get_runs: u32,
    /// Measure only dohost (skips workerd; the ratios are then blank).
    #[arg(long)]
    dohost_only: bool,
    /// Skip the PostgreSQL rows (which start a PostgreSQL 15 server of their own), and
    /// with them the cluster's.
    #[arg(long)]
    no_postgres: bool,
    /// Skip the cluster rows (three nodes on etcd and the bench's PostgreSQL).
    #[arg(long)]
    no_cluster: bool,
    /// SIGKILLs of a cluster node whose objects' failover is timed.
    #[arg(long, default_value_t = 4)]
    failover_rounds: usize,
    /// Run only the bounds table (attacks on dohost's limits).
    #[arg(long)]
    bounds_only: bool,
    /// Skip the bounds table.
    #[arg(long)]
    no_bounds: bool,
    /// Memory bombs sent at once (bounds table).
    #[arg(long, default_value_t = 40)]
    bombs: u32,
    /// `--max-memory` of the host the bombs hit, in MiB.
    #[arg(long, default_value_t = 2048)]
    bomb_budget_mib: u64,
    /// Slowloris connections held open (bounds table).
    #[arg(long, default_value_t = 2000)]
    slowloris: u32,
    /// `--header-timeout-ms` of the host they hit.
    #[arg(long, default_value_t = 2000)]
    header_timeout_ms: u64,
    /// Endless loops kept in flight beside the bystander (bounds table).
    #[arg(long, default_value_t = 300)]
    loops: u32,
    /// Seconds the bystander is timed among the loops.
    #[arg(long, default_value_t = 10)]
    loop_secs: u64,
    /// Requests sent at once to one slow object (bounds table).
    #[arg(long, default_value_t = 1500)]
    flood: u32,
    /// WebSockets held open at once (bounds table, as a measurement of scale).
    #[arg(long, default_value_t = 10_000)]
    sockets: u32,
    /// Chat rooms those sockets are spread over.
    #[arg(long, default_value_t = 100)]
    rooms: u32,
    /// Run only the scale table (servers side by side, rounds interleaved).
    #[arg(long)]
    scale_only: bool,
    /// Skip the scale table.
    #[arg(long)]
    no_scale: bool,
    /// Interleaved rounds of the scale table; each workload's median is reported.
    #[arg(long, default_value_t = 3)]
    scale_rounds: u32,
    /// Objects the scale table's random increments are spread over, one row each (the
    /// first is the base the others are compared with).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
    spreads: Vec<u32>,
    /// Objects touched and kept live on one host in the scale table (0 skips the row; it
    /// needs vm.max_map_count of about ten per object).
    #[arg(long, default_value_t = 100_000)]
    live_objects: u32,
}

impl Opts {
    fn scale(&self) -> scale::ScaleOpts {
        scale::ScaleOpts {
            rounds: self.scale_rounds.max(1),
            duration: Duration::from_secs(self.duration),
            connections: self.connections,
            threads: self.threads,
            spreads: self.spreads.clone(),
            workerd_max_spread: 1_000,
            live_objects: self.live_objects,
            dohost_only: self.dohost_only,
        }
    }

    fn bounds(&self) -> bounds::BoundsOpts {
        bounds::BoundsOpts {
            bombs: self.bombs,
            max_memory_mib: self.bomb_budget_mib,
            slowloris: self.slowloris,
            header_timeout_ms: self.header_timeout_ms,
            loops: self.loops,
            loop_cpu_ms: 2000,
            loop_window: Duration::from_secs(self.loop_secs),
            flood: self.flood,
            sockets: self.sockets,
            rooms: self.rooms.max(1),
        }
    }
}

/// What one runtime measured.
#[derive(Default, Clone)]
struct Figures {
    get: WrkResult,
    inc_one: WrkResult,
    inc_spread: WrkResult,
    cold: Vec<Duration>,
    warm: Vec<Duration>,
    rss_per_object_kib: f64,
    rss_total_kib: u64,
    broadcast_per_sec: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let opts = Opts::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bench crate sits in the repository")
        .to_path_buf();
    let paths = Paths {
        work: root.join("target/bench"),
        root,
    };
    std::fs::create_dir_all(&paths.work)?;
    for kind in [
        Kind::Dohost,
        Kind::DohostPostgres,
        Kind::Workerd,
        Kind::Hello,
    ] {
        let _ = std::fs::remove_dir_all(paths.data(kind));
        let _ = std::fs::remove_file(paths.log(kind));
    }

    if opts.bounds_only {
        let table = bounds::table(&bounds::measure(&opts.bounds(), &paths).await?);
        println!("\n{table}");
        std::fs::write(paths.work.join("latest-bounds.md"), &table)?;
        return Ok(());
    }
    if opts.scale_only {
        let table = scale::table(&opts.scale(), &scale::measure(&opts.scale(), &paths).await?);
        println!("\n{table}");
        std::fs::write(paths.work.join("latest-scale.md"), &table)?;
        return Ok(());
    }
    let ceiling = measure_ceiling(&opts, &paths).await?;
    let dohost = measure(Kind::Dohost, &opts, &paths).await?;
    let (on_postgres, on_cluster) = if opts.no_postgres {
        (None, None)
    } else {
        let pg = postgres::Postgres::start()?;
        let single = measure_throughput(Kind::DohostPostgres, &opts, &paths, Some(&pg.url())).await;
        let cluster = match (&single, opts.no_cluster) {
            (Ok(_), false) => match pg.create_database("cluster") {
                Ok(url) => Some(measure_cluster(&opts, &paths, &url).await),
                Err(e) => Some(Err(e)),
            },
            _ => None,
        };
        pg.stop()?;
        (Some(single?), cluster.transpose()?)
    };
    let workerd = if opts.dohost_only {
        None
    } else {
        Some(measure(Kind::Workerd, &opts, &paths).await?)
    };

    let mut table = table(&opts, &dohost, workerd.as_ref(), &ceiling);
    if let Some(pg) = &on_postgres {
        table.push_str(&postgres_table(&opts, pg, workerd.as_ref(), &ceiling));
        if let Some(c) = &on_cluster {
            table.push_str(&cluster_table(&opts, c, pg));
        }
    }
    if !opts.no_scale {
        table.push_str(&scale::table(
            &opts.scale(),
            &scale::measure(&opts.scale(), &paths).await?,
        ));
    }
    if !opts.no_bounds {
        table.push_str(&bounds::table(
            &bounds::measure(&opts.bounds(), &paths).await?,
        ));
    }
    println!("\n{table}");
    std::fs::write(paths.work.join("latest.md"), &table)?;
    println!(
        "(also written to {})",
        paths.work.join("latest.md").display()
    );
    Ok(())
}

fn wrk_load<'a>(opts: &Opts, base: &'a str, prefix: &'a str, suffix: &'a str) -> Load<'a> {
    Load {
        base_url: base,
        prefix,
        suffix,
        spread: 0,
        random: false,
        cpus: None,
        connections: opts.connections,
        threads: opts.threads,
        duration: Duration::from_secs(opts.duration),
    }
}

/// The ceiling: the same request shapes against a server that does nothing.
async fn measure_ceiling(opts: &Opts, paths: &Paths) -> Result<Figures> {
    eprintln!("== axum hello (the ceiling)");
    let s = Server::start(Kind::Hello, paths, 0).await?;
    let base = s.url("");
    let mut f = Figures {
        get: load::median_of(
            opts.get_runs,
            &wrk_load(opts, &base, "/bench-get/get", ""),
            &paths.work,
            |r| check_clean(Kind::Hello, "get", r),
        )
        .await?,
        ..Figures::default()
    };
    eprintln!("   get: {:.0}/s", f.get.rps());
    let cold: Vec<String> = (0..opts.cold_samples)
        .map(|i| format!("/cold-{i}/get"))
        .collect();
    f.cold = sequential_latencies(&s, &cold).await?;
    let warm: Vec<String> = vec!["/bench-get/get".into(); opts.warm_samples as usize];
    f.warm = sequential_latencies(&s, &warm).await?;
    s.kill().await?;
    Ok(f)
}

/// Every workload against one runtime, with its correctness checks.
async fn measure(kind: Kind, opts: &Opts, paths: &Paths) -> Result<Figures> {
    eprintln!("== {}", kind.label());
    let max_live = opts.rss_objects + opts.objects + opts.cold_samples + 100;
    let client = probes::client();
    let mut s = Server::start(kind, paths, max_live).await?;
    let mut f = Figures::default();
    let (one, sum) = throughputs(kind, opts, paths, &s, &mut f).await?;
    let get_path = kind.counter_path("bench-get", "get");

    // Single requests: to new objects (cold), then to a warm one.
    let cold: Vec<String> = (0..opts.cold_samples)
        .map(|i| kind.counter_path(&format!("cold-{i}"), "get"))
        .collect();
    f.cold = sequential_latencies(&s, &cold).await?;
    let warm = vec![get_path.clone(); opts.warm_samples as usize];
    f.warm = sequential_latencies(&s, &warm).await?;
    eprintln!(
        "   cold p50 {:?}, warm p50 {:?}",
        quantile(&f.cold, 0.5),
        quantile(&f.warm, 0.5)
    );

    // Kill without warning and start again on the same data: every acknowledged increment
    // must still be there.
    s = restart_intact(kind, opts, paths, s, max_live, None, (one, sum)).await?;

    // Resident memory per idle live object.
    touch(&client, &s, "rss-warmup-", 100).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = s.rss_kib()?;
    touch(&client, &s, "rss-", opts.rss_objects).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = s.rss_kib()?;
    f.rss_total_kib = after;
    f.rss_per_object_kib = after.saturating_sub(before) as f64 / f64::from(opts.rss_objects);
    eprintln!(
        "   RSS {before} KiB -> {after} KiB after {} objects: {:.1} KiB each",
        opts.rss_objects, f.rss_per_object_kib
    );

    // WebSocket broadcast.
    let b = probes::broadcast(
        &s,
        "bench-room",
        opts.listeners,
        opts.messages,
        100,
        Duration::from_secs(120),
    )
    .await?;
    ensure!(
        b.deliveries == u64::from(opts.listeners) * u64::from(opts.messages),
        "{}: {} of {} broadcast messages arrived",
        kind.label(),
        b.deliveries,
        u64::from(opts.listeners) * u64::from(opts.messages)
    );
    f.broadcast_per_sec = b.per_sec();
    eprintln!("   broadcast: {:.0} deliveries/s", f.broadcast_per_sec);

    s.kill().await?;
    Ok(f)
}

/// The throughput workloads (get, increment one object, increment spread) against the
/// running server `s`, with their correctness checks; answers the counters' values (one
/// object, the sum of the spread).
async fn throughputs(
    kind: Kind,
    opts: &Opts,
    paths: &Paths,
    s: &Server,
    f: &mut Figures,
) -> Result<(i64, i64)> {
    let client = probes::client();
    let base = s.url("");
    // get on one object whose value is 1: it must stay 1, and every answer must be 200.
    probes::get_text(
        &client,
        &s.url(&kind.counter_path("bench-get", "increment")),
    )
    .await?;
    let get_path = kind.counter_path("bench-get", "get");
    f.get = load::median_of(
        opts.get_runs,
        &wrk_load(opts, &base, &get_path, ""),
        &paths.work,
        |r| check_clean(kind, "get", r),
    )
    .await?;
    ensure!(
        counter(&client, s, "bench-get").await? == 1,
        "{}: bench-get changed under a read-only load",
        kind.label()
    );
    eprintln!(
        "   get one object: {:.0}/s, p50 {:?}",
        f.get.rps(),
        f.get.p50
    );

    // increment on one object: the value must cover every acknowledged increment and at most
    // the requests still unanswered when wrk stopped.
    let inc_path = kind.counter_path("bench-inc", "increment");
    f.inc_one = load::run(&wrk_load(opts, &base, &inc_path, ""), &paths.work).await?;
    check_clean(kind, "increment", &f.inc_one)?;
    let one = counter(&client, s, "bench-inc").await?;
    check_count(kind, "increment one object", one, &f.inc_one, opts)?;
    eprintln!(
        "   increment one object: {:.0}/s, value {one} for {} acknowledged",
        f.inc_one.rps(),
        f.inc_one.requests
    );

    // increment spread over `objects` objects: the sum is checked the same way.
    let spread_prefix = match kind {
        Kind::Dohost | Kind::DohostPostgres | Kind::DohostCluster => "/counter/spread-",
        _ => "/spread-",
    };
    let mut spread = wrk_load(opts, &base, spread_prefix, "/increment");
    spread.spread = opts.objects;
    f.inc_spread = load::run(&spread, &paths.work).await?;
    check_clean(kind, "spread increment", &f.inc_spread)?;
    let sum = counter_sum(&client, s, "spread-", opts.objects).await?;
    check_count(kind, "increment spread", sum, &f.inc_spread, opts)?;
    eprintln!(
        "   increment {} objects: {:.0}/s, sum {sum} for {} acknowledged",
        opts.objects,
        f.inc_spread.rps(),
        f.inc_spread.requests
    );

    Ok((one, sum))
}

/// Kills `s` with SIGKILL and starts it again on the same data: the counters must read
/// what they did before (`values`: one object, the spread's sum).
async fn restart_intact(
    kind: Kind,
    opts: &Opts,
    paths: &Paths,
    s: Server,
    max_live: u32,
    storage: Option<&str>,
    (one, sum): (i64, i64),
) -> Result<Server> {
    let client = probes::client();
    s.kill().await?;
    let s = Server::start_with(kind, paths, max_live, storage).await?;
    let one_after = counter(&client, &s, "bench-inc").await?;
    let sum_after = counter_sum(&client, &s, "spread-", opts.objects).await?;
    if one_after != one || sum_after != sum {
        bail!(
            "{}: after SIGKILL and restart the counters read {one_after} and {sum_after}, \
             before {one} and {sum}",
            kind.label()
        );
    }
    eprintln!("   SIGKILL + restart: counters intact");
    Ok(s)
}

/// The throughput workloads only, then the SIGKILL check: for dohost on PostgreSQL.
async fn measure_throughput(
    kind: Kind,
    opts: &Opts,
    paths: &Paths,
    storage: Option<&str>,
) -> Result<Figures> {
    eprintln!("== {}", kind.label());
    let max_live = opts.objects + 100;
    let s = Server::start_with(kind, paths, max_live, storage).await?;
    let mut f = Figures::default();
    let values = throughputs(kind, opts, paths, &s, &mut f).await?;
    let s = restart_intact(kind, opts, paths, s, max_live, storage, values).await?;
    s.kill().await?;
    Ok(f)
}

/// What the three-node cluster measured.
struct ClusterFigures {
    /// The throughput workloads, all sent to node 0.
    f: Figures,
    /// Sequential GETs through node 0: answered there, and forwarded.
    local: Vec<Duration>,
    forwarded: Vec<Duration>,
    /// From SIGKILL to each moved counter served again.
    failover: Vec<Duration>,
}

/// Counters whose failover is timed (about a third of them move with each kill).
const FAILOVER_OBJECTS: u32 = 300;
/// Counters the local and forwarded latencies are sampled on.
const LATENCY_OBJECTS: u32 = 600;

/// Three nodes on etcd and PostgreSQL database `storage`: the throughput workloads through
/// one node, a local against a forwarded request, and failover after SIGKILL.
async fn measure_cluster(opts: &Opts, paths: &Paths, storage: &str) -> Result<ClusterFigures> {
    eprintln!("== dohost cluster ({} nodes)", cluster::NODES);
    let max_live = opts.objects + LATENCY_OBJECTS + FAILOVER_OBJECTS + 100;
    let mut c = cluster::Cluster::start(paths, storage, max_live).await?;
    let mut f = Figures::default();
    throughputs(Kind::DohostCluster, opts, paths, c.node(0), &mut f).await?;
    let (local, forwarded) = c.latencies(LATENCY_OBJECTS).await?;
    eprintln!(
        "   GET through node 0: p50 {:?} answered there ({}), {:?} forwarded ({})",
        quantile(&local, 0.5),
        local.len(),
        quantile(&forwarded, 0.5),
        forwarded.len()
    );
    let failover = c
        .failover(paths, opts.failover_rounds, FAILOVER_OBJECTS)
        .await?;
    eprintln!(
        "   failover after SIGKILL: p50 {:?}, max {:?} over {} moved counters",
        quantile(&failover, 0.5),
        quantile(&failover, 1.0),
        failover.len()
    );
    c.stop().await?;
    Ok(ClusterFigures {
        f,
        local,
        forwarded,
        failover,
    })
}

/// The cluster rows, under the PostgreSQL ones: beside one node on the same database
/// server. Two cores serve all three nodes here, so no gain from more nodes is expected:
/// the rows show what forwarding and failover cost.
fn cluster_table(opts: &Opts, c: &ClusterFigures, single: &Figures) -> String {
    let mut out = format!(
        "
| dohost cluster: {} nodes, one etcd, one PostgreSQL, all on these 2 cores; requests to \
         one node | cluster | one node on PostgreSQL | cluster vs one node | target |
| --- | ---: | ---: | ---: | --- |\n",
        cluster::NODES
    );
    let rows = [
        ("get, one object", &c.f.get, &single.get),
        ("increment, one object", &c.f.inc_one, &single.inc_one),
        (
            &*format!("increment, {} objects", opts.objects),
            &c.f.inc_spread,
            &single.inc_spread,
        ),
    ];
    for (name, cr, sr) in rows {
        out.push_str(&format!(
            "| {name} (req/s; p99) | {} ; {} | {} ; {} | {} | - |\n",
            rate(cr.rps()),
            ms(cr.p99),
            rate(sr.rps()),
            ms(sr.p99),
            times(cr.rps() / sr.rps()),
        ));
    }
    let (local, forwarded) = (quantile(&c.local, 0.5), quantile(&c.forwarded, 0.5));
    let ratio = forwarded.as_secs_f64() / local.as_secs_f64();
    out.push_str(&format!(
        "| GET, one at a time (p50): answered by the node asked ({}) / forwarded ({}) | {} / \
         {} | - | {} | {} |\n",
        c.local.len(),
        c.forwarded.len(),
        ms(local),
        ms(forwarded),
        times(ratio),
        mark(Some(ratio <= 2.0), "forwarded ≤ 2× local"),
    ));
    let (p50, max) = (quantile(&c.failover, 0.5), quantile(&c.failover, 1.0));
    out.push_str(&format!(
        "| failover after SIGKILL: until each moved counter is served again ({} counters, \
         {} kills) | p50 {:.2} s, max {:.2} s | - | - | {}; {} |\n",
        c.failover.len(),
        opts.failover_rounds,
        p50.as_secs_f64(),
        max.as_secs_f64(),
        mark(Some(p50 <= Duration::from_secs(3)), "p50 ≤ 3 s"),
        mark(Some(max <= Duration::from_secs(5)), "max ≤ 5 s"),
    ));
    out
}

/// The PostgreSQL rows, under the main table.
fn postgres_table(opts: &Opts, p: &Figures, w: Option<&Figures>, c: &Figures) -> String {
    let mut out = String::from(
        "
| dohost on PostgreSQL 15 (same machine, fsync on) | dohost | workerd | dohost vs \
         workerd | vs ceiling (axum hello) | target |\n| --- | ---: | ---: | ---: | --- | --- |\n",
    );
    let rows = [
        ("get, one object", &p.get, w.map(|w| &w.get), None),
        (
            "increment, one object",
            &p.inc_one,
            w.map(|w| &w.inc_one),
            None,
        ),
        (
            &*format!("increment, {} objects", opts.objects),
            &p.inc_spread,
            w.map(|w| &w.inc_spread),
            Some(5.0),
        ),
    ];
    for (name, dr, wr, target) in rows {
        let ratio = wr.map(|w| dr.rps() / w.rps());
        let target = match target {
            Some(t) => format!(
                "{}; ",
                mark(ratio.map(|r| r >= t), &format!("≥ {t}× workerd"))
            ),
            None => String::new(),
        };
        out.push_str(&format!(
            "| {name} (req/s; p99) | {} ; {} | {} | {} | {:.0}% of {} | {}{} |\n",
            rate(dr.rps()),
            ms(dr.p99),
            wr.map_or("-".into(), |w| format!("{} ; {}", rate(w.rps()), ms(w.p99))),
            ratio.map_or("-".into(), times),
            100.0 * dr.rps() / c.get.rps(),
            rate(c.get.rps()),
            target,
            mark(wr.map(|w| dr.p99 < w.p99), "p99 below workerd"),
        ));
    }
    out
}

/// A run only counts if every answer was a success and nothing timed out.
fn check_clean(kind: Kind, what: &str, r: &WrkResult) -> Result<()> {
    ensure!(
        r.status_errors == 0 && r.connect_errors == 0 && r.timeouts == 0 && r.requests > 0,
        "{} {what}: {} requests, {} non-2xx, {} connect errors, {} timeouts",
        kind.label(),
        r.requests,
        r.status_errors,
        r.connect_errors,
        r.timeouts
    );
    Ok(())
}

/// `value` increments were applied: at least every acknowledged one, and at most those plus
/// the requests wrk left unanswered when it stopped.
fn check_count(kind: Kind, what: &str, value: i64, r: &WrkResult, opts: &Opts) -> Result<()> {
    let acked = r.requests as i64;
    let most = acked + r.unanswered_bound(opts.connections) as i64;
    ensure!(
        (acked..=most).contains(&value),
        "{} {what}: the counters read {value} after {acked} acknowledged increments \
         (at most {most} possible)",
        kind.label()
    );
    Ok(())
}

/// One row: the two figures, how many times better dohost is (higher is better for rates,
/// lower for latency and memory), and dohost's share of the ceiling.
struct Row {
    workload: String,
    dohost: String,
    workerd: String,
    ratio: String,
    ceiling: String,
    target: String,
}

fn table(opts: &Opts, d: &Figures, w: Option<&Figures>, c: &Figures) -> String {
    let mut rows = Vec::new();
    let mut rate_row = |name: &str, dr: &WrkResult, wr: Option<&WrkResult>, target: f64| {
        let ratio = wr.map(|w| dr.rps() / w.rps());
        let met = ratio.map(|r| r >= target);
        rows.push(Row {
            workload: format!("{name} (req/s)"),
            dohost: rate(dr.rps()),
            workerd: wr.map_or("-".into(), |w| rate(w.rps())),
            ratio: ratio.map_or("-".into(), times),
            ceiling: format!(
                "{:.0}% of {}",
                100.0 * dr.rps() / c.get.rps(),
                rate(c.get.rps())
            ),
            target: mark(met, &format!("≥ {target}× workerd")),
        });
        let p99_ratio = wr.map(|w| w.p99.as_secs_f64() / dr.p99.as_secs_f64());
        rows.push(Row {
            workload: format!("{name} p99"),
            dohost: ms(dr.p99),
            workerd: wr.map_or("-".into(), |w| ms(w.p99)),
            ratio: p99_ratio.map_or("-".into(), times),
            ceiling: format!("hello {}", ms(c.get.p99)),
            target: mark(wr.map(|w| dr.p99 < w.p99), "below workerd"),
        });
    };
    rate_row("get, one object", &d.get, w.map(|w| &w.get), 5.0);
    rate_row(
        "increment, one object",
        &d.inc_one,
        w.map(|w| &w.inc_one),
        10.0,
    );
    rate_row(
        &format!("increment, {} objects", opts.objects),
        &d.inc_spread,
        w.map(|w| &w.inc_spread),
        10.0,
    );
    // The get row has a second target: 70% of the ceiling.
    let share = d.get.rps() / c.get.rps();
    rows[0].target = format!(
        "{}; {}",
        rows[0].target,
        mark(Some(share >= 0.7), "≥ 70% of ceiling")
    );

    // Single-request latency: cold p50 has its own target, every p99 must beat workerd's.
    let single = [
        (
            "cold first request",
            &d.cold,
            w.map(|w| &w.cold),
            &c.cold,
            true,
        ),
        ("warm request", &d.warm, w.map(|w| &w.warm), &c.warm, false),
    ];
    for (workload, ds, ws, cs, cold) in single {
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            let dq = quantile(ds, q);
            let wq = ws.map(|ws| quantile(ws, q));
            let target = match (name, cold) {
                ("p99", _) => mark(wq.map(|wq| dq < wq), "below workerd"),
                (_, true) => mark(Some(dq < Duration::from_micros(500)), "< 0.5 ms"),
                _ => String::new(),
            };
            rows.push(Row {
                workload: format!("{workload} {name}"),
                dohost: ms(dq),
                workerd: wq.map_or("-".into(), ms),
                ratio: wq.map_or("-".into(), |wq| times(wq.as_secs_f64() / dq.as_secs_f64())),
                ceiling: format!("hello {}", ms(quantile(cs, q))),
                target,
            });
        }
    }
    rows.push(Row {
        workload: format!("RSS per idle live object ({} touched)", opts.rss_objects),
        dohost: format!("{:.1} KiB", d.rss_per_object_kib),
        workerd: w.map_or("-".into(), |w| format!("{:.1} KiB", w.rss_per_object_kib)),
        ratio: w.map_or("-".into(), |w| {
            times(w.rss_per_object_kib / d.rss_per_object_kib)
        }),
        ceiling: format!(
            "total {} MiB / {}",
            d.rss_total_kib / 1024,
            w.map_or("-".into(), |w| format!("{} MiB", w.rss_total_kib / 1024))
        ),
        target: mark(Some(d.rss_per_object_kib < 50.0), "< 50 KiB"),
    });
    rows.push(Row {
        workload: format!(
            "WebSocket broadcast ({} listeners, deliveries/s)",
            opts.listeners
        ),
        dohost: rate(d.broadcast_per_sec),
        workerd: w.map_or("-".into(), |w| rate(w.broadcast_per_sec)),
        ratio: w.map_or("-".into(), |w| {
            times(d.broadcast_per_sec / w.broadcast_per_sec)
        }),
        ceiling: String::new(),
        target: String::new(),
    });

    let mut out = String::from(
        "| workload | dohost | workerd | dohost vs workerd | vs ceiling (axum hello) | target |\n\
         | --- | ---: | ---: | ---: | --- | --- |\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.workload, r.dohost, r.workerd, r.ratio, r.ceiling, r.target
        ));
    }
    out.push_str(&format!(
        "\nwrk: {} threads, {} keep-alive connections, {} s per run, `get` (and the ceiling) \
         the median of {} runs; ratios are how many times better dohost is (more requests, \
         less latency, less memory).\n",
        opts.threads,
        opts.connections,
        opts.duration,
        opts.get_runs.max(1)
    ));
    out
}

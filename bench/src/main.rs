//! `make bench`: the same workloads against dohost, workerd and a bare axum server, one table.
//!
//! Every figure comes from one run on this machine. Each correctness check (counter values
//! against acknowledged responses, the values surviving SIGKILL, every broadcast message
//! arriving in order) must pass or the run fails: a fast wrong answer prints no table.

mod bounds;
mod cluster;
mod cpu;
mod fanout;
mod format;
mod load;
mod postgres;
mod probes;
mod rounds;
mod scale;
mod servers;
mod sql;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use clap::Parser;

use format::{mark, ms, rate, times};
use load::WrkResult;
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
    /// Connections that ask for a large answer and read only its status line (bounds
    /// table).
    #[arg(long, default_value_t = 60)]
    unread: u32,
    /// MiB of each answer they leave unread.
    #[arg(long, default_value_t = 16)]
    unread_answer_mib: u64,
    /// `--max-memory` of the host they hit, in MiB.
    #[arg(long, default_value_t = 512)]
    unread_budget_mib: u64,
    /// `--write-timeout-ms` of that host.
    #[arg(long, default_value_t = 3000)]
    write_timeout_ms: u64,
    /// Connections that send the HTTP/2 preface and then idle (bounds table); also that
    /// host's `--max-connections`.
    #[arg(long, default_value_t = 300)]
    h2c: u32,
    /// Python objects created one after another (bounds table).
    #[arg(long, default_value_t = 2000)]
    py_objects: u32,
    /// `--max-memory` of the host they run on, in MiB.
    #[arg(long, default_value_t = 256)]
    py_budget_mib: u64,
    /// The bounds rows to run, comma-separated, in that order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = bounds::Bound::ALL)]
    bounds_rows: Vec<bounds::Bound>,
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
    /// Run only the fan-out table (WebSocket broadcast and server-sent events).
    #[arg(long)]
    fanout_only: bool,
    /// Skip the fan-out table.
    #[arg(long)]
    no_fanout: bool,
    /// Clients of the one object in the fan-out table.
    #[arg(long, default_value_t = 1000)]
    fanout_clients: u32,
    /// Messages each fan-out client receives.
    #[arg(long, default_value_t = 1000)]
    fanout_messages: u32,
    /// Run only the SQL table (servers side by side, rounds interleaved; its PostgreSQL row
    /// unless --no-postgres).
    #[arg(long)]
    sql_only: bool,
    /// Skip the SQL table.
    #[arg(long)]
    no_sql: bool,
    /// Interleaved rounds of the SQL table; each workload's median is reported.
    #[arg(long, default_value_t = 3)]
    sql_rounds: u32,
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

    fn fanout(&self) -> fanout::FanoutOpts {
        fanout::FanoutOpts {
            clients: self.fanout_clients.max(1),
            messages: self.fanout_messages.max(1),
        }
    }

    fn sql(&self) -> sql::SqlOpts {
        sql::SqlOpts {
            rounds: self.sql_rounds.max(1),
            duration: Duration::from_secs(self.duration),
            connections: self.connections,
            threads: self.threads,
            objects: self.objects.max(1),
            rss_objects: self.rss_objects,
            dohost_only: self.dohost_only,
            postgres: !self.no_postgres,
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
            unread: self.unread,
            unread_answer_mib: self.unread_answer_mib,
            unread_budget_mib: self.unread_budget_mib,
            write_timeout_ms: self.write_timeout_ms,
            h2c: self.h2c,
            py_objects: self.py_objects,
            py_budget_mib: self.py_budget_mib,
            rows: self.bounds_rows.clone(),
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
    /// What each throughput run left to other processes.
    usages: Vec<cpu::Usage>,
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
    if opts.fanout_only {
        let table = fanout::table(
            &opts.fanout(),
            &fanout::measure(&opts.fanout(), &paths).await?,
        );
        println!("\n{table}");
        std::fs::write(paths.work.join("latest-fanout.md"), &table)?;
        return Ok(());
    }
    if opts.sql_only {
        let table = sql::table(&opts.sql(), &sql::measure(&opts.sql(), &paths).await?);
        println!("\n{table}");
        std::fs::write(paths.work.join("latest-sql.md"), &table)?;
        return Ok(());
    }
    if opts.scale_only {
        let table = scale::table(&opts.scale(), &scale::measure(&opts.scale(), &paths).await?);
        println!("\n{table}");
        std::fs::write(paths.work.join("latest-scale.md"), &table)?;
        return Ok(());
    }
    let (ceiling, dohost, workerd) = measure_side_by_side(&opts, &paths).await?;
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
    if !opts.no_fanout {
        table.push_str(&fanout::table(
            &opts.fanout(),
            &fanout::measure(&opts.fanout(), &paths).await?,
        ));
    }
    if !opts.no_sql {
        table.push_str(&sql::table(
            &opts.sql(),
            &sql::measure(&opts.sql(), &paths).await?,
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

impl Opts {
    /// The throughput rounds: `get_runs` of each workload against each server.
    fn shape(&self) -> rounds::Shape {
        rounds::Shape {
            rounds: self.get_runs.max(1),
            connections: self.connections,
            threads: self.threads,
            duration: Duration::from_secs(self.duration),
            objects: self.objects,
        }
    }
}

impl Figures {
    fn from_throughput(t: &rounds::Throughput) -> Figures {
        Figures {
            get: t.get,
            inc_one: t.inc_one,
            inc_spread: t.inc_spread,
            usages: t.usages.clone(),
            ..Figures::default()
        }
    }
}

/// The main table: the ceiling, dohost and workerd kept up together for the throughput
/// rounds (interleaved), then each one's single requests, SIGKILL check, memory and
/// broadcast in turn. Answers the ceiling's, dohost's and workerd's figures.
async fn measure_side_by_side(
    opts: &Opts,
    paths: &Paths,
) -> Result<(Figures, Figures, Option<Figures>)> {
    eprintln!("== the main table: servers side by side");
    let max_live = opts.rss_objects + opts.objects + opts.cold_samples + 100;
    let hello = Server::start(Kind::Hello, paths, 0).await?;
    let dohost = Server::start(Kind::Dohost, paths, max_live).await?;
    let workerd = match opts.dohost_only {
        true => None,
        false => Some(Server::start(Kind::Workerd, paths, max_live).await?),
    };
    let mut servers = vec![&dohost];
    servers.extend(workerd.as_ref());
    servers.push(&hello);
    let t = rounds::measure(&opts.shape(), &servers, &paths.work).await?;
    let mut ceiling = Figures::from_throughput(&t[t.len() - 1]);
    latencies(Kind::Hello, opts, &hello, &mut ceiling).await?;
    hello.kill().await?;
    let d = finish(Kind::Dohost, opts, paths, dohost, &t[0], max_live).await?;
    let w = match workerd {
        Some(w) => Some(finish(Kind::Workerd, opts, paths, w, &t[1], max_live).await?),
        None => None,
    };
    Ok((ceiling, d, w))
}

/// Single requests, one at a time: to new objects (cold), then to a warm one.
async fn latencies(kind: Kind, opts: &Opts, s: &Server, f: &mut Figures) -> Result<()> {
    let cold: Vec<String> = (0..opts.cold_samples)
        .map(|i| kind.counter_path(&format!("cold-{i}"), "get"))
        .collect();
    f.cold = sequential_latencies(s, &cold).await?;
    let warm = vec![kind.counter_path("bench-get", "get"); opts.warm_samples as usize];
    f.warm = sequential_latencies(s, &warm).await?;
    eprintln!(
        "   {}: cold p50 {:?}, warm p50 {:?}",
        kind.label(),
        quantile(&f.cold, 0.5),
        quantile(&f.warm, 0.5)
    );
    Ok(())
}

/// After the throughput rounds, the rest of one runtime's workloads, with their checks.
async fn finish(
    kind: Kind,
    opts: &Opts,
    paths: &Paths,
    s: Server,
    t: &rounds::Throughput,
    max_live: u32,
) -> Result<Figures> {
    eprintln!("== {}", kind.label());
    let client = probes::client();
    let mut f = Figures::from_throughput(t);
    latencies(kind, opts, &s, &mut f).await?;

    // Kill without warning and start again on the same data: every acknowledged increment
    // must still be there.
    let s = restart_intact(kind, opts, paths, s, max_live, None, t.values).await?;

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
    let t = rounds::measure(&opts.shape(), &[&s], &paths.work)
        .await?
        .remove(0);
    let f = Figures::from_throughput(&t);
    let s = restart_intact(kind, opts, paths, s, max_live, storage, t.values).await?;
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
    let f = Figures::from_throughput(
        &rounds::measure(&opts.shape(), &[c.node(0)], &paths.work).await?[0],
    );
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
    let runs = [Some(d), w, Some(c)]
        .into_iter()
        .flatten()
        .flat_map(|f| &f.usages);
    out.push_str(&format!(
        "\nwrk: {} threads, {} keep-alive connections, {} s per run; the servers up side by \
         side, each throughput row the median of {} interleaved rounds; ratios are how many \
         times better dohost is (more requests, less latency, less memory). {}\n",
        opts.threads,
        opts.connections,
        opts.duration,
        opts.get_runs.max(1),
        cpu::disturbance(runs),
    ));
    out
}

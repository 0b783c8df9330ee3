//! The main table's throughput workloads (`get`, increment one object, increment a spread)
//! against several servers kept up at once, in interleaved rounds (A, B, C, A, B, C …) so a
//! disturbance lands on all of them alike; each workload's median run is reported, and the
//! counters are checked against every acknowledged increment of every round.

use std::time::Duration;

use anyhow::{Result, ensure};

use crate::load::{self, Load, WrkResult};
use crate::probes::{self, counter, counter_sum};
use crate::servers::{Kind, Server};

/// The shape of every run.
pub struct Shape {
    pub rounds: u32,
    pub connections: u32,
    pub threads: u32,
    pub duration: Duration,
    /// Objects the spread increments walk through.
    pub objects: u32,
}

/// What one server measured (a ceiling only `get`).
#[derive(Default, Clone)]
pub struct Throughput {
    pub get: WrkResult,
    pub inc_one: WrkResult,
    pub inc_spread: WrkResult,
    /// The counters after the rounds: the one object's, and the sum of the spread's.
    pub values: (i64, i64),
    /// What every run (not only the medians) left to other processes.
    pub usages: Vec<crate::cpu::Usage>,
}

/// The runs of one workload against one server.
#[derive(Default)]
struct Runs(Vec<WrkResult>);

impl Runs {
    fn median(&self) -> WrkResult {
        load::median(&self.0, WrkResult::rps).unwrap_or_default()
    }

    /// Increments acknowledged over the runs, and at most how many more may have been
    /// applied (requests left unanswered when wrk stopped).
    fn acknowledged(&self, connections: u32) -> (i64, i64) {
        self.0.iter().fold((0, 0), |(a, s), r| {
            (
                a + r.requests as i64,
                s + r.unanswered_bound(connections) as i64,
            )
        })
    }
}

fn load<'a>(
    shape: &Shape,
    s: &Server,
    base: &'a str,
    prefix: &'a str,
    suffix: &'a str,
) -> Load<'a> {
    Load {
        base_url: base,
        prefix,
        suffix,
        spread: 0,
        post: None,
        random: false,
        cpus: None,
        server_pid: Some(s.pid()),
        connections: shape.connections,
        threads: shape.threads,
        duration: shape.duration,
    }
}

/// The spread's paths on `kind`: `{prefix}{i}{suffix}`.
fn spread_prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::Dohost | Kind::DohostPostgres | Kind::DohostCluster => "/counter/spread-",
        _ => "/spread-",
    }
}

/// Every workload against every server, `shape.rounds` times, in turn; with its checks.
pub async fn measure(
    shape: &Shape,
    servers: &[&Server],
    work: &std::path::Path,
) -> Result<Vec<Throughput>> {
    let client = probes::client();
    // The get object holds 1 throughout.
    for s in servers.iter().filter(|s| s.kind != Kind::Hello) {
        probes::get_text(
            &client,
            &s.url(&s.kind.counter_path("bench-get", "increment")),
        )
        .await?;
    }
    // The three workloads, in the order each round runs them: get (every server), then
    // increments on one object and on the spread (not the ceiling, which counts nothing).
    let workloads = [
        ("get one object", "get", false),
        ("increment one object", "increment", false),
        ("increment the spread", "spread increment", true),
    ];
    // runs[server][workload]
    let mut runs: Vec<[Runs; 3]> = servers.iter().map(|_| Default::default()).collect();
    for round in 0..shape.rounds.max(1) {
        eprintln!("   round {}", round + 1);
        for (w, &(what, check, spread)) in workloads.iter().enumerate() {
            for (i, s) in servers.iter().enumerate() {
                if w > 0 && s.kind == Kind::Hello {
                    continue;
                }
                let base = s.url("");
                let path = match w {
                    0 => s.kind.counter_path("bench-get", "get"),
                    1 => s.kind.counter_path("bench-inc", "increment"),
                    _ => spread_prefix(s.kind).to_string(),
                };
                let mut l = load(
                    shape,
                    s,
                    &base,
                    &path,
                    if spread { "/increment" } else { "" },
                );
                if spread {
                    l.spread = shape.objects;
                }
                let r = load::run(&l, work).await?;
                check_clean(s.kind, check, &r)?;
                report(s.kind, what, &r);
                runs[i][w].0.push(r);
            }
        }
    }
    let mut out = Vec::with_capacity(servers.len());
    for (s, [get, one, spread]) in servers.iter().zip(&runs) {
        let mut t = Throughput {
            get: get.median(),
            inc_one: one.median(),
            inc_spread: spread.median(),
            values: (0, 0),
            usages: [get, one, spread]
                .iter()
                .flat_map(|runs| runs.0.iter().filter_map(|r| r.usage))
                .collect(),
        };
        if s.kind != Kind::Hello {
            ensure!(
                counter(&client, s, "bench-get").await? == 1,
                "{}: bench-get changed under a read-only load",
                s.kind.label()
            );
            t.values = (
                counter(&client, s, "bench-inc").await?,
                counter_sum(&client, s, "spread-", shape.objects).await?,
            );
            check_count(s.kind, "increment one object", t.values.0, one, shape)?;
            check_count(s.kind, "increment spread", t.values.1, spread, shape)?;
        }
        out.push(t);
    }
    Ok(out)
}

fn report(kind: Kind, what: &str, r: &WrkResult) {
    report_as(kind.label(), what, r)
}

/// One run's progress line: rate, latencies and the CPU share others took.
pub fn report_as(label: &str, what: &str, r: &WrkResult) {
    eprintln!(
        "     {label}: {what}: {:.0}/s, p50 {:?}, p99 {:?}{}",
        r.rps(),
        r.p50,
        r.p99,
        r.usage.map_or(String::new(), |u| format!(
            ", others {:.1}% of the CPU{}",
            100.0 * u.others,
            if u.disturbed() { " (disturbed)" } else { "" }
        ))
    );
}

/// A run only counts if every answer was a success and nothing timed out.
pub fn check_clean(kind: Kind, what: &str, r: &WrkResult) -> Result<()> {
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
/// the requests wrk left unanswered when each run stopped.
fn check_count(kind: Kind, what: &str, value: i64, runs: &Runs, shape: &Shape) -> Result<()> {
    let (acked, slack) = runs.acknowledged(shape.connections);
    ensure!(
        (acked..=acked + slack).contains(&value),
        "{} {what}: the counters read {value} after {acked} acknowledged increments \
         (at most {} possible)",
        kind.label(),
        acked + slack
    );
    Ok(())
}

//! Throughput runs with wrk: keep-alive connections, a fixed duration, exact counts back.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

/// What one wrk run reports (its Lua `done` hook prints the raw numbers, so nothing is read
/// back from rounded human-readable text).
#[derive(Clone, Copy, Debug, Default)]
pub struct WrkResult {
    /// Responses received, whatever their status.
    pub requests: u64,
    pub duration: Duration,
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    /// Responses whose status was not 2xx or 3xx.
    pub status_errors: u64,
    pub timeouts: u64,
    pub p50: Duration,
    pub p99: Duration,
    /// What the server and other processes used during the run, when its pid was given.
    pub usage: Option<crate::cpu::Usage>,
}

impl WrkResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.duration.as_secs_f64()
    }

    /// Requests that were sent but whose answer never came: each may or may not have been
    /// applied, which bounds how far a counter may run ahead of the acknowledged count.
    pub fn unanswered_bound(&self, connections: u32) -> u64 {
        u64::from(connections) + self.timeouts + self.read_errors + self.write_errors
    }
}

/// The shape of a run.
pub struct Load<'a> {
    pub base_url: &'a str,
    /// Path of every request, or with `spread > 0`, `{prefix}{i % spread}{suffix}`.
    pub prefix: &'a str,
    pub suffix: &'a str,
    pub spread: u32,
    /// POST with this body instead of GET.
    pub post: Option<&'a str>,
    /// With `spread`, pick each object at random (each wrk thread seeded apart) instead of
    /// walking them in turn.
    pub random: bool,
    /// CPUs wrk is pinned to (`taskset -c`), if any.
    pub cpus: Option<&'a str>,
    /// The server's process, whose CPU time (and everyone else's) is read around the run.
    pub server_pid: Option<u32>,
    pub connections: u32,
    pub threads: u32,
    pub duration: Duration,
}

const DONE_HOOK: &str = r#"
function done(summary, latency, requests)
  io.write(string.format("DOHOST-BENCH %d %d %d %d %d %d %d %d %d\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// The run with the median rate of `runs` (the higher of the two middle ones), if any. On
/// this shared two-core VM one 10 s run of the same server varies by up to a third, which a
/// ratio of two single runs inherits twice.
pub fn median<T: Clone>(runs: &[T], rate: impl Fn(&T) -> f64) -> Option<T> {
    let mut v = runs.to_vec();
    v.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    v.get(v.len() / 2).cloned()
}

/// Runs wrk once and returns its exact figures.
pub async fn run(load: &Load<'_>, work: &Path) -> Result<WrkResult> {
    let mut script = String::new();
    if let Some(body) = load.post {
        // wrk.format (and wrk's own request) take the method and body from these.
        script.push_str(&format!("wrk.method = \"POST\"\nwrk.body = {body:?}\n"));
    }
    let url = if load.spread > 0 && load.random {
        script.push_str(&format!(
            "local threads = 0\nfunction setup(thread)\n  threads = threads + 1\n  thread:set(\"seed\", threads)\nend\nfunction init(args)\n  math.randomseed(seed * 7919)\nend\nfunction request()\n  return wrk.format(nil, \"{}\" .. math.random(0, {}) .. \"{}\")\nend\n",
            load.prefix,
            load.spread - 1,
            load.suffix
        ));
        format!("{}/", load.base_url)
    } else if load.spread > 0 {
        // Each wrk thread walks the objects in turn, so every object sees traffic.
        script.push_str(&format!(
            "local i = 0\nfunction request()\n  i = i + 1\n  return wrk.format(nil, \"{}\" .. (i % {}) .. \"{}\")\nend\n",
            load.prefix, load.spread, load.suffix
        ));
        format!("{}/", load.base_url)
    } else {
        format!("{}{}{}", load.base_url, load.prefix, load.suffix)
    };
    script.push_str(DONE_HOOK);
    let script_path = work.join("wrk.lua");
    std::fs::write(&script_path, script)?;
    let mut wrk = match load.cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus, "wrk"]);
            c
        }
        None => Command::new("wrk"),
    };
    let before = load.server_pid.map(crate::cpu::sample).transpose()?;
    let out = wrk
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.duration.as_secs()))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(&script_path)
        .arg(&url)
        .output()
        .await
        .context("running wrk (make bench installs it from Debian's packages)")?;
    let usage = match (before, load.server_pid) {
        (Some(before), Some(pid)) => Some(crate::cpu::between(&before, &crate::cpu::sample(pid)?)),
        _ => None,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DOHOST-BENCH "))
        .with_context(|| format!("wrk printed no result line:\n{stdout}"))?;
    let n: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("wrk's result line")?;
    if n.len() != 9 {
        bail!("wrk's result line has {} numbers: {line}", n.len());
    }
    Ok(WrkResult {
        requests: n[0],
        duration: Duration::from_micros(n[1]),
        connect_errors: n[2],
        read_errors: n[3],
        write_errors: n[4],
        status_errors: n[5],
        timeouts: n[6],
        p50: Duration::from_micros(n[7]),
        p99: Duration::from_micros(n[8]),
        usage,
    })
}

//! CPU time of the machine, of a server and of the bench itself (wrk included, as its
//! waited-for child), to tell how much of a run other processes took.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Clock ticks per second of `/proc`'s figures (`USER_HZ`, 100 on every Linux we run on).
const TICKS_PER_SEC: u64 = 100;

/// A run's share of the machine taken by others past which its figures are flagged.
pub const DISTURBED_SHARE: f64 = 0.05;

/// CPU counters at one moment.
#[derive(Clone, Copy)]
pub struct Sample {
    at: Instant,
    /// Every CPU's busy time (not idle, not waiting on I/O).
    machine: u64,
    server: u64,
    /// The bench and its waited-for children (wrk runs end before a sample is taken).
    bench: u64,
}

/// What one run used.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// The server process's CPU time (all its threads).
    pub server: Duration,
    /// Share of all the machine's CPU time that neither the server nor the bench (wrk
    /// included) nor the kernel's threads and interrupts used: other processes disturbing
    /// the run.
    pub others: f64,
}

impl Usage {
    pub fn disturbed(&self) -> bool {
        self.others > DISTURBED_SHARE
    }
}

pub fn sample(server_pid: u32) -> Result<Sample> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat.lines().next().context("/proc/stat is empty")?;
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("/proc/stat's cpu line")?;
    // user nice system idle iowait irq softirq steal …: interrupts are left out (the
    // loopback traffic of the run itself is handled there, charged to no process), and so
    // is the kernel's own threads' time (the run's writeback and fsyncs).
    let machine = [0, 1, 2, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>()
        .saturating_sub(kernel_threads_ticks());
    let server = process_ticks(&format!("/proc/{server_pid}/stat"), false)?;
    let bench = process_ticks("/proc/self/stat", true)?;
    Ok(Sample {
        at: Instant::now(),
        machine,
        server,
        bench,
    })
}

/// Flag of a kernel thread in `/proc/PID/stat` (`PF_KTHREAD`).
const PF_KTHREAD: u64 = 0x0020_0000;

/// CPU time of every kernel thread (kworkers, ksoftirqd, jbd2 …).
fn kernel_threads_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name();
        let pid = name.to_str()?;
        pid.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
        // A process may be gone by the time it is read.
        let f = StatFields::read(&format!("/proc/{pid}/stat")).ok()?;
        if f.get(9).ok()? & PF_KTHREAD == 0 {
            return None;
        }
        Some(f.get(14).ok()? + f.get(15).ok()?)
    })
    .sum()
}

/// utime + stime of a process (and with `children`, of its waited-for children too).
fn process_ticks(path: &str, children: bool) -> Result<u64> {
    let f = StatFields::read(path)?;
    let mut t = f.get(14)? + f.get(15)?;
    if children {
        t += f.get(16)? + f.get(17)?;
    }
    Ok(t)
}

/// The fields of a `/proc/PID/stat` file after the command name (which may hold spaces;
/// the fields after it do not), numbered as in proc(5): state is field 3, flags 9, utime
/// 14, stime 15, cutime 16, cstime 17.
struct StatFields(Vec<String>);

impl StatFields {
    fn read(path: &str) -> Result<StatFields> {
        let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let rest = &stat[stat.rfind(')').context("no ')' in a stat file")? + 2..];
        Ok(StatFields(
            rest.split_whitespace().map(String::from).collect(),
        ))
    }

    fn get(&self, field: usize) -> Result<u64> {
        Ok(self.0.get(field - 3).context("short stat file")?.parse()?)
    }
}

pub fn between(a: &Sample, b: &Sample) -> Usage {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let capacity = b.at.duration_since(a.at).as_secs_f64() * TICKS_PER_SEC as f64 * cores;
    let server = b.server.saturating_sub(a.server);
    let ours = server + b.bench.saturating_sub(a.bench);
    let others = b.machine.saturating_sub(a.machine).saturating_sub(ours) as f64;
    Usage {
        server: Duration::from_millis(server * 1000 / TICKS_PER_SEC),
        others: if capacity > 0.0 {
            others / capacity
        } else {
            0.0
        },
    }
}

/// The line under a table: the most other processes took during its runs, and how many of
/// them that disturbed.
pub fn disturbance<'a>(usages: impl IntoIterator<Item = &'a Usage>) -> String {
    let (mut worst, mut disturbed, mut runs) = (0.0f64, 0, 0);
    for u in usages {
        worst = worst.max(u.others);
        disturbed += usize::from(u.disturbed());
        runs += 1;
    }
    format!(
        "Other processes took at most {:.1}% of the CPU during a run; {disturbed} of {runs} \
         run(s) above {:.0}% (disturbed).",
        100.0 * worst,
        100.0 * DISTURBED_SHARE
    )
}

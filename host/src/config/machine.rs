//! What this machine offers, for the defaults of limits and the checks of them: its
//! memory (or its cgroup's limit when that is lower: a container), its cores, and the
//! kernel's cap on a process's memory mappings.

/// Share of the machine's memory the host's budget takes by default: the rest is for the
/// host's own structures, the database's cache and the kernel.
const BUDGET_SHARE: (u64, u64) = (3, 4);

/// Used when the machine's memory cannot be read.
const FALLBACK_BUDGET: u64 = 4 << 30;

/// The default `max_memory`: three quarters of the memory this process may use.
pub fn default_max_memory() -> usize {
    let budget = memory_bytes()
        .map(|m| m / BUDGET_SHARE.1 * BUDGET_SHARE.0)
        .unwrap_or(FALLBACK_BUDGET);
    usize::try_from(budget).unwrap_or(usize::MAX)
}

/// Long events running at once per core by default: two, so that a core stays busy while
/// one of them waits on storage.
const LONG_EVENTS_PER_CORE: u32 = 2;

/// The default `max_long_events`: two per core this process may use.
pub fn default_max_long_events() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    LONG_EVENTS_PER_CORE * u32::try_from(cores).unwrap_or(u32::MAX / LONG_EVENTS_PER_CORE)
}

/// The kernel's cap on one process's memory mappings (`vm.max_map_count`), if readable.
pub fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Memory mappings this process holds now (other hosts in the same process included), if
/// readable.
pub fn maps_in_use() -> Option<u64> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(maps.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// The machine's memory, or its cgroup's limit if lower.
pub fn memory_bytes() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let cgroup = cgroup_limit(&own, |f| std::fs::read_to_string(f).ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// The lowest memory limit on this process's own cgroup and its ancestors (a systemd unit's
/// `MemoryMax` sits on the unit's cgroup, not the root), from `/proc/self/cgroup`'s text
/// (`own`); v2, then v1, whose "no limit" is a huge number that `min` ignores.
fn cgroup_limit(own: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let mut limits = Vec::new();
    for line in own.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (base, file) = match controllers {
            "" => ("/sys/fs/cgroup", "memory.max"),
            c if c.split(',').any(|c| c == "memory") => {
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            }
            _ => continue,
        };
        // The cgroup itself, then each parent up to the root.
        let mut dir = path.trim_end_matches('/').to_string();
        loop {
            let at = format!("{base}{dir}/{file}");
            if let Some(limit) = read(&at).and_then(|t| t.trim().parse::<u64>().ok()) {
                limits.push(limit);
            }
            match dir.rfind('/') {
                Some(cut) => dir.truncate(cut),
                None => break,
            }
        }
    }
    limits.into_iter().min()
}

#[cfg(test)]
mod tests {
    use super::cgroup_limit;

    /// A limit on the process's own cgroup (a systemd unit's MemoryMax) counts, not only the
    /// root's; the lowest on the way up wins, and "max" is no limit.
    #[test]
    fn the_limit_is_read_from_the_process_own_cgroup_and_its_parents() {
        let files = |f: &str| -> Option<String> {
            match f {
                "/sys/fs/cgroup/system.slice/dohost.service/memory.max" => {
                    Some("3221225472\n".into())
                }
                "/sys/fs/cgroup/system.slice/memory.max" => Some("max\n".into()),
                "/sys/fs/cgroup/memory.max" => None,
                "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes" => {
                    Some("1073741824\n".into())
                }
                "/sys/fs/cgroup/memory/memory.limit_in_bytes" => {
                    Some("9223372036854771712\n".into())
                }
                _ => None,
            }
        };
        assert_eq!(
            cgroup_limit("0::/system.slice/dohost.service\n", files),
            Some(3 << 30)
        );
        assert_eq!(
            cgroup_limit("12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n", files),
            Some(1 << 30)
        );
        assert_eq!(cgroup_limit("0::/\n", files), None);
    }
}

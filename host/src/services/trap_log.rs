//! Keeps failing guests from flooding the log: a failure's full error (with its wasm
//! backtrace, kilobytes each) is logged once per distinct trap site, and each object logs
//! at most a few failure lines per minute, then says how many it left out.

use super::windows::{Counts, Windows};
use crate::id::ObjectKey;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

pub use super::windows::WINDOW;

/// Failure lines one object may log per window.
pub const LINES_PER_WINDOW: u32 = 5;
/// Trap sites remembered (their backtrace logged); past this, backtraces are left out.
const MAX_SITES: usize = 10_000;

#[derive(Default)]
pub struct TrapLog {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sites: HashSet<String>,
    objects: Windows<ObjectKey, Window>,
}

#[derive(Default)]
struct Window {
    logged: u32,
    left_out: u64,
}

impl Counts for Window {
    fn restart(&mut self) {
        self.logged = 0;
    }
}

/// What to log for one failure.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Log the line at all.
    pub line: bool,
    /// Include the full error (its backtrace): the first failure at this site.
    pub backtrace: bool,
    /// Lines of this object left out since its last logged one.
    pub left_out: u64,
}

impl TrapLog {
    /// A failure of `object` at `site` (its class and where it trapped), at `now`.
    pub fn failure(&self, object: ObjectKey, site: &str, now: Instant) -> Verdict {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let w = inner.objects.current(&object, now);
        if w.logged >= LINES_PER_WINDOW {
            w.left_out += 1;
            return Verdict {
                line: false,
                backtrace: false,
                left_out: 0,
            };
        }
        w.logged += 1;
        let left_out = std::mem::take(&mut w.left_out);
        let backtrace = inner.sites.len() < MAX_SITES && inner.sites.insert(site.to_string());
        Verdict {
            line: true,
            backtrace,
            left_out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdKey;

    #[test]
    fn backtraces_once_per_site_and_a_few_lines_per_object_per_window() {
        let log = TrapLog::default();
        let key = |n: &str| ObjectKey {
            namespace: 1,
            id: IdKey::new([2; 32]).id_from_name(n),
        };
        let t0 = Instant::now();
        let first = log.failure(key("a"), "site-1", t0);
        assert_eq!((first.line, first.backtrace), (true, true));
        let again = log.failure(key("b"), "site-1", t0);
        assert_eq!((again.line, again.backtrace), (true, false));
        for _ in 1..LINES_PER_WINDOW {
            assert!(log.failure(key("a"), "site-1", t0).line);
        }
        for _ in 0..7 {
            assert!(!log.failure(key("a"), "site-1", t0).line);
        }
        let later = log.failure(key("a"), "site-2", t0 + WINDOW);
        assert_eq!(
            later,
            Verdict {
                line: true,
                backtrace: true,
                left_out: 7
            }
        );
    }
}

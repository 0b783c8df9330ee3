//! Keeps chatty guests from flooding the log: each object may print so many bytes of
//! stdout and stderr a minute (`guest_log_bytes_per_minute`); the rest is dropped, and the
//! log says so and how much.

use super::windows::{Counts, Windows};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The window the allowance is counted over.
pub use super::windows::WINDOW;

/// Every object's output allowance, shared by the host's instances (an object's allowance
/// outlives its instance: one that prints and traps gets no fresh allowance from the
/// rebuild).
pub struct GuestOutput {
    bytes_per_window: usize,
    // A std Mutex: a few map operations per line, never held across an await.
    objects: Mutex<Windows<Arc<str>, Window>>,
}

#[derive(Default)]
struct Window {
    logged: usize,
    /// Past the allowance: the rest of the window is dropped, even a line that would fit,
    /// so the log shows a clean cut rather than lines picked by their length.
    cut: bool,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl Counts for Window {
    /// What was dropped in the last window is still to be said.
    fn restart(&mut self) {
        self.logged = 0;
        self.cut = false;
    }
}

/// What to do with one line of an object's output.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `dropped` is what was dropped since the last line logged, to say first.
    Log { dropped: Option<Dropped> },
    /// Drop it; `first` when it is the first dropped this window (say that dropping began).
    Drop { first: bool },
}

/// Output dropped: lines and their bytes.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Dropped {
    pub lines: u64,
    pub bytes: u64,
}

impl GuestOutput {
    pub fn new(bytes_per_window: usize) -> Self {
        GuestOutput {
            bytes_per_window,
            objects: Mutex::default(),
        }
    }

    /// The allowance, in bytes per `WINDOW`.
    pub fn bytes_per_window(&self) -> usize {
        self.bytes_per_window
    }

    /// A line of `len` bytes printed by `object` at `now`.
    pub fn line(&self, object: &Arc<str>, len: usize, now: Instant) -> Verdict {
        let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        let w = objects.current(object, now);
        match w.logged.checked_add(len) {
            Some(total) if !w.cut && total <= self.bytes_per_window => {
                w.logged = total;
                let dropped = (w.dropped_lines > 0).then(|| Dropped {
                    lines: std::mem::take(&mut w.dropped_lines),
                    bytes: std::mem::take(&mut w.dropped_bytes),
                });
                Verdict::Log { dropped }
            }
            _ => {
                let first = !w.cut;
                w.cut = true;
                w.dropped_lines += 1;
                w.dropped_bytes += len as u64;
                Verdict::Drop { first }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_object_logs_its_allowance_a_window_then_hears_what_was_dropped() {
        let output = GuestOutput::new(100);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let t0 = Instant::now();
        let log = Verdict::Log { dropped: None };
        assert_eq!(output.line(&a, 60, t0), log);
        assert_eq!(output.line(&a, 40, t0), log);
        assert_eq!(output.line(&a, 1, t0), Verdict::Drop { first: true });
        assert_eq!(output.line(&a, 10, t0), Verdict::Drop { first: false });
        // Once cut, a window stays cut, even for a line that would fit.
        assert_eq!(output.line(&a, 0, t0), Verdict::Drop { first: false });
        // Each object has an allowance of its own.
        assert_eq!(output.line(&b, 100, t0), log);
        // Not yet a new window.
        let almost = t0 + WINDOW - Duration::from_millis(1);
        assert_eq!(output.line(&a, 5, almost), Verdict::Drop { first: false });
        // The next window logs again, first saying what was dropped.
        assert_eq!(
            output.line(&a, 7, t0 + WINDOW),
            Verdict::Log {
                dropped: Some(Dropped {
                    lines: 4,
                    bytes: 16
                })
            }
        );
        assert_eq!(output.line(&a, 7, t0 + WINDOW), log);
    }

    #[test]
    fn each_window_that_is_cut_says_so() {
        let output = GuestOutput::new(10);
        let a: Arc<str> = Arc::from("a");
        let t0 = Instant::now();
        // A line longer than the whole allowance is dropped too.
        assert_eq!(output.line(&a, 11, t0), Verdict::Drop { first: true });
        assert_eq!(
            output.line(&a, 11, t0 + WINDOW),
            Verdict::Drop { first: true }
        );
    }
}

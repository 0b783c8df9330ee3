//! The minute-long, per-object windows the log limiters count in (`trap_log`,
//! `guest_output`): each object's current window, a fresh one once the last is over, and a
//! bound on how many objects are remembered.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long one window lasts.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Objects remembered at once; past this, windows that are over are forgotten.
const MAX_OBJECTS: usize = 10_000;

/// What a limiter counts in one object's window.
pub trait Counts: Default {
    /// A new window starts: forget what the last one allowed, keep what is still to be said
    /// (what was left out, to be reported with the next line logged).
    fn restart(&mut self);
}

/// Every remembered object's window.
pub struct Windows<K, C> {
    objects: HashMap<K, (Instant, C)>,
}

impl<K, C> Default for Windows<K, C> {
    fn default() -> Self {
        Windows {
            objects: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, C: Counts> Windows<K, C> {
    /// `key`'s counts in the window holding `now`.
    pub fn current(&mut self, key: &K, now: Instant) -> &mut C {
        if self.objects.len() >= MAX_OBJECTS && !self.objects.contains_key(key) {
            self.objects
                .retain(|_, (started, _)| now.duration_since(*started) < WINDOW);
        }
        let (started, counts) = self
            .objects
            .entry(key.clone())
            .or_insert_with(|| (now, C::default()));
        if now.duration_since(*started) >= WINDOW {
            *started = now;
            counts.restart();
        }
        counts
    }
}

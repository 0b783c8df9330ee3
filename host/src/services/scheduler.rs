//! The alarm scheduler: knows when each object's alarm is due and wakes the object then;
//! and the clock it (and the guests' wall clock) reads, injectable so tests need not sleep.

use crate::id::ObjectKey;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, watch};

/// Milliseconds since the Unix epoch, and a way to wait for a given one.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
    /// Resolves once `now_ms() >= at`.
    fn sleep_until(&self, at: u64) -> BoxFuture<'static, ()>;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn sleep_until(&self, at: u64) -> BoxFuture<'static, ()> {
        let wait = at.saturating_sub(self.now_ms());
        tokio::time::sleep(Duration::from_millis(wait)).boxed()
    }
}

/// A clock that moves only when told to: tests advance it past an alarm instead of
/// sleeping through the interval.
pub struct ManualClock {
    now: watch::Sender<u64>,
}

impl ManualClock {
    pub fn new(start_ms: u64) -> Arc<Self> {
        Arc::new(ManualClock {
            now: watch::Sender::new(start_ms),
        })
    }

    /// Starts at the real current time (guests compute alarm times from it).
    pub fn starting_now() -> Arc<Self> {
        Self::new(SystemClock.now_ms())
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t += by.as_millis() as u64);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: u64) -> BoxFuture<'static, ()> {
        let mut rx = self.now.subscribe();
        async move {
            let _ = rx.wait_for(|t| *t >= at).await;
        }
        .boxed()
    }
}

/// Something that can wake an object for its alarm (the runtime).
pub trait AlarmWaker: Send + Sync + 'static {
    /// `firing` is held until the alarm's handler has run and its writes are durable (or
    /// the alarm was dropped), so that a test can wait for due alarms to have run.
    fn wake(&self, object: ObjectKey, retry_count: u32, firing: Firing);
}

/// An alarm taken off the queue and not yet done with: counted by its scheduler until
/// dropped.
pub struct Firing(Arc<Scheduler>);

impl Drop for Firing {
    fn drop(&mut self) {
        self.0.firing.fetch_sub(1, Ordering::SeqCst);
        // The scheduler may be holding due alarms back for want of a firing place.
        self.0.changed.notify_one();
    }
}

#[derive(Default)]
struct Queue {
    by_time: BTreeSet<(u64, ObjectKey)>,
    by_object: HashMap<ObjectKey, (u64, u32)>,
}

impl Queue {
    fn remove(&mut self, object: &ObjectKey) {
        if let Some((at, _)) = self.by_object.remove(object) {
            self.by_time.remove(&(at, *object));
        }
    }

    fn insert(&mut self, object: ObjectKey, at: u64, retry: u32) {
        self.remove(&object);
        self.by_time.insert((at, object));
        self.by_object.insert(object, (at, retry));
    }
}

/// Due times of every object's alarm (or its next retry), earliest first.
pub struct Scheduler {
    clock: Arc<dyn Clock>,
    // A std Mutex: held for queue updates only, never across an await.
    queue: Mutex<Queue>,
    changed: Notify,
    /// Alarms taken off the queue whose `Firing` is still alive.
    firing: AtomicUsize,
    /// At most this many alarms fire at once; the rest stay queued until one is done. Ten
    /// thousand alarms due in one second would otherwise all queue for instance slots at
    /// once, and those that waited past the slot wait would fail (and be retried later) for
    /// no fault of their own, while requests found every slot taken.
    max_firing: usize,
}

impl Scheduler {
    pub fn new(clock: Arc<dyn Clock>, max_firing: usize) -> Arc<Self> {
        Arc::new(Scheduler {
            clock,
            queue: Mutex::new(Queue::default()),
            changed: Notify::new(),
            firing: AtomicUsize::new(0),
            max_firing: max_firing.max(1),
        })
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The object's alarm is now `at` (None: it has none). Called once the change is durable.
    pub fn set(&self, object: ObjectKey, at: Option<u64>) {
        {
            let mut q = self.lock();
            match at {
                Some(at) => q.insert(object, at, 0),
                None => q.remove(&object),
            }
        }
        self.changed.notify_one();
    }

    /// The alarm failed: run it again at `at`, telling the handler it is retry `retry`.
    pub fn retry(&self, object: ObjectKey, at: u64, retry: u32) {
        self.lock().insert(object, at, retry);
        self.changed.notify_one();
    }

    /// How many alarms are waiting.
    pub fn pending(&self) -> usize {
        self.lock().by_object.len()
    }

    /// True when no alarm is due at the clock's current time and none taken off the queue
    /// is still running: every alarm due so far has run (a failed one is queued again for
    /// its retry, later).
    pub fn settled(&self) -> bool {
        let now = self.clock.now_ms();
        // Read under the queue's lock: an alarm leaves the queue and is counted as firing
        // in one step.
        let q = self.lock();
        self.firing.load(Ordering::SeqCst) == 0 && q.by_time.first().is_none_or(|(at, _)| *at > now)
    }

    /// Wakes objects as their alarms come due, until `stop` resolves.
    pub async fn run(self: Arc<Self>, waker: Arc<dyn AlarmWaker>, mut stop: watch::Receiver<bool>) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Register interest before looking, so a change made meanwhile is not missed.
            changed.as_mut().enable();
            let now = self.clock.now_ms();
            let mut due = Vec::new();
            let mut held_back = false;
            let next = {
                let mut q = self.lock();
                while let Some(&(at, object)) = q.by_time.first() {
                    if at > now {
                        break;
                    }
                    if self.firing.load(Ordering::SeqCst) >= self.max_firing {
                        // Due, but held back: a `Firing` dropped will wake the loop.
                        held_back = true;
                        break;
                    }
                    let retry = q.by_object.get(&object).map_or(0, |(_, r)| *r);
                    q.remove(&object);
                    self.firing.fetch_add(1, Ordering::SeqCst);
                    due.push((object, retry, Firing(self.clone())));
                }
                q.by_time.first().map(|(at, _)| *at)
            };
            for (object, retry, firing) in due {
                waker.wake(object, retry, firing);
            }
            let sleep = match next {
                Some(at) if !held_back => self.clock.sleep_until(at),
                _ => futures::future::pending().boxed(),
            };
            tokio::select! {
                _ = sleep => {}
                _ = changed => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// Hands each woken alarm's `Firing` to the test, which decides when it is done.
    struct Recorder(mpsc::UnboundedSender<(ObjectKey, Firing)>);

    impl AlarmWaker for Recorder {
        fn wake(&self, object: ObjectKey, _retry: u32, firing: Firing) {
            let _ = self.0.send((object, firing));
        }
    }

    fn key(n: u8) -> ObjectKey {
        ObjectKey::from_bytes(&[n; crate::id::KEY_BYTES])
    }

    #[tokio::test]
    async fn due_alarms_past_the_firing_cap_wait_for_one_to_finish() {
        let clock = ManualClock::new(1_000);
        let scheduler = Scheduler::new(clock.clone(), 2);
        for n in 0..5 {
            scheduler.set(key(n), Some(1_000 + n as u64));
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (_stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(scheduler.clone().run(Arc::new(Recorder(tx)), stop_rx));
        clock.advance(Duration::from_secs(1));
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        // Two fire; the other three are due but held back, still queued.
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err());
        assert_eq!(scheduler.pending(), 3);
        assert!(!scheduler.settled());
        drop(first);
        let third = rx.recv().await.unwrap();
        assert_eq!(third.0, key(2), "earliest first");
        drop((second, third));
        let rest = [rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        assert_eq!(scheduler.pending(), 0);
        drop(rest);
        assert!(scheduler.settled());
    }
}

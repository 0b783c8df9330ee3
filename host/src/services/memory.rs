//! The host's memory budget (`max_memory`): the bytes guests' linear memories (initial and
//! grown), request bodies being read, answers not yet written and WebSocket and stream send
//! queues may hold together. Past it, growth is refused (the guest asking fails its event)
//! and new requests are answered 503, rather than the kernel killing the host.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

pub struct MemoryBudget {
    used: AtomicUsize,
    limit: usize,
    /// Tasks waiting in `room_for`, and what wakes them: `give_back` notifies only while
    /// someone waits, so the hot path takes no lock.
    waiting: AtomicUsize,
    released: Notify,
    /// Signalled at each refusal: the instance slots' pressure, which asks one idle object
    /// to give up its instance, and with it the memory its guest grew.
    pressure: Arc<Notify>,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            used: AtomicUsize::new(0),
            limit,
            waiting: AtomicUsize::new(0),
            released: Notify::new(),
            pressure: Arc::new(Notify::new()),
        })
    }

    /// What a refusal signals (for `Slots`, whose idle objects listen).
    pub fn pressure(&self) -> Arc<Notify> {
        self.pressure.clone()
    }

    /// Takes `bytes` if they fit under the limit; a refusal asks an idle object to give
    /// its instance up, so a retry may fit.
    pub fn try_take(&self, bytes: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok();
        if !taken {
            self.pressure.notify_one();
        }
        taken
    }

    /// Takes `bytes` whether or not they fit (for memory the host must hold anyway, such as
    /// an answer whose event has run): past the limit, `try_take` refuses until they go.
    pub fn take_anyway(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    pub fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.released.notify_waiters();
        }
    }

    /// Waits, at most `within`, until `bytes` more would fit, asking idle objects to give
    /// their instances up meanwhile (one per release that still leaves too little); false
    /// when they still do not fit. Nothing is taken: a racing taker can still win.
    pub async fn room_for(&self, bytes: usize, within: std::time::Duration) -> bool {
        let fits = || self.used().saturating_add(bytes) <= self.limit;
        if fits() {
            return true;
        }
        if bytes > self.limit {
            return false;
        }
        let deadline = tokio::time::Instant::now() + within;
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let fitted = loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between is not missed.
            released.as_mut().enable();
            if fits() {
                break true;
            }
            self.pressure.notify_one();
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                break fits();
            }
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        fitted
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The refusal's words.
    pub fn exhausted(&self) -> String {
        format!(
            "the host's memory budget is exhausted ({} of {} bytes in use: max_memory); \
             try again shortly",
            self.used(),
            self.limit
        )
    }
}

/// Bytes of the budget held until dropped.
pub struct Held {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Held {
    pub fn none(budget: Arc<MemoryBudget>) -> Held {
        Held { budget, bytes: 0 }
    }

    /// Holds `bytes` even past the limit (see `MemoryBudget::take_anyway`).
    pub fn forced(budget: Arc<MemoryBudget>, bytes: usize) -> Held {
        budget.take_anyway(bytes);
        Held { budget, bytes }
    }

    /// Holds `more` bytes too, if they fit.
    pub fn grow(&mut self, more: usize) -> bool {
        let taken = self.budget.try_take(more);
        if taken {
            self.bytes += more;
        }
        taken
    }

    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// Bytes queued for one client and not yet written: bounded per socket or stream
/// (`ws_send_queue_bytes`, `stream_queue_bytes`) and held against the host's memory budget
/// (`max_memory`) until written; what is still queued when the client is gone is given
/// back then.
pub struct QueuedBytes {
    bytes: AtomicUsize,
    budget: Arc<MemoryBudget>,
}

impl QueuedBytes {
    pub fn new(budget: Arc<MemoryBudget>) -> Self {
        QueuedBytes {
            bytes: AtomicUsize::new(0),
            budget,
        }
    }

    /// Counts `len` more bytes; false, counting nothing, when they would pass `cap` or the
    /// budget has no room. Only the registries (`Sockets`, `Streams`) add, each under its
    /// lock, so the check cannot race.
    pub(crate) fn add(&self, len: usize, cap: usize) -> bool {
        if self.bytes.load(Ordering::Acquire) + len > cap || !self.budget.try_take(len) {
            return false;
        }
        self.bytes.fetch_add(len, Ordering::AcqRel);
        true
    }

    /// A message of `len` bytes left the queue (written, or dropped).
    pub fn written(&self, len: usize) {
        self.bytes.fetch_sub(len, Ordering::AcqRel);
        self.budget.give_back(len);
    }
}

impl Drop for QueuedBytes {
    fn drop(&mut self) {
        self.budget.give_back(*self.bytes.get_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waiter is woken by a release that makes room, and gives up at its deadline when
    /// none does; asking for more than the whole budget fails at once.
    #[tokio::test]
    async fn room_comes_with_a_release_or_not_at_all() {
        let budget = MemoryBudget::new(100);
        let mut held = Held::none(budget.clone());
        assert!(held.grow(80));
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget
                    .room_for(50, std::time::Duration::from_secs(600))
                    .await
            })
        };
        // The waiter asked idle objects to leave; one does.
        budget.pressure().notified().await;
        drop(held);
        assert!(waiter.await.unwrap());
        let mut held = Held::none(budget.clone());
        assert!(held.grow(80));
        assert!(
            !budget
                .room_for(50, std::time::Duration::from_millis(1))
                .await
        );
        assert!(
            !budget
                .room_for(101, std::time::Duration::from_secs(600))
                .await
        );
    }

    #[test]
    fn holds_up_to_the_limit_and_gives_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut a = Held::none(budget.clone());
        assert!(a.grow(60));
        let mut b = Held::none(budget.clone());
        assert!(!b.grow(41));
        assert!(b.grow(40));
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(b.grow(60));
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}

//! Fair CPU: at most so many guest events run past their first time slices at once; the
//! others wait their turn, oldest first, so endless loops cannot crowd out short events.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Epoch ticks an event runs before it needs a turn. An event that ends within them (almost
/// every request) never waits behind a loop; the epoch is global, so an event that starts
/// just before a tick has run for a fraction of one when the first arrives.
pub const FREE_TICKS: u64 = 3;

/// The turns long-running events take, shared by every guest store of the host.
pub struct CpuGate {
    turns: Arc<Semaphore>,
    size: usize,
    waiting: AtomicUsize,
}

impl CpuGate {
    pub fn new(turns: usize) -> Arc<Self> {
        let size = turns.max(1);
        Arc::new(CpuGate {
            turns: Arc::new(Semaphore::new(size)),
            size,
            waiting: AtomicUsize::new(0),
        })
    }

    /// Events holding a turn now.
    pub fn running(&self) -> usize {
        self.size - self.turns.available_permits()
    }

    /// Events past their free ticks waiting for a turn.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// One store's hold on a turn: shared by the store's CPU budget, which takes and renews it
/// from the epoch callback, and its object-call context, which gives it up while the event
/// waits on another object (that object may need the turn to finish).
#[derive(Clone, Default)]
pub struct Turn(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl Turn {
    /// Gives the turn back, if held: the event ended, or waits on something else.
    pub fn release(&self) {
        self.slot().take();
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the turn back and waits for the next one. The semaphore serves waiters in
    /// order, so with every turn taken this goes behind the events already waiting: each
    /// running event yields its turn once per tick, round robin.
    pub fn renew(&self, gate: &Arc<CpuGate>) -> impl Future<Output = ()> + Send + 'static {
        self.release();
        let (turn, gate) = (self.clone(), gate.clone());
        async move {
            gate.waiting.fetch_add(1, Ordering::Relaxed);
            let waiting = Waiting(gate);
            if let Ok(permit) = waiting.0.turns.clone().acquire_owned().await {
                *turn.slot() = Some(permit);
            }
            drop(waiting);
            // A turn free at once is taken without a pause: yield anyway, as every slice
            // does, so the thread's other tasks run.
            tokio::task::yield_now().await;
        }
    }
}

/// Counts an event as waiting for a turn until dropped: also when the event itself is
/// dropped while it waits (its client left).
struct Waiting(Arc<CpuGate>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

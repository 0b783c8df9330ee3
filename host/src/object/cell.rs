//! The inline fast path: an HTTP request that finds its object idle with nothing queued
//! runs on its own connection's task under the actor's lock, saving two task hops.

use super::*;
use tracing::Instrument;

impl ActorCell {
    pub fn new(actor: Actor) -> Self {
        ActorCell {
            actor: tokio::sync::Mutex::new(actor),
            queued: AtomicUsize::new(0),
            touched: AtomicBool::new(false),
            poke: Notify::new(),
        }
    }

    /// Events in the mailbox waiting to run (not the one running).
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Runs one event from the mailbox. Its future lives on the heap, so an idle actor's
    /// task (which lives as long as its object) stays small.
    pub(super) async fn handle_queued(&self, event: Event) {
        let mut actor = self.actor.lock().await;
        // No longer waiting: it runs now. Counted down only under the lock, which an inline
        // request must take too, so none can slip in ahead of it.
        self.queued.fetch_sub(1, Ordering::AcqRel);
        if actor
            .deferred
            .values()
            .any(|(_, deadline)| *deadline <= Instant::now())
        {
            actor.expire_deferred();
        }
        let span = actor.span();
        Box::pin(actor.handle(event).instrument(span)).await;
    }

    /// Runs a fetch on the calling task if the object is idle, nothing is queued for it
    /// and it holds no deferred requests; otherwise hands the request back for the
    /// mailbox. The receiver answers like the mailbox's reply would.
    pub async fn try_fetch_inline(
        &self,
        request: wit::Request,
        upgrade: bool,
    ) -> Result<oneshot::Receiver<Outcome>, wit::Request> {
        if self.queued.load(Ordering::Acquire) != 0 {
            return Err(request);
        }
        let Ok(actor) = self.actor.try_lock() else {
            return Err(request);
        };
        // Checked again under the lock: an event counted before we took it has not run.
        if actor.closed || !actor.deferred.is_empty() || self.queued.load(Ordering::Acquire) != 0 {
            return Err(request);
        }
        self.touched.store(true, Ordering::Release);
        let was_live = actor.live.is_some();
        let (reply, rx) = oneshot::channel();
        let mut run = InlineRun {
            actor,
            finished: false,
        };
        let span = run.actor.span();
        run.actor
            .fetch(request, upgrade, reply)
            .instrument(span)
            .await;
        run.finished = true;
        let actor = &run.actor;
        // The task decided what to wait for before this event: wake it to look again if
        // the event deferred an answer (a deadline to watch) or built an instance (one it
        // must offer up under pressure).
        if !actor.deferred.is_empty() || (!was_live && actor.live.is_some()) {
            self.poke.notify_one();
        }
        Ok(rx)
    }
}

/// An event running inline, on a task that may drop it half-way (its client went away).
struct InlineRun<'a> {
    actor: tokio::sync::MutexGuard<'a, Actor>,
    finished: bool,
}

impl Drop for InlineRun<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Dropping a guest call mid-way leaves its store unusable: drop the instance,
            // and with it the event's uncommitted writes (its client never got an answer).
            // The next event rebuilds from storage, as after a trap.
            self.actor
                .drop_instance("its request was cancelled mid-event");
        }
    }
}

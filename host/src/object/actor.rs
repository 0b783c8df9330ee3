//! The actor's task: the mailbox loop, giving the instance up under pressure, expiring
//! deferred requests, and ending the actor after its idle timeout.

use super::*;

impl Actor {
    pub fn new(
        env: Arc<ObjectEnv>,
        storage: ActorStorage,
        class: Arc<Class>,
        key: ObjectKey,
        name: Option<String>,
    ) -> Self {
        let short = &key.id.to_string()[..12];
        let label: Arc<str> = match &name {
            Some(n) => format!("{}/{n}", class.binding).into(),
            None => format!("{}/{short}", class.binding).into(),
        };
        Actor {
            env,
            storage,
            class,
            key,
            name_stored: name.is_none(),
            name,
            label,
            inflight: None,
            live: None,
            last_commit: None,
            deferred: HashMap::new(),
            next_handle: 0,
            outbox: None,
            closed: false,
        }
    }

    /// The actor's task: runs the mailbox's events in order, gives the instance up under
    /// pressure, expires deferred requests, and ends the actor after `idle_timeout` without
    /// events (its writes durable first).
    pub async fn run(
        cell: Arc<ActorCell>,
        mut rx: mpsc::UnboundedReceiver<Event>,
        actor_id: u64,
        registry: Arc<dyn Registry>,
    ) {
        let env = cell.actor.lock().await.env.clone();
        let idle = env.limits.idle_timeout;
        loop {
            // Fast path for a busy object: its next event is already queued, so skip arming
            // the idle timer and the pressure wake-up (a busy object keeps its instance
            // anyway). Deferred deadlines are still honoured, and the task still yields
            // to others when its budget runs out.
            match rx.try_recv() {
                Ok(event) => {
                    cell.handle_queued(event).await;
                    tokio::task::consume_budget().await;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let (may_give_up, next_deadline) = {
                let actor = cell.actor.lock().await;
                (
                    // An instance holding deferred requests keeps them in its memory: it
                    // is not given up.
                    // One on a deferring slot would free that slot, not the live one asked
                    // for; it idles out instead.
                    actor.live.as_ref().is_some_and(|l| !l.deferring) && actor.deferred.is_empty(),
                    actor.deferred.values().map(|(_, d)| *d).min(),
                )
            };
            let pressure = env.slots.pressure();
            let received = tokio::select! {
                r = tokio::time::timeout(idle, rx.recv()) => r,
                _ = pressure.notified(), if may_give_up => {
                    // Another object waits for an instance slot: give ours up unless
                    // events ran inline since we last looked (the object is busy), in
                    // which case the next idle object is asked instead. The actor (and
                    // its mailbox and in-flight writes) stays; the next event rebuilds.
                    let mut actor = cell.actor.lock().await;
                    if !cell.touched.swap(false, Ordering::AcqRel) && actor.deferred.is_empty() {
                        if actor.live.take().is_some() {
                            env.metrics.evictions.with_label_values(&["pressure"]).inc();
                        }
                    } else {
                        pressure.notify_one();
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(next_deadline.unwrap_or_else(Instant::now)),
                    if next_deadline.is_some() => {
                    cell.actor.lock().await.expire_deferred();
                    continue;
                }
                // An inline event deferred an answer or built an instance: look again.
                _ = cell.poke.notified() => continue,
            };
            match received {
                Ok(Some(event)) => cell.handle_queued(event).await,
                Ok(None) => break,
                Err(_) => {
                    let mut actor = cell.actor.lock().await;
                    if cell.touched.swap(false, Ordering::AcqRel) || !actor.deferred.is_empty() {
                        continue;
                    }
                    // Evict only once our writes are durable: a new actor for this ID reads
                    // from the database alone.
                    actor.settle().await;
                    if registry.remove_if_idle(&actor.key, actor_id, &mut rx) {
                        tracing::debug!(object = %actor.label, "evicted idle object");
                        if actor.live.is_some() {
                            env.metrics.evictions.with_label_values(&["idle"]).inc();
                        }
                        actor.closed = true;
                        break;
                    }
                }
            }
        }
        let mut actor = cell.actor.lock().await;
        actor.closed = true;
        actor.settle().await;
        // The cell can outlive this task (an edge request holding it): free the instance
        // slot and answer deferred requests now, as dropping the actor used to.
        actor.drop_instance("the object stopped");
    }

    /// The span every event of this object runs in (at debug level: a span per event
    /// costs an allocation when recorded): its class, and its ID in full.
    pub(super) fn span(&self) -> tracing::Span {
        tracing::debug_span!(
            "event",
            class = %self.class.class_name,
            id = %self.key.id,
            object = %self.label
        )
    }

    pub(super) async fn settle(&mut self) {
        if let Some(d) = self.last_commit.take() {
            let _ = d.await;
        }
    }

    pub(super) async fn handle(&mut self, event: Event) {
        match event {
            Event::Fetch {
                request,
                upgrade,
                reply,
            } => self.fetch(*request, upgrade, reply).await,
            Event::Socket(event) => self.socket_event(*event).await,
            Event::Evict => {
                if self.deferred.is_empty() {
                    self.live = None;
                }
            }
            Event::Disown(drained) => {
                if drained.is_some() {
                    self.settle().await;
                }
                self.drop_instance("its shard moved to another node");
                self.inflight = None;
                if let Some(done) = drained {
                    let _ = done.send(());
                }
            }
            Event::Alarm { retry, firing } => self.alarm(retry, firing).await,
            Event::Edit(edit) => self.edit(*edit).await,
        }
    }
}

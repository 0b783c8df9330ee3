//! What an event leaves behind: its writes handed to the committer, its deferred answers,
//! WebSocket sends and stream chunks released once durable, and deferred requests that
//! expired or whose client left.

use super::*;

impl Actor {
    /// Hands a successful event's writes to the committer; returns what its outputs wait on
    /// (its own commit, or the latest earlier one when it wrote nothing: it may have read
    /// writes that are not durable yet).
    pub(super) fn commit_writes(&mut self) -> Option<Durable> {
        let mut writes = self.live.as_mut().and_then(|l| {
            let store = &mut l.store.data_mut().storage.store;
            let statements = store.take_sql_statements();
            if statements > 0 {
                self.env.metrics.sql_statements.inc_by(statements);
            }
            store.take_event_writes()
        });
        if let Some(sql) = writes.as_ref().and_then(|w| w.sql.as_ref()) {
            self.env
                .metrics
                .sql_pages_written
                .inc_by(sql.pages.len() as u64);
        }
        if !self.name_stored
            && let Some(name) = &self.name
        {
            self.name_stored = true;
            let name: Arc<str> = Arc::from(name.as_str());
            match writes.as_mut() {
                // The name rides with the first event's writes.
                Some(w) => w.name = Some(name),
                None => {
                    // A first event that wrote nothing: the name is recorded on its own, and
                    // the answer does not wait for it (nothing in it depends on the name),
                    // so a first read costs no fsync.
                    let gate = self.last_commit.clone();
                    self.submit(crate::backend::WriteSet {
                        name: Some(name),
                        ..Default::default()
                    });
                    return gate;
                }
            }
        }
        match writes {
            None => self.last_commit.clone(),
            Some(writes) => self.submit(writes),
        }
    }

    pub(super) fn submit(&mut self, writes: crate::backend::WriteSet) -> Option<Durable> {
        let shared = self
            .inflight
            .clone()
            .expect("an instance implies shared state");
        let built_on = self.live.as_ref().map(|l| l.generation);
        let Some((generation, seq)) = shared.begin_commit(&writes, built_on) else {
            let stale: Durable = futures::future::ready(Err(CommitError::new(
                CommitErrorKind::Stale,
                "an earlier write of this object failed to commit while this event ran; its \
                 writes were dropped",
            )))
            .boxed()
            .shared();
            self.last_commit = Some(stale.clone());
            return Some(stale);
        };
        let (done, rx) = oneshot::channel();
        let job = CommitJob {
            target: shared as Arc<dyn CommitTarget>,
            generation,
            seq,
            writes,
            done,
        };
        let durable: Durable = if self.storage.commits.send(job).is_err() {
            futures::future::ready(Err(CommitError::new(
                CommitErrorKind::Stopped,
                "the host is shutting down",
            )))
            .boxed()
            .shared()
        } else {
            async move {
                rx.await.unwrap_or_else(|_| {
                    Err(CommitError::new(
                        CommitErrorKind::Stopped,
                        "the committer stopped before this write",
                    ))
                })
            }
            .boxed()
            .shared()
        };
        self.last_commit = Some(durable.clone());
        Some(durable)
    }

    /// Releases a successful event's outputs besides its reply, gated on `durable`.
    pub(super) fn release_outputs(&mut self, durable: &Option<Durable>) {
        self.release_responses(durable);
        self.release_sends(durable);
    }

    /// Releases the answers given to deferred requests during the event just ended, gated
    /// on that event's durability.
    pub(super) fn release_responses(&mut self, durable: &Option<Durable>) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let responses = std::mem::take(&mut live.store.data_mut().requests.responses);
        for (handle, response) in responses {
            if let Some((reply, _)) = self.deferred.remove(&handle) {
                // Not turned into an outage's 503 as a direct answer is: the writes of the
                // event that deferred it are durable, and a retry would apply them twice.
                let _ = reply.send(Outcome {
                    result: Ok(response),
                    durable: durable.clone(),
                    // Conservative: the event that answered may not be the one that wrote.
                    own_writes: false,
                    accepted: None,
                });
            }
        }
    }

    /// Hands the event's WebSocket sends and stream chunks to the object's outbox, which
    /// releases them in order, each batch once its event's writes are durable.
    pub(super) fn release_sends(&mut self, durable: &Option<Durable>) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let data = live.store.data_mut();
        let sends = std::mem::take(&mut data.websockets.sends);
        let writes = std::mem::take(&mut data.streams.writes);
        if sends.is_empty() && writes.is_empty() {
            return;
        }
        let outbox = self.outbox.get_or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<OutboxBatch>();
            let sockets = self.env.sockets.clone();
            let streams = self.env.streams.clone();
            tokio::spawn(async move {
                while let Some(batch) = rx.recv().await {
                    if let Some(d) = batch.durable
                        && d.await.is_err()
                    {
                        // The writes behind these messages were lost: so are they. A stream
                        // would go on with a gap in it: it is cut instead, so that its
                        // client reconnects and asks again from what it has.
                        for (id, _) in &batch.writes {
                            streams.cut(*id);
                        }
                        continue;
                    }
                    for (ws, message) in batch.sends {
                        sockets.deliver(ws, message);
                    }
                    for (id, chunk) in batch.writes {
                        streams.write(id, chunk);
                    }
                }
            });
            tx
        });
        let _ = outbox.send(OutboxBatch {
            durable: durable.clone(),
            sends,
            writes,
        });
    }

    /// Forgets deferred requests whose client went away (its connection closed): the
    /// object's `respond` and `is-open` then see them as gone, like expired ones.
    pub(super) fn forget_gone_deferred(&mut self) {
        let mut gone = Vec::new();
        self.deferred.retain(|handle, (reply, _)| {
            let open = !reply.is_closed();
            if !open {
                gone.push(*handle);
            }
            open
        });
        if let Some(live) = self.live.as_mut() {
            for handle in gone {
                live.store.data_mut().requests.pending.remove(&handle);
            }
        }
    }

    /// Answers the deferred requests whose deadline passed with 503.
    pub(super) fn expire_deferred(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .deferred
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(h, _)| *h)
            .collect();
        for handle in expired {
            if let Some((reply, _)) = self.deferred.remove(&handle) {
                let _ = reply.send(Outcome::failed(EventError::Unavailable(format!(
                    "the object did not answer this deferred request within {:?} \
                     (deferred_timeout)",
                    self.env.limits.deferred_timeout
                ))));
            }
            if let Some(live) = self.live.as_mut() {
                live.store.data_mut().requests.pending.remove(&handle);
            }
        }
    }
}

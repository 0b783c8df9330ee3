//! Delivering events: a request (its answer gated on durability), or an event by object
//! address; the actor is spawned on first use, and placement consulted first.

use super::{ActorHandle, FetchError, Owner, Runtime, Via};
use crate::id::{ObjectId, ObjectKey};
use crate::object::{Actor, ActorCell, Class, Event, EventError, Outcome, Registry};
use crate::services::handoff::Handoff;
use crate::wasm::bindings::types as wit;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};

impl Runtime {
    /// Delivers an HTTP request to the object and answers once its response may leave: the
    /// output gate is here, so no caller can answer before the writes behind the response
    /// are durable. A request via the edge that finds the object live, idle and with
    /// nothing queued runs on the caller's task (see `ActorCell`).
    pub async fn fetch(
        self: &Arc<Self>,
        class: &Arc<Class>,
        id: ObjectId,
        name: Option<String>,
        request: wit::Request,
        upgrade: bool,
        via: Via,
    ) -> Result<(wit::Response, Option<Handoff>), FetchError> {
        // A socket accepted for an answer that never leaves is dropped with it (which
        // removes it from the registry).
        let outcome = self.run_fetch(class, id, name, request, upgrade, via).await;
        if let Some(durable) = outcome.durable
            && let Err(e) = durable.await
        {
            return Err(FetchError::Commit(e));
        }
        // In a cluster, an answer that wrote nothing leaves only while this node still
        // holds the object's shard: one that lost it meanwhile may be answering from what
        // another node has changed since. One whose writes committed passed the fence
        // with them, and must leave: refusing it would call a durable write not applied.
        let key = ObjectKey {
            namespace: class.namespace.number,
            id,
        };
        if !outcome.own_writes && !self.placement.holds(&key) {
            return Err(FetchError::Event(EventError::Unavailable(
                "this object's shard moved to another node while it ran; try again".into(),
            )));
        }
        match outcome.result {
            Ok(response) => Ok((response, outcome.accepted)),
            Err(e) => Err(FetchError::Event(e)),
        }
    }

    /// Runs the request's event; its outcome is not durable yet.
    async fn run_fetch(
        self: &Arc<Self>,
        class: &Arc<Class>,
        id: ObjectId,
        name: Option<String>,
        request: wit::Request,
        upgrade: bool,
        via: Via,
    ) -> Outcome {
        let key = ObjectKey {
            namespace: class.namespace.number,
            id,
        };
        let cell = match via {
            Via::Edge => self.lock_actors().get(&key).map(|h| h.cell.clone()),
            Via::Call => None,
        };
        let request = match cell {
            Some(cell) => match cell.try_fetch_inline(request, upgrade).await {
                Ok(rx) => {
                    self.env.metrics.inline_events.inc();
                    // Not held while waiting: a deferred answer's sender lives in the
                    // actor, which must be free to go (and drop it) when its task ends.
                    drop(cell);
                    return rx.await.unwrap_or_else(|_| stopped());
                }
                Err(request) => request,
            },
            None => request,
        };
        let (reply, rx) = oneshot::channel();
        let event = Event::Fetch {
            request: Box::new(request),
            upgrade,
            reply,
        };
        if let Err(e) = self.send(class, id, name, event) {
            return Outcome::failed(e);
        }
        rx.await.unwrap_or_else(|_| stopped())
    }

    /// Queues an event (a socket's message, an alarm) for the object at `key`.
    pub fn deliver(self: &Arc<Self>, key: ObjectKey, event: Event) -> Result<(), EventError> {
        let class = self
            .by_namespace
            .get(&key.namespace)
            .cloned()
            .ok_or_else(|| {
                EventError::Unavailable(format!(
                    "no class of namespace {} is served here",
                    key.namespace
                ))
            })?;
        self.send(&class, key.id, None, event)
    }

    /// Queues `event` for the object's actor, spawning the actor if there is none. All
    /// sends happen under the registry lock, which is what makes eviction race-free: an
    /// actor removes itself only while holding the lock and seeing an empty mailbox.
    fn send(
        self: &Arc<Self>,
        class: &Arc<Class>,
        id: ObjectId,
        name: Option<String>,
        event: Event,
    ) -> Result<(), EventError> {
        let key = ObjectKey {
            namespace: class.namespace.number,
            id,
        };
        match self.placement.owner(&key) {
            Owner::Here => {}
            Owner::Elsewhere(node) => {
                return Err(EventError::Unavailable(format!(
                    "this object is served by node {node}"
                )));
            }
            Owner::Nobody => {
                return Err(EventError::Unavailable(
                    "this object's shard is between nodes; try again shortly".to_string(),
                ));
            }
        }
        let mut actors = self.lock_actors();
        let event = match actors.get(&key) {
            Some(handle)
                if matches!(event, Event::Fetch { .. })
                    && handle.cell.queued() >= self.env.limits.max_queued_events =>
            {
                return Err(EventError::Unavailable(format!(
                    "this object is overloaded: {} requests are queued for it \
                     (max_queued_events); try again shortly",
                    handle.cell.queued()
                )));
            }
            Some(handle) => match handle.send(event) {
                Ok(()) => return Ok(()),
                // The actor died (its task panicked): replace it.
                Err(mpsc::error::SendError(event)) => {
                    actors.remove(&key);
                    event
                }
            },
            None => event,
        };
        let storage = self
            .storage
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| EventError::Unavailable("the host is shutting down".to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Actor::new(self.env.clone(), storage, class.clone(), key, name);
        let cell = Arc::new(ActorCell::new(actor));
        let actor_id = self.next_actor.fetch_add(1, Ordering::Relaxed);
        let handle = ActorHandle {
            tx,
            actor_id,
            cell: cell.clone(),
        };
        let _ = handle.send(event);
        actors.insert(key, handle);
        drop(actors);
        let registry: Arc<dyn Registry> = self.clone();
        tokio::spawn(Actor::run(cell, rx, actor_id, registry));
        Ok(())
    }
}

/// The outcome of a request whose object went away without answering it.
fn stopped() -> Outcome {
    Outcome::failed(EventError::Failed(
        "the object stopped before answering".to_string(),
    ))
}

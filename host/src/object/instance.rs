//! The instance's lifecycle: built on demand (constructor included) in a slot of its own,
//! rebuilt after a failed commit, dropped on a trap, under pressure or when idle.

use super::*;
use crate::wasm::failure::describe_failure;

impl Actor {
    /// Makes sure a constructed instance exists, building one (and running the
    /// constructor) if needed.
    pub(super) async fn ensure_live(&mut self) -> Result<(), EventError> {
        // An unreachable database is an outage, not the object's fault: 503, retry later.
        let unreadable = |e: anyhow::Error| {
            let why = format!("cannot read the object's storage: {e:#}");
            if crate::backend::is_unreachable(&e) {
                EventError::Unavailable(why)
            } else {
                EventError::Failed(why)
            }
        };
        let shared = self.inflight().await.map_err(unreadable)?;
        let generation = shared.generation();
        if self
            .live
            .as_ref()
            .is_some_and(|l| l.generation != generation)
        {
            // A commit of this object failed: rebuild from what is durable (deferred
            // requests lose the memory that would answer them: 503 now).
            self.drop_instance("an earlier write of this object failed to commit");
            self.last_commit = None;
            // The failed commit may have been the one recording the name, and may or may
            // not have been applied (a connection lost after COMMIT): read it all again.
            let meta = self.storage.db.load(&self.key).await.map_err(unreadable)?;
            self.name_stored = self.name.is_none() || meta.name.is_some();
            shared.reload(meta.size, meta.preload);
        }
        let code = self.class.code();
        if self
            .live
            .as_ref()
            .is_some_and(|l| l.code_version != code.version)
        {
            // A deploy: this event and the next run on the new code, built afresh from
            // storage (the old instance's memory belongs to the old code).
            self.drop_instance("its class's code was updated");
        }
        if self.live.is_some() {
            return Ok(());
        }
        let limits = &self.env.limits;
        // The instance holds its initial memory against the budget from its first moment:
        // wait (as for a slot) for idle objects to give theirs up rather than refuse at once.
        if let Some(initial) = code.initial_memory {
            let budget = &self.env.shared.memory;
            if !budget.room_for(initial, limits.slot_wait).await {
                return Err(EventError::Unavailable(budget.exhausted()));
            }
        }
        let store_limits = self.env.storage_limits.clone();
        let permit = self
            .env
            .slots
            .object_permit()
            .await
            .map_err(|e| EventError::Unavailable(e.0))?;
        let clock = self.env.clock.clone();
        let mut store =
            ObjectStore::new(self.storage.db.clone(), shared, store_limits, clock.clone());
        if !self.class.sql {
            store.disable_sql();
        }
        store.set_memory_budget(self.env.shared.memory.clone());
        let imports = ObjectImports {
            storage: StorageCtx { store },
            objects: crate::wasm::objects::ObjectsCtx::new(self.env.calls.clone(), Some(self.key)),
            websockets: crate::wasm::websockets::WebSocketsCtx::new(
                self.env.sockets.clone(),
                self.key,
                limits.memory_per_instance,
            ),
            streams: crate::wasm::streams::StreamsCtx::new(
                self.env.streams.clone(),
                self.key,
                limits.memory_per_instance,
            ),
        };
        let mut store: Store<ObjectState> = new_store(
            &self.env.engine,
            ObjectState::new(self.label.clone(), imports, limits, &self.env.shared, clock),
        );
        self.env.metrics.instance_builds.inc();
        let bindings = match code.pre.instantiate_async(&mut store).await {
            Ok(b) => b,
            Err(e) => {
                // The budget short of an initial memory is load, not a broken object: the
                // refusal asked an idle object to give its instance up, and the client
                // retries (503).
                if let Some(e) = e.downcast_ref::<crate::wasm::state::MemoryBudgetExhausted>() {
                    tracing::debug!(object = %self.label, "no room for an instance in max_memory");
                    return Err(EventError::Unavailable(e.0.clone()));
                }
                let msg = format!("{e:#}");
                tracing::error!(object = %self.label, error = %msg, "cannot instantiate");
                // Slots are counted before instantiation, so the pool should never be full;
                // if it is anyway, it is capacity (503), not a broken object.
                if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                    .is_some()
                {
                    return Err(EventError::Unavailable(format!(
                        "too many live objects (max_live_objects = {}); try again shortly",
                        limits.max_live_objects.unwrap_or_default()
                    )));
                }
                return Err(EventError::Failed(format!(
                    "cannot instantiate the object: {msg}"
                )));
            }
        };
        let ctx = wit::ObjectContext {
            id: self.key.id.to_string(),
            name: self.name.clone(),
            binding: self.class.binding.clone(),
            class_name: self.class.class_name.clone(),
            env: self.class.vars.clone(),
        };
        let constructed = bindings
            .dohost_object_handler()
            .durable_object()
            .call_constructor(&mut store, &ctx)
            .await;
        end_call(&mut store);
        match constructed {
            Ok(handle) => {
                self.live = Some(Instance {
                    store,
                    bindings,
                    handle,
                    generation,
                    code_version: code.version,
                    permit,
                    deferring: false,
                });
                Ok(())
            }
            Err(err) => {
                store.data().stdout.flush_partial();
                store.data().stderr.flush_partial();
                let why = describe_failure(&err, store.data().limiter.hit);
                tracing::warn!(object = %self.label, error = %format!("{err:#}"), "constructor failed: {why}");
                if store.data().limiter.budget_hit {
                    return Err(EventError::Unavailable(why));
                }
                if store.data().storage.store.hit_unreachable() {
                    return Err(EventError::Unavailable(unreachable_failure(
                        "the constructor",
                    )));
                }
                Err(EventError::Failed(format!("the constructor failed: {why}")))
            }
        }
    }

    pub(super) async fn inflight(&mut self) -> anyhow::Result<Arc<InflightWrites>> {
        if let Some(s) = &self.inflight {
            return Ok(s.clone());
        }
        let meta = self.storage.db.load(&self.key).await?;
        let (size, stored_name) = (meta.size, meta.name);
        match (&self.name, stored_name) {
            (Some(_), Some(_)) => self.name_stored = true,
            // Woken by an alarm or a socket: the object keeps the name it was reached by.
            (None, Some(stored)) => {
                self.label = format!("{}/{stored}", self.class.binding).into();
                self.name = Some(stored);
                self.name_stored = true;
            }
            (_, None) => {}
        }
        let inflight = InflightWrites::new(self.key, size, meta.preload);
        self.inflight = Some(inflight.clone());
        Ok(inflight)
    }

    /// Discards the instance; clients waiting on its deferred responses get 503, since the
    /// in-memory state that would have answered them is gone.
    pub(super) fn drop_instance(&mut self, why: &str) {
        // A socket accepted by an event that never finished goes with the store.
        self.live = None;
        for (_, (reply, _)) in self.deferred.drain() {
            let _ = reply.send(Outcome::failed(EventError::Unavailable(format!(
                "the object was reset before answering this deferred request ({why})"
            ))));
        }
    }

    /// Starts an event on the live instance: the CPU budget, and per-interface state
    /// (`upgrade`: the event is a fetch whose client asked for a WebSocket).
    pub(super) fn begin_event(&mut self, fetch: Option<u64>, upgrade: bool) {
        if !self.deferred.is_empty() {
            self.forget_gone_deferred();
        }
        let live = self
            .live
            .as_mut()
            .expect("an event runs on a live instance");
        start_event(&mut live.store);
        let data = live.store.data_mut();
        data.storage.store.begin_event();
        data.requests.begin(fetch);
        data.websockets.begin(upgrade);
        data.streams.begin(fetch.is_some());
        data.objects.begin(upgrade);
    }
}

/// What the caller of an event that trapped, or answered 5xx, after a storage read failed
/// on an unreachable database is told (503): the object most likely failed because of the
/// outage.
pub(super) fn unreachable_failure(what: &str) -> String {
    format!(
        "{what} failed after the object's storage could not be read (the database is \
         unreachable); try again shortly"
    )
}

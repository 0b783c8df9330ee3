//! The stateless worker: a fresh instance per public request, in a worker slot of its own.

use super::Runtime;
use crate::object::EventError;
use crate::services::handoff::Handoff;
use crate::wasm::bindings::types as wit;
use crate::wasm::objects::ObjectsCtx;
use crate::wasm::state::{self, WorkerState};
use std::sync::Arc;

impl Runtime {
    /// Runs a public request through a fresh instance of the worker component. With
    /// `upgrade`, the worker may pass the client's WebSocket upgrade on to an object through
    /// `objects.fetch`; the socket that object accepted comes back with the response, as
    /// does a stream an object opened if the worker's response carries it on.
    pub async fn run_worker(
        self: &Arc<Self>,
        request: wit::Request,
        upgrade: bool,
    ) -> Result<(wit::Response, Option<Handoff>), EventError> {
        let pre = self
            .worker
            .as_ref()
            .ok_or_else(|| EventError::Unavailable("no worker is configured".into()))?;
        let _permit = self
            .env
            .slots
            .worker_permit()
            .await
            .map_err(|e| EventError::Unavailable(e.0))?;
        let mut objects = ObjectsCtx::new(self.env.calls.clone(), None);
        objects.begin(upgrade);
        let mut store = state::new_store(
            &self.env.engine,
            WorkerState::new(
                objects,
                &self.env.limits,
                &self.env.shared,
                self.env.clock.clone(),
            ),
        );
        let result = async {
            let worker = pre.instantiate_async(&mut store).await?;
            worker
                .dohost_object_worker_handler()
                .call_fetch(&mut store, &request, &self.vars)
                .await
        }
        .await;
        store.data().stdout.flush_partial();
        store.data().stderr.flush_partial();
        match result {
            Ok(mut response) => {
                let forwarded = store.data_mut().objects.take_handoff(&mut response);
                Ok((response, forwarded))
            }
            Err(e) => {
                let why = crate::wasm::failure::describe_failure(&e, store.data().limiter.hit);
                tracing::warn!(error = %format!("{e:#}"), "worker failed: {why}");
                // The host's memory ran short, not the worker: its client may retry.
                if store.data().limiter.budget_hit {
                    return Err(EventError::Unavailable(why));
                }
                Err(EventError::Failed(format!("the worker failed: {why}")))
            }
        }
    }
}

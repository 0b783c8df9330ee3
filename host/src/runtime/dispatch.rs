//! What the edge may ask of the runtime, as a small trait: the edge knows bindings, requests
//! and sockets, never actors, classes or storage.

use super::placement::SERVED_BY;
use super::{FetchError, Owner, Runtime, Via};
use crate::config::Limits;
use crate::id::ObjectKey;
use crate::object::{Event, EventError};
use crate::services::handoff::Handoff;
use crate::services::memory::MemoryBudget;
use crate::services::metrics::Metrics;
use crate::services::sockets::Sockets;
use crate::wasm::bindings::types as wit;
use crate::wasm::objects::CallError;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;

/// The answer to a request: the response and, for a 101, the socket to connect, or for
/// another status the stream to send as its body.
pub type Answer = (wit::Response, Option<Handoff>);

pub trait Dispatch: Send + Sync + 'static {
    /// The bindings served, sorted.
    fn bindings(&self) -> Vec<String>;

    fn has_binding(&self, binding: &str) -> bool;

    /// True when a worker receives every public request.
    fn has_worker(&self) -> bool;

    fn limits(&self) -> &Limits;

    fn metrics(&self) -> &Metrics;

    /// The host's memory budget, which request bodies count against while read.
    fn memory(&self) -> &Arc<MemoryBudget>;

    /// None while writes can be made durable; otherwise why not.
    fn storage_health(&self) -> Option<String>;

    fn sockets(&self) -> &Arc<Sockets>;

    /// The host's clock, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// A request for object `name` of `binding` (which exists), answered once the writes
    /// behind the answer are durable.
    fn fetch_named(
        self: Arc<Self>,
        binding: String,
        name: String,
        request: wit::Request,
        upgrade: bool,
    ) -> BoxFuture<'static, Result<Answer, FetchError>>;

    /// A public request through the worker.
    fn run_worker(
        self: Arc<Self>,
        request: wit::Request,
        upgrade: bool,
    ) -> BoxFuture<'static, Result<Answer, EventError>>;

    /// An event (a socket's message or close) for the object at `key`.
    fn deliver(self: Arc<Self>, key: ObjectKey, event: Event) -> Result<(), EventError>;

    /// Which node serves object `name` of `binding` (which exists).
    fn owner_of(&self, binding: &str, name: &str) -> Owner;

    /// The secret a forwarded request must carry (None for a single node: nothing is
    /// forwarded to it).
    fn cluster_secret(&self) -> Option<&str>;

    /// A call another node sent here for object `id` of `binding`, from the objects of
    /// `chain` (waiting on it), offering its client's WebSocket upgrade if `upgrade`:
    /// Ok(None) when this node does not serve that object (nothing ran).
    fn call_here(
        self: Arc<Self>,
        binding: String,
        id: String,
        name: Option<String>,
        chain: Vec<ObjectKey>,
        request: wit::Request,
        upgrade: bool,
    ) -> BoxFuture<'static, Result<Option<Answer>, CallError>>;
}

impl Dispatch for Runtime {
    fn bindings(&self) -> Vec<String> {
        Runtime::bindings(self)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    fn has_binding(&self, binding: &str) -> bool {
        self.class(binding).is_some()
    }

    fn has_worker(&self) -> bool {
        Runtime::has_worker(self)
    }

    fn limits(&self) -> &Limits {
        Runtime::limits(self)
    }

    fn metrics(&self) -> &Metrics {
        Runtime::metrics(self)
    }

    fn memory(&self) -> &Arc<MemoryBudget> {
        &self.env.shared.memory
    }

    fn storage_health(&self) -> Option<String> {
        Runtime::storage_health(self)
    }

    fn sockets(&self) -> &Arc<Sockets> {
        Runtime::sockets(self)
    }

    fn now_ms(&self) -> u64 {
        self.clock().now_ms()
    }

    fn fetch_named(
        self: Arc<Self>,
        binding: String,
        name: String,
        request: wit::Request,
        upgrade: bool,
    ) -> BoxFuture<'static, Result<Answer, FetchError>> {
        async move {
            let class = self.class(&binding).cloned().ok_or_else(|| {
                FetchError::Event(EventError::Failed(format!("no binding {binding:?}")))
            })?;
            let id = class.namespace.id_key.id_from_name(&name);
            let mut answer = self
                .fetch(&class, id, Some(name), request, upgrade, Via::Edge)
                .await?;
            let key = ObjectKey {
                namespace: class.namespace.number,
                id,
            };
            if let Some(tag) = self.placement.served_by(&key) {
                answer.0.headers.push((SERVED_BY.to_string(), tag));
            }
            Ok(answer)
        }
        .boxed()
    }

    fn run_worker(
        self: Arc<Self>,
        request: wit::Request,
        upgrade: bool,
    ) -> BoxFuture<'static, Result<Answer, EventError>> {
        async move { Runtime::run_worker(&self, request, upgrade).await }.boxed()
    }

    fn deliver(self: Arc<Self>, key: ObjectKey, event: Event) -> Result<(), EventError> {
        Runtime::deliver(&self, key, event)
    }

    fn owner_of(&self, binding: &str, name: &str) -> Owner {
        // A single node serves everything: no need to hash the name on every request.
        if self.cluster_secret.is_none() {
            return Owner::Here;
        }
        match self.class(binding) {
            Some(class) => self.placement.owner(&ObjectKey {
                namespace: class.namespace.number,
                id: class.namespace.id_key.id_from_name(name),
            }),
            None => Owner::Here,
        }
    }

    fn cluster_secret(&self) -> Option<&str> {
        self.cluster_secret.as_deref()
    }

    fn call_here(
        self: Arc<Self>,
        binding: String,
        id: String,
        name: Option<String>,
        chain: Vec<ObjectKey>,
        request: wit::Request,
        upgrade: bool,
    ) -> BoxFuture<'static, Result<Option<Answer>, CallError>> {
        async move {
            let class = self.class(&binding).cloned().ok_or_else(|| {
                CallError::UnknownBinding(format!("no binding named {binding:?}"))
            })?;
            let key = ObjectKey {
                namespace: class.namespace.number,
                id: class
                    .namespace
                    .id_key
                    .id_from_string(&id)
                    .map_err(|e| CallError::InvalidId(e.to_string()))?,
            };
            if self.placement.owner(&key) != Owner::Here {
                return Ok(None);
            }
            let _waiting = self
                .calls
                .wait_from_afar(chain, key)
                .map_err(|_| super::calls::deadlock(&binding, &key))?;
            let answer = self
                .call(None, &binding, &id, name, request, upgrade)
                .await?;
            Ok(Some(answer))
        }
        .boxed()
    }
}

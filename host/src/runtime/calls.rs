//! Calls from one object (or the worker) to another: IDs checked, the name checked against
//! the ID, deadlocks refused through the call graph (on this node), sent to the node that
//! serves the callee in a cluster, and the answer gated like any other.

use super::{FetchError, Owner, Runtime, Via, remote};
use crate::backend::committer::CommitErrorKind;
use crate::id::{IdKey, ObjectKey};
use crate::object::EventError;
use crate::services::handoff::Handoff;
use crate::services::peer::backoff;
use crate::wasm::bindings::types as wit;
use crate::wasm::objects::{CallError, ObjectCalls};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::{Arc, Weak};

impl Runtime {
    /// A call from `caller` (None: the worker) to the object `id` of `binding`. Refuses a
    /// call that would close a cycle of objects waiting on each other, and a name that
    /// does not give `id` (an object's name is what it was derived from, never a label a
    /// caller picks). With `upgrade` the callee may accept the caller's client's WebSocket.
    pub async fn call(
        self: &Arc<Self>,
        caller: Option<ObjectKey>,
        binding: &str,
        id: &str,
        name: Option<String>,
        request: wit::Request,
        upgrade: bool,
    ) -> Result<(wit::Response, Option<Handoff>), CallError> {
        let class = self
            .class(binding)
            .cloned()
            .ok_or_else(|| CallError::UnknownBinding(format!("no binding named {binding:?}")))?;
        let id = class
            .namespace
            .id_key
            .id_from_string(id)
            .map_err(|e| CallError::InvalidId(format!("{e} (binding {binding:?})")))?;
        if let Some(name) = &name
            && class.namespace.id_key.id_from_name(name) != id
        {
            return Err(CallError::InvalidId(format!(
                "the name {name:?} does not give the ID {id} in binding {binding:?}: pass the \
                 name the ID was made from, or none"
            )));
        }
        let target = ObjectKey {
            namespace: class.namespace.number,
            id,
        };
        let _edge = match caller {
            Some(caller) => Some(
                self.calls
                    .wait_on(caller, target)
                    .map_err(|_| deadlock(binding, &target))?,
            ),
            None => None,
        };
        // In a cluster the callee may be served by another node; the call carries the
        // objects waiting on it, so that node can find a cycle through this one.
        let chain = caller.map(|c| self.calls.chain(c)).unwrap_or_default();
        let mut attempt = 0;
        loop {
            let addr = match self.placement.owner(&target) {
                Owner::Here => break,
                Owner::Elsewhere(addr) => addr,
                Owner::Nobody => {
                    backoff(&mut attempt).await.map_err(|()| {
                        CallError::Unavailable("no node serves the called object right now".into())
                    })?;
                    continue;
                }
            };
            let id = target.id.to_string();
            let to = remote::Call {
                addr: &addr,
                secret: self.cluster_secret.as_deref().unwrap_or_default(),
                binding,
                id: &id,
                name: name.as_deref(),
                chain: &chain,
            };
            let answer = if upgrade {
                remote::call_upgrade(&to, request.clone()).await?
            } else {
                remote::call(&to, request.clone()).await?
            };
            match answer {
                Some(answer) => return Ok(answer),
                None => backoff(&mut attempt).await.map_err(|()| {
                    CallError::Unavailable(format!(
                        "node {addr} would not serve the called object, and no other did in time"
                    ))
                })?,
            }
        }
        match self
            .fetch(&class, id, name, request, upgrade, Via::Call)
            .await
        {
            // Only a 101 hands its socket on, and any other answer its stream.
            Ok((response, handoff)) => {
                let handoff = handoff.filter(|h| h.fits(response.status));
                Ok((response, handoff))
            }
            // Nothing was written and a retry may pass (a reconnect, a moved shard).
            Err(FetchError::Commit(e))
                if matches!(
                    e.kind,
                    CommitErrorKind::Unavailable | CommitErrorKind::Fenced
                ) =>
            {
                Err(CallError::Unavailable(format!(
                    "the called object's write was refused, nothing written: {e}"
                )))
            }
            Err(FetchError::Commit(e)) => Err(CallError::ObjectFailed(format!(
                "the called object's write failed: {e}"
            ))),
            Err(FetchError::Event(EventError::Failed(m))) => Err(CallError::ObjectFailed(m)),
            Err(FetchError::Event(EventError::Unavailable(m))) => Err(CallError::Unavailable(m)),
        }
    }
}

/// The error for a call that would close a cycle of waiting objects.
pub(super) fn deadlock(binding: &str, target: &ObjectKey) -> CallError {
    CallError::Deadlock(format!(
        "calling {binding}/{} would deadlock: it is waiting, directly or through other \
         objects (on any node), on the caller, which is busy until this call returns",
        &target.id.to_string()[..12]
    ))
}

/// The objects interface's way to the runtime, without keeping it alive.
pub(super) struct RuntimeCalls(pub Weak<Runtime>);

impl ObjectCalls for RuntimeCalls {
    fn id_key(&self, binding: &str) -> Option<IdKey> {
        let rt = self.0.upgrade()?;
        rt.class(binding).map(|c| c.namespace.id_key.clone())
    }

    fn call(
        &self,
        caller: Option<ObjectKey>,
        binding: String,
        id: String,
        name: Option<String>,
        request: wit::Request,
        upgrade: bool,
    ) -> BoxFuture<'static, Result<(wit::Response, Option<Handoff>), CallError>> {
        let rt = self.0.upgrade();
        async move {
            let Some(rt) = rt else {
                return Err(CallError::Unavailable("the host is shutting down".into()));
            };
            rt.call(caller, &binding, &id, name, request, upgrade).await
        }
        .boxed()
    }
}

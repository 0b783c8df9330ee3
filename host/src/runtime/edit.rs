//! Operators' changes to objects (the admin API): each goes to the object as an event (see
//! `object::Edit`) and is answered once durable; and what else an operator may do to one —
//! evict its instance, list its sockets.

use super::Runtime;
use super::inspect::InspectError;
use crate::object::{Edit, EditOp, Event, EventError};
use crate::services::objstore::sql::SqlRows;
use std::sync::Arc;
use tokio::sync::oneshot;

impl Runtime {
    /// Applies `op` to object `id` of `binding`, as one of its events; Ok once durable.
    pub async fn edit(
        self: &Arc<Self>,
        binding: &str,
        id: &str,
        op: EditOp,
    ) -> Result<(), InspectError> {
        let key = self.object_key(binding, id)?;
        let (done, answer) = oneshot::channel();
        self.deliver(key, Event::Edit(Box::new(Edit { op, done })))
            .map_err(refused)?;
        let durable = answer
            .await
            .map_err(|_| InspectError::Unavailable("the object stopped before the edit".into()))?
            .map_err(refused)?;
        if let Some(durable) = durable {
            durable.await.map_err(|e| {
                InspectError::Unavailable(format!("the edit was not committed: {e}"))
            })?;
        }
        Ok(())
    }

    /// Runs a read-only SQL `query` on object `id` of `binding`, as one of its events.
    pub async fn sql(
        self: &Arc<Self>,
        binding: &str,
        id: &str,
        query: String,
    ) -> Result<SqlRows, InspectError> {
        let (rows, answer) = oneshot::channel();
        self.edit(binding, id, EditOp::Sql { query, rows }).await?;
        answer
            .await
            .map_err(|_| InspectError::Unavailable("the object stopped before the query".into()))?
            .map_err(|e| InspectError::BadRequest(format!("{:?}: {}", e.code, e.message)))
    }

    /// Drops the object's instance if it has one and is idle; false when it has none here.
    pub fn evict_id(&self, binding: &str, id: &str) -> Result<bool, InspectError> {
        Ok(self.evict_key(&self.object_key(binding, id)?))
    }

    /// The object's open WebSockets and streamed responses on this node: their IDs and
    /// tags.
    pub fn connections_of(&self, binding: &str, id: &str) -> Result<Connections, InspectError> {
        let key = self.object_key(binding, id)?;
        let (sockets, streams) = (self.sockets(), self.streams());
        Ok(Connections {
            sockets: sockets
                .list(&key, None)
                .into_iter()
                .map(|s| (s, sockets.tags(s)))
                .collect(),
            streams: streams
                .list(&key, None)
                .into_iter()
                .map(|s| (s, streams.tags(&key, s)))
                .collect(),
        })
    }
}

fn refused(e: EventError) -> InspectError {
    match e {
        EventError::Unavailable(m) => InspectError::Unavailable(m),
        EventError::Failed(m) => InspectError::BadRequest(m),
    }
}

/// An object's WebSockets and streams, each as (ID, tags).
pub struct Connections {
    pub sockets: Vec<(u64, Vec<String>)>,
    pub streams: Vec<(u64, Vec<String>)>,
}

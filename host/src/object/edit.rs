//! An operator's change to one object (through the admin API), run as one of the object's
//! events: serialized with its own, checked against the same limits, committed the same
//! way; the instance is then dropped, since its memory may hold what was changed, and the
//! next event builds it afresh from storage.

use super::*;
use bytes::Bytes;

/// What an operator changes.
pub enum EditOp {
    Put {
        key: String,
        value: Bytes,
    },
    Delete {
        key: String,
    },
    DeleteAll,
    /// The alarm at this time exactly (the minimum interval is for objects, not operators;
    /// now or earlier runs it at once).
    SetAlarm(u64),
    DeleteAlarm,
    /// A read-only SQL query; its rows (or its error) go to `rows`. Nothing is written, and
    /// the instance stays.
    Sql {
        query: String,
        rows: oneshot::Sender<
            crate::services::objstore::sql::SqlResult<crate::services::objstore::sql::SqlRows>,
        >,
    },
}

/// An edit and who waits for it: the commit to await, or why it was refused.
pub struct Edit {
    pub op: EditOp,
    pub done: oneshot::Sender<Result<Option<Durable>, EventError>>,
}

impl Actor {
    pub(super) async fn edit(&mut self, edit: Edit) {
        let Edit { op, done } = edit;
        if let Err(e) = self.ensure_live().await {
            let _ = done.send(Err(e));
            return;
        }
        let live = self.live.as_mut().expect("instance just ensured");
        let store = &mut live.store.data_mut().storage.store;
        if let EditOp::Sql { query, rows } = op {
            let deadline = std::time::Instant::now() + self.env.limits.cpu_per_event;
            let result = store
                .sql_read(&query, Some(deadline), self.env.limits.memory_per_instance)
                .await;
            if result.is_err() {
                store.discard_event();
            }
            let _ = rows.send(result);
            let durable = self.commit_writes();
            let _ = done.send(Ok(durable));
            return;
        }
        let applied = match op {
            EditOp::Put { key, value } => store.put(key, value).await,
            EditOp::Delete { key } => store.delete(key).await.map(|_| ()),
            EditOp::DeleteAll => store.delete_all(),
            EditOp::SetAlarm(at) => store.set_alarm_exactly(at),
            EditOp::DeleteAlarm => store.delete_alarm(),
            EditOp::Sql { .. } => unreachable!("answered above"),
        };
        if let Err(e) = applied {
            store.discard_event();
            let _ = done.send(Err(EventError::Failed(format!("{e:?}"))));
            return;
        }
        let durable = self.commit_writes();
        self.drop_instance("edited by an operator");
        let _ = done.send(Ok(durable));
    }
}

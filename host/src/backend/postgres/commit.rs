//! The write side of PostgreSQL: one batch of objects' writes in one transaction (one WAL
//! flush), writes sent as arrays, the shards' fence rows locked and checked first; and what
//! kind of failure a failed one was.

use super::PostgresStorage;
use super::conn::Conn;
use crate::backend::{AlarmRetry, Failure, FailureKind, Write};
use crate::id::ObjectKey;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

type Param<'a> = dyn ToSql + Sync + 'a;

/// How often a batch refused by a serialization failure (CockroachDB-style 40001, or a
/// deadlock) is tried again: nothing of it was applied or acknowledged.
const SERIALIZATION_RETRIES: usize = 5;

/// One object's writes within a batch, folded in order into their final effect.
#[derive(Default)]
struct Effect {
    clear: bool,
    keys: BTreeMap<String, Option<Bytes>>,
    alarm: Option<Option<u64>>,
    /// `Some(None)`: the retry ends; `Some(Some(r))`: the alarm is being retried.
    retry: Option<Option<AlarmRetry>>,
    name: Option<Arc<str>>,
}

fn fold(batch: &[Write<'_>]) -> BTreeMap<ObjectKey, Effect> {
    let mut effects: BTreeMap<ObjectKey, Effect> = BTreeMap::new();
    for job in batch {
        let e = effects.entry(job.object).or_default();
        let w = job.writes;
        if w.clear {
            e.clear = true;
            e.keys.clear();
        }
        e.keys
            .extend(w.map.iter().map(|(k, v)| (k.clone(), v.clone())));
        if w.alarm.is_some() {
            e.alarm = w.alarm;
        }
        // A new (or deleted) alarm ends any retry of the old one.
        match (w.alarm, w.alarm_retry) {
            (_, Some(r)) => e.retry = Some(Some(r)),
            (Some(_), None) => e.retry = Some(None),
            (None, None) => {}
        }
        if w.name.is_some() {
            e.name = w.name.clone();
        }
    }
    effects
}

/// Where a batch stood when it failed: before COMMIT was sent nothing can have been
/// applied; after, a lost connection leaves the outcome unknown.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Before,
    Committing,
}

struct Attempt {
    stage: Stage,
    error: anyhow::Error,
    fenced: bool,
}

impl PostgresStorage {
    pub(super) fn commit(&self, batch: &[Write<'_>]) -> Result<HashMap<ObjectKey, u64>, Failure> {
        let effects = fold(batch);
        let mut tries = 0;
        loop {
            let conn = self.writer().map_err(|error| Failure {
                kind: FailureKind::Unreachable,
                error,
            })?;
            let attempt = match self.block_on(apply(self, &conn, &effects)) {
                Ok(sizes) => {
                    self.put_writer(conn);
                    return Ok(sizes);
                }
                Err(a) => a,
            };
            if attempt.fenced {
                return Err(Failure {
                    kind: FailureKind::Fenced,
                    error: attempt.error,
                });
            }
            let retryable = db_code(&attempt.error).is_some_and(|c| {
                *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
            });
            if retryable && tries < SERIALIZATION_RETRIES {
                tries += 1;
                self.put_writer(conn);
                continue;
            }
            let kind = if db_code(&attempt.error).is_some() {
                // The database refused a statement: the transaction was rolled back.
                FailureKind::Other
            } else if attempt.stage == Stage::Committing {
                FailureKind::Unknown
            } else {
                FailureKind::Unreachable
            };
            if kind == FailureKind::Other {
                self.put_writer(conn);
            }
            return Err(Failure {
                kind,
                error: attempt.error,
            });
        }
    }
}

fn db_code(e: &anyhow::Error) -> Option<&SqlState> {
    e.chain()
        .find_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .and_then(|e| e.code())
}

/// A failure once COMMIT is on its way: a refused statement (a database error) aborted
/// the transaction, but a lost connection leaves the outcome unknown.
fn committing(e: tokio_postgres::Error) -> Attempt {
    Attempt {
        stage: Stage::Committing,
        error: e.into(),
        fenced: false,
    }
}

fn before(e: impl Into<anyhow::Error>) -> Attempt {
    Attempt {
        stage: Stage::Before,
        error: e.into(),
        fenced: false,
    }
}

/// One attempt: BEGIN, the fence, the deletes and the current object rows, pipelined;
/// then (once the fence is known to hold) the inserts, the object rows and COMMIT,
/// pipelined again. Two round trips whatever the batch holds.
async fn apply(
    db: &PostgresStorage,
    conn: &Conn,
    effects: &BTreeMap<ObjectKey, Effect>,
) -> Result<HashMap<ObjectKey, u64>, Attempt> {
    let c = &conn.client;
    if effects.is_empty() {
        // Whether writes would work: a round trip.
        c.simple_query("SELECT 1").await.map_err(before)?;
        return Ok(HashMap::new());
    }
    let mut shards: Vec<i32> = effects.keys().map(|o| db.shard_of(o)).collect();
    shards.sort_unstable();
    shards.dedup();
    let (mut clear_ns, mut clear_id) = (Vec::new(), Vec::new());
    let (mut key_ns, mut key_id, mut key_key) = (Vec::new(), Vec::new(), Vec::new());
    let (mut obj_ns, mut obj_id) = (Vec::new(), Vec::new());
    for (object, e) in effects {
        let (ns, id) = (object.namespace as i64, object.id.as_bytes().as_slice());
        obj_ns.push(ns);
        obj_id.push(id);
        if e.clear {
            clear_ns.push(ns);
            clear_id.push(id);
        }
        for k in e.keys.keys() {
            key_ns.push(ns);
            key_id.push(id);
            key_key.push(k.as_bytes());
        }
    }
    let fence_params: [&Param<'_>; 1] = [&shards];
    let clear_params: [&Param<'_>; 2] = [&clear_ns, &clear_id];
    let key_params: [&Param<'_>; 3] = [&key_ns, &key_id, &key_key];
    let obj_params: [&Param<'_>; 2] = [&obj_ns, &obj_id];
    let phase_a = async {
        futures::try_join!(
            c.simple_query("BEGIN"),
            c.query(&conn.fence, &fence_params),
            c.execute(&conn.clear, &clear_params),
            c.query(&conn.delete_keys, &key_params),
            c.query(&conn.objects, &obj_params),
        )
    };
    let (_, fence, _, deleted, rows) = match phase_a.await {
        Ok(r) => r,
        Err(e) => {
            rollback(c).await;
            return Err(before(e));
        }
    };
    for row in &fence {
        let shard: i32 = row.get(0);
        let epoch: i64 = row.get(1);
        let owner: &str = row.get(2);
        let ours = db.epoch(shard);
        if epoch != ours {
            rollback(c).await;
            return Err(Attempt {
                stage: Stage::Before,
                error: anyhow::anyhow!(
                    "shard {shard} is now at epoch {epoch}, held by {owner:?} (this node \
                     holds epoch {ours})"
                ),
                fenced: true,
            });
        }
    }
    if fence.len() != shards.len() {
        rollback(c).await;
        return Err(Attempt {
            stage: Stage::Before,
            error: anyhow::anyhow!("a shard's fence row is missing: the database was reset"),
            fenced: true,
        });
    }
    // Each object's new size: its old size, less what the deleted and overwritten keys
    // held, plus what is written (sizes count keys plus values, as redb's).
    let mut current: HashMap<ObjectKey, Row> = HashMap::new();
    for r in &rows {
        current.insert(
            key_of(r.get(0), r.get(1)),
            Row {
                size: r.get(2),
                name: r.get(3),
                alarm: r.get(4),
                retry_count: r.get(5),
                retry_at: r.get(6),
            },
        );
    }
    let mut freed: HashMap<ObjectKey, i64> = HashMap::new();
    for r in &deleted {
        let len: i32 = r.get(2);
        *freed.entry(key_of(r.get(0), r.get(1))).or_default() += len as i64;
    }
    let (mut ins_ns, mut ins_id, mut ins_key, mut ins_val) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut up = Upserts::default();
    let mut sizes = HashMap::new();
    for (object, e) in effects {
        let (ns, id) = (object.namespace as i64, object.id.as_bytes().as_slice());
        let mut row = current.remove(object).unwrap_or_default();
        let mut size = if e.clear { 0 } else { row.size };
        size -= freed.get(object).copied().unwrap_or(0);
        for (k, v) in &e.keys {
            if let Some(v) = v {
                ins_ns.push(ns);
                ins_id.push(id);
                ins_key.push(k.as_bytes());
                ins_val.push(v.as_ref());
                size += (k.len() + v.len()) as i64;
            }
        }
        row.size = size.max(0);
        if let Some(alarm) = e.alarm {
            row.alarm = alarm.map(|a| a as i64);
        }
        match e.retry {
            Some(Some(r)) => {
                row.retry_count = Some(r.count as i32);
                row.retry_at = Some(r.at as i64);
            }
            Some(None) => (row.retry_count, row.retry_at) = (None, None),
            None => {}
        }
        if let Some(name) = &e.name {
            row.name = Some(name.to_string());
        }
        sizes.insert(*object, row.size as u64);
        up.push(ns, id, row);
    }
    let phase_b = async {
        futures::try_join!(
            async {
                c.execute(&conn.insert, &[&ins_ns, &ins_id, &ins_key, &ins_val])
                    .await
                    .map_err(committing)
            },
            async {
                let p = &up;
                c.execute(
                    &conn.upsert_objects,
                    &[
                        &p.ns,
                        &p.id,
                        &p.size,
                        &p.name,
                        &p.alarm,
                        &p.retry_count,
                        &p.retry_at,
                    ],
                )
                .await
                .map_err(committing)
            },
            async { c.simple_query("COMMIT").await.map_err(committing) },
        )
    };
    match phase_b.await {
        Ok(_) => Ok(sizes),
        Err(a) => {
            // A refused statement aborts the transaction, and COMMIT then rolls it back;
            // a lost connection loses it unless COMMIT had already been applied.
            rollback(c).await;
            Err(a)
        }
    }
}

/// Ends a failed transaction (best effort: on a lost connection there is none left).
async fn rollback(c: &tokio_postgres::Client) {
    let _ = c.simple_query("ROLLBACK").await;
}

fn key_of(ns: i64, id: &[u8]) -> ObjectKey {
    let id: [u8; crate::id::ID_BYTES] = id.try_into().unwrap_or([0; crate::id::ID_BYTES]);
    ObjectKey {
        namespace: ns as u64,
        id: crate::id::ObjectId::from_bytes(id),
    }
}

/// An object's row in `dohost.objects`.
#[derive(Default)]
struct Row {
    size: i64,
    name: Option<String>,
    alarm: Option<i64>,
    retry_count: Option<i32>,
    retry_at: Option<i64>,
}

/// The object rows of a batch, as arrays (one `unnest` upsert).
#[derive(Default)]
struct Upserts<'a> {
    ns: Vec<i64>,
    id: Vec<&'a [u8]>,
    size: Vec<i64>,
    name: Vec<Option<String>>,
    alarm: Vec<Option<i64>>,
    retry_count: Vec<Option<i32>>,
    retry_at: Vec<Option<i64>>,
}

impl<'a> Upserts<'a> {
    fn push(&mut self, ns: i64, id: &'a [u8], row: Row) {
        self.ns.push(ns);
        self.id.push(id);
        self.size.push(row.size);
        self.name.push(row.name);
        self.alarm.push(row.alarm);
        self.retry_count.push(row.retry_count);
        self.retry_at.push(row.retry_at);
    }
}

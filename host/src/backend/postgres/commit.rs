//! The write side of PostgreSQL: one batch of objects' writes in one transaction (one WAL
//! flush), writes sent as arrays, the shards' fence rows locked and checked first; and what
//! kind of failure a failed one was.

use super::PostgresStorage;
use super::batch::{Additions, Effects, Removals, fold};
use super::conn::Conn;
use crate::backend::{Failure, FailureKind, Write};
use crate::id::ObjectKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

type Param<'a> = dyn ToSql + Sync + 'a;

/// How often a batch refused by a serialization failure (CockroachDB-style 40001, or a
/// deadlock) is tried again: nothing of it was applied or acknowledged.
const SERIALIZATION_RETRIES: usize = 5;

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
            // A database behind a black hole answers nothing: the batch gives up after
            // `storage_timeout_ms`, its outcome unknown only once COMMIT was sent.
            let sent = AtomicBool::new(false);
            // (The timer is made inside the backend's runtime: this thread has none.)
            let bounded = async {
                tokio::time::timeout(self.timeout, apply(self, &conn, &effects, &sent)).await
            };
            let attempt = match self.block_on(bounded) {
                Ok(Ok(sizes)) => {
                    self.put_writer(conn);
                    return Ok(sizes);
                }
                Ok(Err(a)) => a,
                Err(_) => {
                    // The connection may be mid-transaction: it is dropped, and the server
                    // ends the transaction (idle_in_transaction_session_timeout).
                    let error = anyhow::anyhow!(
                        "the database did not answer within {:?} (storage_timeout_ms)",
                        self.timeout
                    );
                    let kind = if sent.load(Ordering::Relaxed) {
                        FailureKind::Unknown
                    } else {
                        FailureKind::Unreachable
                    };
                    return Err(Failure { kind, error });
                }
            };
            if attempt.fenced {
                self.put_writer(conn);
                let kind = if self.held.is_cluster() {
                    FailureKind::ShardMoved
                } else {
                    FailureKind::Fenced
                };
                return Err(Failure {
                    kind,
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
    effects: &Effects,
    sent: &AtomicBool,
) -> Result<HashMap<ObjectKey, u64>, Attempt> {
    let c = &conn.client;
    if effects.is_empty() {
        // Whether writes would work: a round trip.
        c.simple_query("SELECT 1").await.map_err(before)?;
        return Ok(HashMap::new());
    }
    let mut shards: Vec<i32> = effects.keys().map(|o| db.shard_of(o) as i32).collect();
    shards.sort_unstable();
    shards.dedup();
    if let Some(s) = shards.iter().find(|s| db.held.epoch(**s as u32).is_none()) {
        return Err(Attempt {
            stage: Stage::Before,
            error: anyhow::anyhow!("this node does not hold shard {s}"),
            fenced: true,
        });
    }
    let r = Removals::of(effects);
    let fence_params: [&Param<'_>; 1] = [&shards];
    let clear_params: [&Param<'_>; 2] = [&r.clear_ns, &r.clear_id];
    let key_params: [&Param<'_>; 3] = [&r.key_ns, &r.key_id, &r.key_key];
    let obj_params: [&Param<'_>; 2] = [&r.obj_ns, &r.obj_id];
    let trim_params: [&Param<'_>; 3] = [&r.trim_ns, &r.trim_id, &r.trim_from];
    let phase_a = async {
        futures::try_join!(
            c.simple_query("BEGIN"),
            c.query(&conn.fence, &fence_params),
            c.execute(&conn.clear, &clear_params),
            c.execute(&conn.clear_pages, &clear_params),
            c.execute(&conn.trim_pages, &trim_params),
            c.query(&conn.delete_keys, &key_params),
            c.query(&conn.objects, &obj_params),
        )
    };
    let (_, fence, _, _, _, deleted, rows) = match phase_a.await {
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
        let ours = db.held.epoch(shard as u32);
        if Some(epoch) != ours {
            rollback(c).await;
            // Another node took the shard: this one gives it up.
            db.drop_shard(shard as u32);
            return Err(Attempt {
                stage: Stage::Before,
                error: anyhow::anyhow!(
                    "shard {shard} is now at epoch {epoch}, held by {owner:?} (this node \
                     held epoch {})",
                    ours.unwrap_or(0)
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
    let add = Additions::of(effects, &rows, &deleted);
    let insert_params: [&Param<'_>; 4] = [&add.ins_ns, &add.ins_id, &add.ins_key, &add.ins_val];
    let upsert_params: [&Param<'_>; 7] = [
        &add.ns,
        &add.id,
        &add.size,
        &add.name,
        &add.alarm,
        &add.retry_count,
        &add.retry_at,
    ];
    let page_params: [&Param<'_>; 4] = [&add.page_ns, &add.page_id, &add.page_no, &add.page_data];
    sent.store(true, Ordering::Relaxed);
    let phase_b = async {
        futures::try_join!(
            c.execute(&conn.insert, &insert_params),
            c.execute(&conn.upsert_pages, &page_params),
            c.execute(&conn.upsert_objects, &upsert_params),
            c.simple_query("COMMIT"),
        )
    };
    match phase_b.await {
        Ok(_) => Ok(add.sizes),
        Err(e) => {
            // A refused statement aborts the transaction, and COMMIT then rolls it back;
            // a lost connection loses it unless COMMIT had already been applied.
            rollback(c).await;
            Err(committing(e))
        }
    }
}

/// Ends a failed transaction (best effort: on a lost connection there is none left).
async fn rollback(c: &tokio_postgres::Client) {
    let _ = c.simple_query("ROLLBACK").await;
}

//! Objects' SQL against a model: random sequences of inserts (some colliding on the primary
//! key, some large enough to split pages), updates, deletes, selects, nested transactions
//! committed or rolled back, `delete-all`, events ending with their pages in flight, commits
//! becoming durable in order, commits failing (the object rebuilt from what is durable),
//! traps and evictions (a new instance over the same storage), each result checked against
//! a plain in-memory SQLite holding the rows the object should have. In-process, no HTTP,
//! no guest, over a real redb file and a real PostgreSQL. `PRAGMA quick_check` is ok at the
//! end of every case. Seeded, so a run is reproducible; proptest shrinks a failure.

mod common;
use common::now;

use dohost::backend::postgres::PostgresStorage;
use dohost::backend::redb::RedbStorage;
use dohost::backend::{Storage, Write, WriteSet};
use dohost::id::{IdKey, ObjectKey};
use dohost::services::objstore::sql::SqlErrorCode;
use dohost::services::objstore::sql::rules::SqlLimits;
use dohost::services::objstore::{InflightWrites, ObjectStore, StorageLimits};
use dohost::services::scheduler::ManualClock;
use proptest::prelude::*;
use rusqlite::types::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The table every statement works on, created by each statement if it is missing (a
/// `delete-all` drops it).
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, \
                      n INTEGER NOT NULL); CREATE INDEX IF NOT EXISTS t_v ON t (v);";

type Rows = Vec<(i64, String, i64)>;

/// A commit handed to the committer: (generation, sequence number, writes).
type Commit = (u64, u64, WriteSet);

#[derive(Debug, Clone)]
enum Op {
    /// A statement and its parameters (bound to the last statement).
    Sql(String, Vec<Value>),
    DeleteAll,
    Begin,
    Commit,
    Rollback,
    EndEvent,
    Durable,
    Fail,
    /// The event traps: its writes are dropped with the instance.
    Trap,
    /// The instance goes (idle): the next statement opens the database afresh.
    Evict,
}

fn statement() -> impl Strategy<Value = Op> {
    let text = prop::sample::select(vec!["a", "b", "c", "dd"]).prop_map(str::to_string);
    prop_oneof![
        4 => (text.clone(), -3i64..10).prop_map(|(v, n)| Op::Sql(
            "INSERT INTO t (v, n) VALUES (?, ?)".into(),
            vec![Value::Text(v), Value::Integer(n)]
        )),
        2 => (1i64..8, text.clone()).prop_map(|(id, v)| Op::Sql(
            "INSERT INTO t (id, v, n) VALUES (?, ?, 0)".into(),
            vec![Value::Integer(id), Value::Text(v)]
        )),
        // Rows over a page each: page splits, overflow pages, a growing and shrinking file.
        1 => (1usize..3).prop_map(|k| Op::Sql(
            "INSERT INTO t (v, n) VALUES (printf('%.*c', ?, 'x'), 1)".into(),
            vec![Value::Integer((k * 3000) as i64)]
        )),
        2 => (-2i64..3, 0i64..3).prop_map(|(d, m)| Op::Sql(
            "UPDATE t SET n = n + ? WHERE n % 3 = ?".into(),
            vec![Value::Integer(d), Value::Integer(m)]
        )),
        2 => (0i64..4).prop_map(|m| Op::Sql(
            "DELETE FROM t WHERE id % 4 = ?".into(),
            vec![Value::Integer(m)]
        )),
        3 => Just(Op::Sql("SELECT id, v, n FROM t ORDER BY id".into(), vec![])),
        2 => text.prop_map(|v| Op::Sql(
            "SELECT count(*), total(n) FROM t WHERE v = ?".into(),
            vec![Value::Text(v)]
        )),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => statement(),
        1 => Just(Op::DeleteAll),
        1 => Just(Op::Begin),
        1 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        2 => Just(Op::EndEvent),
        2 => Just(Op::Durable),
        1 => Just(Op::Fail),
        1 => Just(Op::Trap),
        1 => Just(Op::Evict),
    ]
}

/// The oracle: runs `sql` on a fresh in-memory SQLite holding `rows`; answers its result
/// (or the class of its error) and the rows after it.
fn oracle(
    rows: &Rows,
    sql: &str,
    params: &[Value],
) -> (Result<Vec<Vec<Value>>, SqlErrorCode>, Rows) {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(SCHEMA).unwrap();
    for (id, v, n) in rows {
        db.execute(
            "INSERT INTO t VALUES (?, ?, ?)",
            rusqlite::params![id, v, n],
        )
        .unwrap();
    }
    let result = (|| {
        let mut stmt = db.prepare(sql)?;
        let width = stmt.column_count();
        let mut out = Vec::new();
        let mut q = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        while let Some(r) = q.next()? {
            out.push((0..width).map(|i| r.get::<_, Value>(i).unwrap()).collect());
        }
        Ok::<_, rusqlite::Error>(out)
    })()
    .map_err(|e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => SqlErrorCode::Constraint,
        _ => SqlErrorCode::Internal,
    });
    (result, read_rows(&db))
}

fn read_rows(db: &rusqlite::Connection) -> Rows {
    let mut stmt = db.prepare("SELECT id, v, n FROM t ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The rows the object should show: durable, after each commit in flight, and in the event
/// with one layer per open transaction.
struct Model {
    durable: Rows,
    layers: Vec<Rows>,
}

impl Model {
    fn top(&mut self) -> &mut Rows {
        self.layers.last_mut().expect("the event layer")
    }
}

fn limits() -> Arc<StorageLimits> {
    Arc::new(StorageLimits {
        max_key_bytes: 64,
        max_value_bytes: 64,
        max_keys_per_call: 16,
        max_object_bytes: 1 << 30,
        min_alarm_interval_ms: 0,
        max_list_bytes: usize::MAX,
        sql: SqlLimits::default(),
    })
}

fn store(storage: &Arc<dyn Storage>, inflight: &Arc<InflightWrites>) -> ObjectStore {
    ObjectStore::new(
        storage.clone(),
        inflight.clone(),
        limits(),
        ManualClock::new(0),
    )
}

fn exec(s: &mut ObjectStore, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, SqlErrorCode> {
    now(s.sql_exec(sql, params, None, usize::MAX))
        .map(|r| r.rows)
        .map_err(|e| match e.code {
            SqlErrorCode::Constraint => SqlErrorCode::Constraint,
            _ => panic!("unexpected SQL error: {e:?}"),
        })
}

fn run(storage: &Arc<dyn Storage>, object: ObjectKey, ops: &[Op]) -> Result<(), TestCaseError> {
    let inflight = InflightWrites::new(object, 0, None);
    let mut real = store(storage, &inflight);
    let mut built_on = inflight.generation();
    // Events ended and not yet durable, oldest first: their commit (none when they wrote
    // no page) and the rows the model says they leave.
    let mut queued: VecDeque<(Option<Commit>, Rows)> = VecDeque::new();
    let mut model = Model {
        durable: Rows::new(),
        layers: vec![Rows::new()],
    };
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Sql(sql, params) => {
                let got = exec(&mut real, &format!("{SCHEMA} {sql}"), params);
                let (want, after) = oracle(model.top(), sql, params);
                prop_assert_eq!(got, want, "step {}: {}", step, sql);
                *model.top() = after;
            }
            Op::DeleteAll => {
                // Inside a transaction after SQL ran, it is refused (and changes nothing).
                if real.delete_all().is_ok() {
                    model.top().clear();
                }
            }
            Op::Begin => {
                real.begin().unwrap();
                let top = model.top().clone();
                model.layers.push(top);
            }
            Op::Commit => {
                if real.commit().is_ok() {
                    let top = model.layers.pop().unwrap();
                    *model.top() = top;
                }
            }
            Op::Rollback => {
                if real.rollback().is_ok() {
                    model.layers.pop();
                }
            }
            Op::EndEvent | Op::Evict => {
                model.layers.truncate(1);
                let commit = real.take_event_writes().map(|writes| {
                    let (generation, seq) = inflight
                        .begin_commit(&writes, Some(built_on))
                        .expect("no commit failed since the store was built");
                    (generation, seq, writes)
                });
                queued.push_back((commit, model.layers[0].clone()));
                if matches!(op, Op::Evict) {
                    real = store(storage, &inflight);
                }
            }
            Op::Durable => {
                if let Some((commit, rows)) = queued.pop_front() {
                    model.durable = rows;
                    if let Some((generation, seq, writes)) = commit {
                        prop_assert_eq!(generation, inflight.generation());
                        let batch = [Write {
                            object,
                            writes: &writes,
                        }];
                        let sizes = storage.commit_batch(&batch).expect("commit");
                        let size = sizes.get(&object).copied().unwrap_or(0);
                        inflight.finish_commit(seq, &writes, size);
                    }
                }
            }
            Op::Fail => {
                if let Some((generation, _, _)) = queued.iter().find_map(|(c, _)| c.as_ref()) {
                    inflight.fail_commit(*generation);
                    queued.clear();
                    let meta = now(storage.load(&object)).expect("load");
                    inflight.reload(meta.size, None);
                    real = store(storage, &inflight);
                    built_on = inflight.generation();
                    // What never became durable is gone, in the model too.
                    model.layers = vec![model.durable.clone()];
                }
            }
            Op::Trap => {
                real = store(storage, &inflight);
                let base = queued
                    .back()
                    .map_or(&model.durable, |(_, rows)| rows)
                    .clone();
                model.layers = vec![base];
            }
        }
    }
    // Everything in flight becomes durable; a fresh instance reads the database back.
    model.layers.truncate(1);
    if let Some(writes) = real.take_event_writes() {
        let (generation, seq) = inflight.begin_commit(&writes, Some(built_on)).unwrap();
        queued.push_back((Some((generation, seq, writes)), Rows::new()));
    }
    for (_, seq, writes) in queued.drain(..).filter_map(|(c, _)| c) {
        let sizes = storage
            .commit_batch(&[Write {
                object,
                writes: &writes,
            }])
            .expect("commit");
        inflight.finish_commit(seq, &writes, sizes.get(&object).copied().unwrap_or(0));
    }
    prop_assert!(inflight.is_settled());
    let mut fresh = store(storage, &inflight);
    let check = exec(&mut fresh, "PRAGMA quick_check", &[]).unwrap();
    prop_assert_eq!(check, vec![vec![Value::Text("ok".into())]]);
    let rows = exec(
        &mut fresh,
        &format!("{SCHEMA} SELECT id, v, n FROM t ORDER BY id"),
        &[],
    )
    .unwrap();
    let (want, _) = oracle(&model.layers[0], "SELECT id, v, n FROM t ORDER BY id", &[]);
    prop_assert_eq!(Ok(rows), want);
    Ok(())
}

fn next_object() -> ObjectKey {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    ObjectKey {
        namespace: 1,
        id: IdKey::new([5; 32]).id_from_name(&n.to_string()),
    }
}

fn check(storage: Arc<dyn Storage>, default_cases: u32) {
    common::run_seeded(
        "SQL_MODEL_CASES",
        9,
        default_cases,
        prop::collection::vec(op(), 1..40),
        |ops| run(&storage, next_object(), &ops),
    );
}

#[test]
fn sql_on_redb_matches_an_in_memory_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    check(Arc::new(RedbStorage::open(dir.path()).unwrap()), 500);
}

#[test]
fn sql_on_postgres_matches_an_in_memory_sqlite() {
    let url = common::postgres::server().fresh_database();
    let storage = Arc::new(
        PostgresStorage::open(
            &url,
            dohost::backend::Role::Single("sql-model"),
            dohost::Limits::default().storage_timeout,
        )
        .unwrap(),
    );
    check(storage, 100);
}

/// An open database counts against the host's memory budget (its pages and the
/// connection), and gives it back when its instance goes.
#[test]
fn an_open_database_is_held_against_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(RedbStorage::open(dir.path()).unwrap());
    let object = next_object();
    let inflight = InflightWrites::new(object, 0, None);
    let budget = dohost::services::memory::MemoryBudget::new(1 << 30);
    let mut s = store(&storage, &inflight);
    s.set_memory_budget(budget.clone());
    assert_eq!(budget.used(), 0, "no database, nothing held");
    exec(
        &mut s,
        "CREATE TABLE b (v BLOB); INSERT INTO b VALUES (zeroblob(1000000))",
        &[],
    )
    .unwrap();
    let writes = s.take_event_writes().unwrap();
    let pages = writes.sql.as_ref().unwrap().page_count as usize;
    exec(&mut s, "SELECT count(*) FROM b", &[]).unwrap();
    assert!(
        budget.used() >= pages * 4096 && pages * 4096 >= 1_000_000,
        "{} bytes held for {pages} pages",
        budget.used()
    );
    drop(s);
    assert_eq!(budget.used(), 0, "given back with the instance");
}

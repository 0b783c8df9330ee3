//! The object store against a model: random sequences of puts, deletes, `delete_all`, gets,
//! lists (every option), nested transactions committed or rolled back, events ending with
//! their writes in flight, commits becoming durable in order, and a commit failing (the
//! object then rebuilt from what is durable), checked at every read against a plain
//! `BTreeMap`. In-process, no HTTP, no guest: over a real redb file, read through and
//! preloaded (the path PostgreSQL takes for small objects), and over a real PostgreSQL.
//! Seeded, so a run is reproducible; proptest shrinks a failure to a short sequence.

mod common;
use common::now;

use bytes::Bytes;
use dohost::backend::postgres::PostgresStorage;
use dohost::backend::redb::RedbStorage;
use dohost::backend::{Preload, Storage, Write, WriteSet};
use dohost::id::{IdKey, ObjectKey};
use dohost::services::objstore::{InflightWrites, ObjectStore, StorageLimits};
use dohost::services::scheduler::ManualClock;
use proptest::prelude::*;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

type Map = BTreeMap<String, Vec<u8>>;

#[derive(Debug, Clone)]
enum Op {
    Put(String, Vec<u8>),
    Delete(String),
    DeleteAll,
    Get(String),
    List {
        start: Option<String>,
        end: Option<String>,
        prefix: Option<String>,
        reverse: bool,
        limit: Option<u32>,
    },
    Begin,
    Commit,
    Rollback,
    /// The event ends: its writes go in flight.
    EndEvent,
    /// The oldest commit in flight becomes durable.
    Durable,
    /// The commits in flight fail: the object is rebuilt from what is durable.
    Fail,
}

/// Few keys, sharing prefixes and byte order corners, so operations collide.
fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a", "ab", "abc", "b", "ba", "user:1", "user:2", "é", "z",
    ])
    .prop_map(str::to_string)
}

fn bound() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec![
        "", "a", "ab", "b", "user:", "user:2", "z", "é",
    ]))
    .prop_map(|o| o.map(str::to_string))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(k, v)| Op::Put(k, v)),
        2 => key().prop_map(Op::Delete),
        1 => Just(Op::DeleteAll),
        2 => key().prop_map(Op::Get),
        3 => (bound(), bound(), bound(), any::<bool>(), prop::option::of(0u32..5)).prop_map(
            |(start, end, prefix, reverse, limit)| Op::List { start, end, prefix, reverse, limit }
        ),
        1 => Just(Op::Begin),
        1 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        2 => Just(Op::EndEvent),
        2 => Just(Op::Durable),
        1 => Just(Op::Fail),
    ]
}

/// What the store should show: the durable state, the states after each commit in flight,
/// and the event's state with one more per open transaction.
struct Model {
    durable: Map,
    inflight: VecDeque<Map>,
    layers: Vec<Map>,
}

impl Model {
    fn visible(&self) -> &Map {
        self.layers.last().expect("the event layer")
    }

    fn top(&mut self) -> &mut Map {
        self.layers.last_mut().expect("the event layer")
    }

    fn event_base(&self) -> Map {
        self.inflight.back().unwrap_or(&self.durable).clone()
    }
}

struct Real {
    storage: Arc<dyn Storage>,
    /// Whether the object's durable data is held in memory (preloaded), as a remote
    /// backend does for small objects.
    preload: bool,
    object: ObjectKey,
    inflight: Arc<InflightWrites>,
    store: ObjectStore,
    /// The generation the store was built against (as an actor's instance is).
    built_on: u64,
    /// Commits handed over and not yet durable, oldest first: (generation, seq, writes).
    queued: VecDeque<(u64, u64, WriteSet)>,
}

fn limits() -> Arc<StorageLimits> {
    Arc::new(StorageLimits {
        max_key_bytes: 64,
        max_value_bytes: 64,
        max_keys_per_call: 16,
        max_object_bytes: 1 << 20,
        min_alarm_interval_ms: 0,
        max_list_bytes: usize::MAX,
        sql: Default::default(),
    })
}

impl Real {
    fn store(storage: &Arc<dyn Storage>, inflight: &Arc<InflightWrites>) -> ObjectStore {
        ObjectStore::new(
            storage.clone(),
            inflight.clone(),
            limits(),
            ManualClock::new(0),
        )
    }
}

/// What an actor reads back after a failed commit, preloaded when `preload` is set.
fn reread(storage: &Arc<dyn Storage>, object: &ObjectKey, preload: bool) -> (u64, Option<Preload>) {
    let meta = now(storage.load(object)).expect("load");
    if !preload {
        return (meta.size, None);
    }
    let entries = now(storage.scan(object, b"", None, false, usize::MAX)).expect("scan");
    let alarm = now(storage.get_alarm(object)).expect("alarm");
    (
        meta.size,
        Some(Preload {
            entries: entries.into_iter().collect(),
            alarm,
        }),
    )
}

fn run(
    storage: &Arc<dyn Storage>,
    preload: bool,
    object: ObjectKey,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    // A new object: empty, so a preload of it is empty.
    let inflight = InflightWrites::new(object, 0, preload.then(Preload::default));
    let mut real = Real {
        storage: storage.clone(),
        preload,
        object,
        store: Real::store(storage, &inflight),
        built_on: inflight.generation(),
        inflight,
        queued: VecDeque::new(),
    };
    let mut model = Model {
        durable: Map::new(),
        inflight: VecDeque::new(),
        layers: vec![Map::new()],
    };
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Put(k, v) => {
                now(real.store.put(k.clone(), Bytes::from(v.clone())))
                    .map_err(|e| TestCaseError::fail(format!("step {step}: {e:?}")))?;
                model.top().insert(k.clone(), v.clone());
            }
            Op::Delete(k) => {
                let existed = now(real.store.delete(k.clone())).unwrap();
                prop_assert_eq!(existed, model.top().remove(k).is_some(), "step {}", step);
            }
            Op::DeleteAll => {
                real.store.delete_all().unwrap();
                model.top().clear();
            }
            Op::Get(k) => {
                let got = now(real.store.get(k)).unwrap().map(|b| b.to_vec());
                prop_assert_eq!(got, model.visible().get(k).cloned(), "step {}", step);
            }
            Op::List {
                start,
                end,
                prefix,
                reverse,
                limit,
            } => {
                // Pages of two entries: the paging of `list_bounded` (what guests call) is
                // checked against the model too.
                let got: Vec<(String, Vec<u8>)> = now(real.store.list_paged(
                    start.as_deref(),
                    end.as_deref(),
                    prefix.as_deref(),
                    *reverse,
                    *limit,
                    2,
                ))
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k, v.to_vec()))
                .collect();
                let mut want: Vec<(String, Vec<u8>)> = model
                    .visible()
                    .iter()
                    .filter(|(k, _)| start.as_ref().is_none_or(|s| k.as_str() >= s.as_str()))
                    .filter(|(k, _)| end.as_ref().is_none_or(|e| k.as_str() < e.as_str()))
                    .filter(|(k, _)| prefix.as_ref().is_none_or(|p| k.starts_with(p.as_str())))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if *reverse {
                    want.reverse();
                }
                want.truncate(limit.map_or(usize::MAX, |l| l as usize));
                prop_assert_eq!(got, want, "step {}: {:?}", step, op);
            }
            Op::Begin => {
                real.store.begin().unwrap();
                let top = model.visible().clone();
                model.layers.push(top);
            }
            Op::Commit => {
                let ok = real.store.commit().is_ok();
                prop_assert_eq!(ok, model.layers.len() > 1, "step {}", step);
                if ok {
                    let top = model.layers.pop().unwrap();
                    *model.top() = top;
                }
            }
            Op::Rollback => {
                let ok = real.store.rollback().is_ok();
                prop_assert_eq!(ok, model.layers.len() > 1, "step {}", step);
                if ok {
                    model.layers.pop();
                }
            }
            Op::EndEvent => {
                // Open transactions are rolled back when the event ends.
                model.layers.truncate(1);
                if let Some(writes) = real.store.take_event_writes() {
                    let (generation, seq) = real
                        .inflight
                        .begin_commit(&writes, Some(real.built_on))
                        .expect("no commit failed since the store was built");
                    real.queued.push_back((generation, seq, writes));
                    model.inflight.push_back(model.layers[0].clone());
                } else {
                    prop_assert_eq!(&model.layers[0], &model.event_base(), "step {}", step);
                }
            }
            Op::Durable => {
                if let Some((generation, seq, writes)) = real.queued.pop_front() {
                    prop_assert_eq!(generation, real.inflight.generation());
                    let batch = [Write {
                        object: real.object,
                        writes: &writes,
                    }];
                    let sizes = real.storage.commit_batch(&batch).expect("commit");
                    let size = sizes.get(&real.object).copied().unwrap_or(0);
                    real.inflight.finish_commit(seq, &writes, size);
                    model.durable = model.inflight.pop_front().expect("model in step");
                }
            }
            Op::Fail => {
                if let Some((generation, _, _)) = real.queued.front() {
                    real.inflight.fail_commit(*generation);
                    real.queued.clear();
                    // The actor rebuilds: a fresh store over what is durable.
                    let (size, preload) = reread(&real.storage, &real.object, real.preload);
                    real.inflight.reload(size, preload);
                    real.store = Real::store(&real.storage, &real.inflight);
                    real.built_on = real.inflight.generation();
                    model.inflight.clear();
                    model.layers = vec![model.durable.clone()];
                }
            }
        }
    }
    Ok(())
}

/// A new object per case, so cases share one database and never each other's keys.
fn next_object() -> ObjectKey {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    ObjectKey {
        namespace: 1,
        id: IdKey::new([3; 32]).id_from_name(&n.to_string()),
    }
}

/// Runs the model's cases over `storage`.
fn check(storage: Arc<dyn Storage>, preload: bool, default_cases: u32) {
    common::run_seeded(
        "OBJSTORE_MODEL_CASES",
        7,
        default_cases,
        prop::collection::vec(op(), 1..40),
        |ops| run(&storage, preload, next_object(), &ops),
    );
}

#[test]
fn the_object_store_matches_a_btreemap_model() {
    let dir = tempfile::tempdir().unwrap();
    check(
        Arc::new(RedbStorage::open(dir.path()).unwrap()),
        false,
        2000,
    );
}

#[test]
fn a_preloaded_object_store_matches_the_model() {
    let dir = tempfile::tempdir().unwrap();
    check(Arc::new(RedbStorage::open(dir.path()).unwrap()), true, 2000);
}

/// Over a real PostgreSQL, read through (big objects) and preloaded (small ones). Fewer
/// cases: every durable step is a real commit with its WAL flush.
#[test]
fn the_object_store_on_postgres_matches_the_model() {
    let url = common::postgres::server().fresh_database();
    let storage = Arc::new(
        PostgresStorage::open(
            &url,
            dohost::backend::Role::Single("model"),
            dohost::Limits::default().storage_timeout,
        )
        .unwrap(),
    );
    check(storage.clone(), false, 150);
    check(storage, true, 150);
}

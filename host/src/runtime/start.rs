//! Start-up: compile (or load from cache) every class, open storage, apply migrations,
//! register classes, load alarms, and start the committer, the epoch ticker and the
//! scheduler.

use super::calls::RuntimeCalls;
use super::{Background, ClusterPlacement, LocalPlacement, Placement, Runtime};
use crate::backend::committer::{CommitListener, Committer, StorageHealth};
use crate::backend::{self, Storage};
use crate::cluster::{Coordinator, Membership};
use crate::config::Config;
use crate::id::ObjectKey;
use crate::object::{ActorStorage, Class, Event, ObjectEnv};
use crate::services::calls::CallGraph;
use crate::services::metrics::Metrics;
use crate::services::objstore::StorageLimits;
use crate::services::scheduler::{AlarmWaker, Clock, Firing, Scheduler, SystemClock};
use crate::services::slots::Slots;
use crate::services::sockets::Sockets;
use crate::services::streams::{StreamLimits, Streams};
use crate::wasm::bindings::ObjectPre;
use crate::wasm::engine::{self, EpochTicker};
use crate::wasm::state::ObjectState;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock, Weak};
use tokio::sync::{mpsc, watch};

/// What the committer tells the rest of the host: alarms once they are durable (to the
/// scheduler), and being fenced off the storage (to whoever serves).
struct CommitEvents {
    scheduler: Arc<Scheduler>,
    fenced: watch::Sender<Option<Arc<str>>>,
    metrics: Arc<Metrics>,
}

impl CommitListener for CommitEvents {
    fn batch_committed(&self, writes: usize, took: std::time::Duration) {
        self.metrics.commit_batch_writes.observe(writes as f64);
        self.metrics.commit_seconds.observe(took.as_secs_f64());
    }

    fn alarm_committed(&self, object: ObjectKey, at: Option<u64>) {
        self.scheduler.set(object, at);
    }

    fn fenced(&self, why: &str) {
        self.fenced.send_if_modified(|f| {
            let first = f.is_none();
            if first {
                *f = Some(why.into());
            }
            first
        });
    }
}

/// Wakes objects for the scheduler without keeping the runtime alive.
struct RuntimeWaker(Weak<Runtime>);

impl AlarmWaker for RuntimeWaker {
    fn wake(&self, object: ObjectKey, retry_count: u32, firing: Firing) {
        let Some(rt) = self.0.upgrade() else { return };
        let alarm = Event::Alarm {
            retry: retry_count,
            firing,
        };
        if let Err(e) = rt.deliver(object, alarm) {
            tracing::warn!(error = ?e, "cannot deliver an alarm; left in place");
        }
    }
}

impl Runtime {
    /// Opens the database, compiles (or loads from cache) every class and starts the
    /// background threads. Errors name the file or setting to fix.
    pub fn start(config: &Config) -> Result<Arc<Runtime>> {
        Self::start_with_clock(config, Arc::new(SystemClock))
    }

    /// Like `start`, with the clock alarms and guests read (tests pass a manual one). Must be
    /// called within a tokio runtime: it spawns the alarm scheduler.
    pub fn start_with_clock(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<Runtime>> {
        Self::start_inner(config, clock, None)
    }

    /// Starts as a cluster node that has joined etcd as `membership`.
    pub(super) fn start_clustered(
        config: &Config,
        membership: Arc<Membership>,
    ) -> Result<Arc<Runtime>> {
        Self::start_inner(config, Arc::new(SystemClock), Some(membership))
    }

    fn start_inner(
        config: &Config,
        clock: Arc<dyn Clock>,
        membership: Option<Arc<Membership>>,
    ) -> Result<Arc<Runtime>> {
        config.validate()?;
        let maps = engine::Maps::now();
        let (live, bound) = engine::size_live_objects(&config.limits, maps);
        log_live_objects(live, bound, &config.limits, maps);
        let engine = engine::build_engine(&config.limits, live, maps)?;
        // From here on the limits carry the number the pool was sized for.
        let config = &Config {
            limits: crate::config::Limits {
                max_live_objects: Some(live),
                ..config.limits.clone()
            },
            ..config.clone()
        };
        let linker = engine::build_linker(&engine)?;
        let cache_dir = config.data_dir.join("cache");
        // One compilation per distinct file, even when several bindings share a class.
        let mut compiled: HashMap<PathBuf, ObjectPre<ObjectState>> = HashMap::new();
        for class in &config.classes {
            if !compiled.contains_key(&class.component) {
                let component = engine::load_component(&engine, &class.component, &cache_dir)?;
                let name = class.component.display().to_string();
                engine::check_initial_memory(&component, &name, &config.limits)?;
                let pre = engine::prepare(&linker, &component, &name)?;
                compiled.insert(class.component.clone(), pre);
            }
        }
        let worker = match &config.worker {
            Some(path) => {
                let wl = engine::build_worker_linker(&engine)?;
                let component = engine::load_component(&engine, path, &cache_dir)?;
                Some(engine::prepare_worker(&wl, &component, path)?)
            }
            None => None,
        };
        let single = backend::open::node_name();
        let role = match &membership {
            Some(m) => backend::Role::Cluster(&m.node),
            None => backend::Role::Single(&single),
        };
        let db: Arc<dyn Storage> = backend::open::storage(
            config.storage.as_deref(),
            &config.data_dir,
            role,
            config.limits.storage_timeout,
        )?;
        if let Some(migrations) = &config.migrations {
            let bound: Vec<(String, String)> = config
                .classes
                .iter()
                .map(|c| (c.binding.clone(), c.class_name.clone()))
                .collect();
            let report = db.migrate(&config.script, migrations, &bound, false)?;
            for step in &report.steps {
                tracing::info!("migration applied: {step}");
            }
        }
        let mut classes = HashMap::new();
        let mut deployed = HashMap::new();
        let key_value_only = config
            .migrations
            .as_deref()
            .map(crate::config::migration::key_value_classes)
            .unwrap_or_default();
        for class in &config.classes {
            let code = std::fs::read(&class.component)
                .with_context(|| format!("cannot read {}", class.component.display()))?;
            deployed.insert(
                class.binding.clone(),
                (class.component.clone(), super::deploy::hash(&code)),
            );
            let namespace = match &config.migrations {
                None => db
                    .ensure_class(&config.script, &class.class_name)
                    .with_context(|| format!("cannot register class {}", class.class_name))?,
                Some(_) => db
                    .class(&config.script, &class.class_name)?
                    .with_context(|| format!("class {} does not exist", class.class_name))?,
            };
            classes.insert(
                class.binding.clone(),
                Arc::new(Class::new(
                    class.binding.clone(),
                    class.class_name.clone(),
                    namespace,
                    config.vars.clone(),
                    !key_value_only.contains(&class.class_name),
                    compiled[&class.component].clone(),
                )),
            );
        }
        // Half the slots at most go to alarms, so requests still find instances while a
        // burst of alarms runs.
        let max_firing = live as usize / 2;
        let scheduler = Scheduler::new(clock.clone(), max_firing);
        // A cluster node loads a shard's alarms when it takes the shard.
        let alarms = match membership {
            Some(_) => Vec::new(),
            None => db.all_alarms()?,
        };
        for alarm in alarms {
            match alarm.retry {
                // A retry pending at the last stop resumes as the same attempt.
                Some(r) => scheduler.retry(alarm.object, r.at, r.count),
                None => scheduler.set(alarm.object, Some(alarm.at)),
            }
        }
        let by_namespace = classes
            .values()
            .map(|c| (c.namespace.number, c.clone()))
            .collect();
        let storage_health = Arc::new(StorageHealth::default());
        let (fenced_tx, fenced) = watch::channel(None);
        let metrics = Arc::new(Metrics::new());
        let (commits, committer) = Committer::start(
            db.clone(),
            Arc::new(CommitEvents {
                scheduler: scheduler.clone(),
                fenced: fenced_tx,
                metrics: metrics.clone(),
            }),
            storage_health.clone(),
        )?;
        let ticker = EpochTicker::start(engine.clone())?;
        let (alive_tx, alive_rx) = mpsc::channel(1);
        let l = &config.limits;
        let (stop_scheduler, stop_rx) = watch::channel(false);
        let calls = Arc::new(CallGraph::default());
        let standing = membership.clone();
        let coordinator = membership.map(|m| Coordinator::new(m, db.clone()));
        let placement: Arc<dyn Placement> = match &coordinator {
            Some(c) => Arc::new(ClusterPlacement {
                view: c.view(),
                membership: c.membership().clone(),
            }),
            None => Arc::new(LocalPlacement),
        };
        let shard_count = db.shard_count();
        let probed = Arc::downgrade(&db);
        // Guests' memories, bodies being read and WebSocket send queues count against it.
        let memory = crate::services::memory::MemoryBudget::new(config.limits.max_memory);
        let runtime = Arc::new_cyclic(|weak: &Weak<Runtime>| Runtime {
            classes,
            by_namespace,
            env: Arc::new(ObjectEnv {
                engine,
                limits: config.limits.clone(),
                storage_limits: Arc::new(StorageLimits {
                    max_key_bytes: l.max_key_bytes,
                    max_value_bytes: l.max_value_bytes,
                    max_keys_per_call: l.max_keys_per_call,
                    max_object_bytes: l.max_object_bytes,
                    min_alarm_interval_ms: l.min_alarm_interval.as_millis() as u64,
                    max_list_bytes: l.memory_per_instance,
                    sql: crate::services::objstore::sql::rules::SqlLimits {
                        max_statement_bytes: l.max_sql_statement_bytes,
                        max_params: l.max_sql_params,
                        max_columns: l.max_sql_columns,
                        max_value_bytes: l.max_sql_value_bytes,
                        max_database_bytes: l.max_sql_database_bytes,
                    },
                }),
                clock,
                shared: crate::wasm::state::Shared {
                    memory: memory.clone(),
                    cpu: crate::wasm::cpu_gate::CpuGate::new(l.max_long_events as usize),
                    guest_output: Arc::new(crate::services::guest_output::GuestOutput::new(
                        l.guest_log_bytes_per_minute,
                    )),
                },
                sockets: Arc::new(Sockets::new(
                    l.ws_send_queue,
                    l.ws_send_queue_bytes,
                    memory.clone(),
                )),
                streams: Arc::new(Streams::new(
                    StreamLimits {
                        per_host: l.max_streams,
                        per_object: l.max_streams_per_object,
                        queue: l.stream_queue,
                        queue_bytes: l.stream_queue_bytes,
                    },
                    memory.clone(),
                )),
                slots: Arc::new(Slots::new(
                    live,
                    l.max_deferring_objects,
                    l.max_worker_instances,
                    l.slot_wait,
                    calls.clone(),
                    // Short of memory as of slots: idle objects give their instances up.
                    memory.pressure(),
                )),
                scheduler: scheduler.clone(),
                metrics,
                trap_log: Default::default(),
                calls: Arc::new(RuntimeCalls(weak.clone())),
            }),
            calls,
            placement,
            actors: Mutex::new(HashMap::new()),
            next_actor: AtomicU64::new(1),
            storage: RwLock::new(Some(ActorStorage {
                db,
                commits,
                alive: alive_tx,
            })),
            alive: tokio::sync::Mutex::new(alive_rx),
            background: Mutex::new(Some(Background {
                committer,
                _ticker: ticker,
                stop_scheduler,
            })),
            storage_health,
            fenced,
            cluster: Mutex::new(None),
            shard_count,
            linker,
            cache_dir,
            deployed: Mutex::new(deployed),
            cluster_secret: config.cluster.as_ref().map(|c| c.secret.clone()),
            worker,
            vars: config.vars.clone(),
        });
        let waker = Arc::new(RuntimeWaker(Arc::downgrade(&runtime)));
        tokio::spawn(crate::backend::committer::probe(
            probed,
            runtime.storage_health.clone(),
            stop_rx.clone(),
        ));
        if let Some(m) = standing {
            tokio::spawn(crate::cluster::lease::stand_down_while_unreachable(
                m,
                runtime.storage_health.clone(),
                stop_rx.clone(),
            ));
        }
        tokio::spawn(scheduler.run(waker, stop_rx));
        if let Some(c) = coordinator {
            let node = runtime.run_coordinator(c);
            *runtime.cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(node);
        }
        Ok(runtime)
    }
}

/// Says how `max_live_objects` was sized when it was not given; a kernel cap below what the
/// memory budget allows names the setting to raise (not a warning: the host works, with
/// fewer live objects than the memory would hold).
fn log_live_objects(
    live: u32,
    bound: engine::LiveBound,
    limits: &crate::config::Limits,
    maps: Option<engine::Maps>,
) {
    use engine::LiveBound;
    let mib = engine::BYTES_PER_LIVE_OBJECT >> 20;
    match bound {
        LiveBound::Given => {}
        LiveBound::Memory => tracing::info!(
            max_live_objects = live,
            "max_live_objects sized from max_memory ({} bytes), {mib} MiB per live object",
            limits.max_memory
        ),
        LiveBound::AddressSpace => tracing::info!(
            max_live_objects = live,
            "max_live_objects sized from the address space a pool of {} MiB memories may \
             reserve",
            limits.memory_per_instance >> 20
        ),
        LiveBound::MapCount {
            by_memory,
            cap_for_it,
        } => tracing::info!(
            max_live_objects = live,
            "max_live_objects is capped by the kernel's memory mappings: vm.max_map_count is \
             {} (this process holds {} already), while max_memory would allow {by_memory} \
             live objects; raise it (sysctl -w vm.max_map_count={cap_for_it}) or set \
             --max-live-objects",
            maps.map_or(0, |m| m.cap),
            maps.map_or(0, |m| m.in_use)
        ),
    }
}

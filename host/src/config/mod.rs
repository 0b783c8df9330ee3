//! The host's configuration: classes and where their components are, addresses, limits.

pub mod file;
pub mod jsonc;
pub mod machine;
pub mod migration;
pub mod size;

use anyhow::{Result, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The script name used when the file (or the zero-config mode) gives none.
pub const DEFAULT_SCRIPT: &str = "default";

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the public HTTP server listens (used by the CLI; `run` takes a bound listener).
    pub listen: SocketAddr,
    /// The data directory: the database (unless `storage` names one) and the
    /// compiled-code cache.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://USER@HOST:PORT/DB`) to keep objects' data in; `None`
    /// keeps it in redb under `data_dir`.
    pub storage: Option<String>,
    pub classes: Vec<ClassConfig>,
    pub limits: Limits,
    /// The script (worker) name: classes and migration history are kept per script.
    pub script: String,
    /// The migrations of a config file; `None` in the zero-config mode, where every
    /// component is implicitly a class of its own.
    pub migrations: Option<Vec<crate::config::migration::Migration>>,
    /// Plain variables handed to every object's constructor.
    pub vars: Vec<(String, String)>,
    /// The stateless worker component that receives every public request, if any.
    pub worker: Option<PathBuf>,
    /// Run as one node of a cluster (see `ClusterConfig`); `None` is a single node.
    pub cluster: Option<ClusterConfig>,
}

/// A cluster node's settings: where etcd is, who this node is, and how others reach it.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// etcd's client URLs.
    pub etcd: Vec<String>,
    /// This node's name, unique in the cluster.
    pub node_id: String,
    /// The address other nodes forward requests to (`host:port` of this node's listener).
    pub advertise: String,
    /// Shared by the nodes: a forwarded request must carry it (header `x-dohost-cluster`).
    pub secret: String,
    /// The etcd lease's TTL: a node that dies is replaced after about this long.
    pub lease_ttl: Duration,
}

/// One object class: the binding that reaches it, its name and its component file.
#[derive(Debug, Clone)]
pub struct ClassConfig {
    pub binding: String,
    pub class_name: String,
    pub component: PathBuf,
}

/// Every limit, named as in the CLI flags and the README.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest storage key, in bytes.
    pub max_key_bytes: usize,
    /// Largest storage value, in bytes.
    pub max_value_bytes: usize,
    /// Most keys in one get-many / put-many / delete-many call.
    pub max_keys_per_call: usize,
    /// Bytes one object may store (keys plus values).
    pub max_object_bytes: u64,
    /// Longest SQL statement text, in bytes.
    pub max_sql_statement_bytes: usize,
    /// Most bound parameters in one SQL statement.
    pub max_sql_params: usize,
    /// Most columns in a SQL table or result.
    pub max_sql_columns: usize,
    /// Largest SQL string, blob or row, in bytes.
    pub max_sql_value_bytes: usize,
    /// Largest SQL database of one object, in bytes (its storage quota, max_object_bytes, applies too; a live object holds its database in memory).
    pub max_sql_database_bytes: u64,

    /// Largest HTTP request body, in bytes.
    pub max_body_bytes: usize,
    /// CPU time one event (including construction) may use.
    pub cpu_per_event: Duration,
    /// Linear memory one instance may grow to, in bytes.
    pub memory_per_instance: usize,
    /// How long an object may sit without events before its instance is evicted.
    pub idle_timeout: Duration,
    /// Object instances alive at once (sizes the pooling allocator); past it, an event for
    /// an object without an instance waits for idle instances to be evicted, for at most
    /// `slot_wait`. `None` sizes it from the machine when the runtime starts
    /// (`wasm::engine::size_live_objects`): from `max_memory`, the memory mappings the
    /// kernel still allows this process, and its address space.
    pub max_live_objects: Option<u32>,
    /// Objects holding deferred requests (which are never evicted) live in slots of their
    /// own, this many, beside `max_live_objects`; past it they keep their live slot.
    pub max_deferring_objects: u32,
    /// How long an event waits for an instance slot (or a worker request for a worker
    /// slot) before it is refused with 503 and `Retry-After`. A wait that can never end
    /// (every slot held by an object that is itself waiting on a call) is refused at once.
    pub slot_wait: Duration,
    /// Worker instances running at once (their own slots, beside `max_live_objects`, so a
    /// worker waiting on an object never holds a slot that object needs).
    pub max_worker_instances: u32,
    /// On shutdown, how long in-flight requests may take to finish before the host stops
    /// anyway (every acknowledged write is durable already).
    pub shutdown_timeout: Duration,
    /// Alarms set sooner than this from now are moved to now plus this.
    pub min_alarm_interval: Duration,
    /// How long a deferred request may wait for its answer before the client gets 503.
    pub deferred_timeout: Duration,
    /// Largest WebSocket message a client may send, in bytes.
    pub max_ws_message_bytes: usize,
    /// Messages queued for one WebSocket client before it counts as too slow and is closed
    /// with 1013.
    pub ws_send_queue: usize,
    /// The same, in bytes of payload.
    pub ws_send_queue_bytes: usize,
    /// Streamed responses open on this host at once; an object opening one more is refused.
    pub max_streams: usize,
    /// Streamed responses one object may hold open at once.
    pub max_streams_per_object: usize,
    /// Chunks queued for one stream's client before it counts as too slow and is cut.
    pub stream_queue: usize,
    /// The same, in bytes.
    pub stream_queue_bytes: usize,
    /// How long a server-sent events stream (`text/event-stream`) may stay silent before
    /// the host writes a comment line to it, so that proxies keep it open; zero for never.
    pub sse_keepalive: Duration,
    /// Requests (and calls) queued for one object before more are refused with 503 and
    /// `Retry-After`: an object that cannot keep up sheds load instead of queueing without
    /// bound. Socket messages and alarms are not refused.
    pub max_queued_events: usize,
    /// How long a request's body may take to arrive, from the end of its headers; a client
    /// slower than that (or one that never finishes its body) gets 408.
    pub body_timeout: Duration,
    /// How long a connection may take to send a request's headers, counted from when the
    /// server waits for them: also how long a kept-alive connection may sit idle. Past it
    /// the connection is closed. WebSockets are not affected.
    pub header_timeout: Duration,
    /// How long a connection's writes may make no progress (its client reads nothing)
    /// before it is closed: an answer nobody reads cannot hold its memory for ever.
    pub write_timeout: Duration,
    /// Open public connections (HTTP connections and WebSockets) at once; one more is
    /// answered 503 with `Retry-After` and closed.
    pub max_connections: usize,
    /// Bytes the guests' linear memories, request bodies being read and WebSocket send
    /// queues may hold together; past it, a guest's growth fails its event, new requests
    /// get 503 and a socket whose message does not fit is closed (1013).
    pub max_memory: usize,
    /// Guest events running past their first time slices at once (`FREE_TICKS`); the rest
    /// wait their turn, oldest first, and each running one gives its turn up every slice.
    pub max_long_events: u32,
    /// Bytes of stdout and stderr one object may print a minute; the rest of the minute's
    /// is dropped, and the log says so and how much.
    pub guest_log_bytes_per_minute: usize,
    /// How long one exchange with the PostgreSQL database (a read, a commit batch, a
    /// connection) may take before it fails as unavailable (503 with `Retry-After`): a
    /// database behind a black hole holds requests no longer than this. Also the server's
    /// `statement_timeout` and `idle_in_transaction_session_timeout` on dohost's connections,
    /// and what the TCP keepalives are timed from.
    pub storage_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 2048,
            max_value_bytes: 128 * 1024,
            max_keys_per_call: 128,
            max_sql_statement_bytes: 100_000,
            max_sql_params: 100,
            max_sql_columns: 100,
            max_sql_value_bytes: 2_000_000,
            max_sql_database_bytes: 1 << 30,

            max_object_bytes: 50_000_000_000,
            max_body_bytes: 32 * 1024 * 1024,
            cpu_per_event: Duration::from_secs(30),
            memory_per_instance: 128 * 1024 * 1024,
            idle_timeout: Duration::from_secs(30),
            max_live_objects: None,
            max_deferring_objects: 1000,
            slot_wait: Duration::from_secs(5),
            max_worker_instances: 64,
            shutdown_timeout: Duration::from_secs(30),
            min_alarm_interval: Duration::from_secs(30),
            deferred_timeout: Duration::from_secs(60),
            max_ws_message_bytes: 1024 * 1024,
            ws_send_queue: 1024,
            ws_send_queue_bytes: 16 * 1024 * 1024,
            max_streams: 10_000,
            // A tenth of the host's, so one popular feed cannot take every stream.
            max_streams_per_object: 1_000,
            stream_queue: 1024,
            stream_queue_bytes: 1024 * 1024,
            sse_keepalive: Duration::from_secs(15),
            max_queued_events: 1000,
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(30),
            max_connections: 20_000,
            max_memory: machine::default_max_memory(),
            max_long_events: machine::default_max_long_events(),
            guest_log_bytes_per_minute: 1024 * 1024,
            storage_timeout: Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// Each limit's value as its `dohost run` flag spells it (the flag's argument id, and
    /// the value in the flag's unit): the CLI help shows these for the defaults.
    pub fn flag_defaults(&self) -> Vec<(&'static str, String)> {
        vec![
            ("max_key_bytes", self.max_key_bytes.to_string()),
            ("max_value_bytes", self.max_value_bytes.to_string()),
            ("max_keys_per_call", self.max_keys_per_call.to_string()),
            ("max_object_bytes", self.max_object_bytes.to_string()),
            (
                "max_sql_statement_bytes",
                self.max_sql_statement_bytes.to_string(),
            ),
            ("max_sql_params", self.max_sql_params.to_string()),
            ("max_sql_columns", self.max_sql_columns.to_string()),
            ("max_sql_value_bytes", self.max_sql_value_bytes.to_string()),
            (
                "max_sql_database_bytes",
                self.max_sql_database_bytes.to_string(),
            ),
            ("max_body_bytes", self.max_body_bytes.to_string()),
            ("cpu_ms", self.cpu_per_event.as_millis().to_string()),
            ("memory_bytes", self.memory_per_instance.to_string()),
            ("idle_secs", self.idle_timeout.as_secs_f64().to_string()),
            (
                "max_live_objects",
                self.max_live_objects
                    .map_or_else(|| "sized from the machine".into(), |n| n.to_string()),
            ),
            (
                "max_deferring_objects",
                self.max_deferring_objects.to_string(),
            ),
            ("slot_wait_ms", self.slot_wait.as_millis().to_string()),
            (
                "max_worker_instances",
                self.max_worker_instances.to_string(),
            ),
            (
                "shutdown_timeout_secs",
                self.shutdown_timeout.as_secs().to_string(),
            ),
            (
                "min_alarm_interval",
                self.min_alarm_interval.as_millis().to_string(),
            ),
            (
                "deferred_timeout_ms",
                self.deferred_timeout.as_millis().to_string(),
            ),
            (
                "max_ws_message_bytes",
                self.max_ws_message_bytes.to_string(),
            ),
            ("ws_send_queue", self.ws_send_queue.to_string()),
            ("ws_send_queue_bytes", self.ws_send_queue_bytes.to_string()),
            ("max_streams", self.max_streams.to_string()),
            (
                "max_streams_per_object",
                self.max_streams_per_object.to_string(),
            ),
            ("stream_queue", self.stream_queue.to_string()),
            ("stream_queue_bytes", self.stream_queue_bytes.to_string()),
            (
                "sse_keepalive_ms",
                self.sse_keepalive.as_millis().to_string(),
            ),
            ("max_queued_events", self.max_queued_events.to_string()),
            ("body_timeout_ms", self.body_timeout.as_millis().to_string()),
            (
                "header_timeout_ms",
                self.header_timeout.as_millis().to_string(),
            ),
            (
                "write_timeout_ms",
                self.write_timeout.as_millis().to_string(),
            ),
            ("max_connections", self.max_connections.to_string()),
            ("max_long_events", self.max_long_events.to_string()),
            ("max_memory", self.max_memory.to_string()),
            (
                "guest_log_bytes_per_minute",
                self.guest_log_bytes_per_minute.to_string(),
            ),
            (
                "storage_timeout_ms",
                self.storage_timeout.as_millis().to_string(),
            ),
        ]
    }
}

/// The shape of a binding name: what users type in URLs and the config.
pub fn valid_binding(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Config {
    /// The zero-config setup: each file is a class whose binding and class name are the
    /// file's stem (`counter.wasm` → binding `counter`).
    pub fn from_components(components: &[PathBuf]) -> Result<Config> {
        if components.is_empty() {
            bail!("no component given: dohost run COMPONENT.wasm...");
        }
        let mut classes: Vec<ClassConfig> = Vec::new();
        for path in components {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if !valid_binding(&stem) {
                bail!(
                    "{}: the file name gives the binding, and {stem:?} is not a valid binding \
                     name (use letters, digits, '-' and '_', at most 64)",
                    path.display()
                );
            }
            if let Some(other) = classes.iter().find(|c| c.binding == stem) {
                bail!(
                    "{} and {} would both be served as binding {stem:?}; rename one",
                    other.component.display(),
                    path.display()
                );
            }
            classes.push(ClassConfig {
                binding: stem.clone(),
                class_name: stem,
                component: path.clone(),
            });
        }
        Ok(Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: PathBuf::from("data"),
            storage: None,
            classes,
            limits: Limits::default(),
            script: DEFAULT_SCRIPT.to_string(),
            migrations: None,
            vars: Vec::new(),
            worker: None,
            cluster: None,
        })
    }

    /// Checks the limits make sense together.
    pub fn validate(&self) -> Result<()> {
        let l = &self.limits;
        if l.max_live_objects == Some(0) {
            bail!("max_live_objects must be at least 1");
        }
        if l.max_worker_instances == 0 {
            bail!("max_worker_instances must be at least 1");
        }
        if l.memory_per_instance < 64 * 1024 {
            bail!("memory_per_instance must be at least one wasm page (65536 bytes)");
        }
        if l.cpu_per_event.is_zero() {
            bail!("cpu_per_event must be more than zero");
        }
        if l.max_keys_per_call == 0 || l.max_key_bytes == 0 {
            bail!("max_keys_per_call and max_key_bytes must be at least 1");
        }
        if l.max_memory == 0 {
            bail!("max_memory must be more than zero");
        }
        if l.max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        if l.max_long_events == 0 {
            bail!("max_long_events must be at least 1");
        }
        if l.header_timeout.is_zero() {
            bail!("header_timeout_ms must be more than zero");
        }
        if l.write_timeout.is_zero() {
            bail!("write_timeout_ms must be more than zero");
        }
        if l.storage_timeout.is_zero() {
            bail!("storage_timeout_ms must be more than zero");
        }
        Ok(())
    }
}

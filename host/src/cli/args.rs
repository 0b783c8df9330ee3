//! The `dohost` command line: its subcommands, `run`'s flags and every limit flag, parsed
//! with each limit's default shown in the help.

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use dohost::Limits;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Durable Objects on your own machines: serve WebAssembly components with one live
/// instance per object ID, transactional storage and durable writes.
#[derive(Parser)]
#[command(name = "dohost", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve object classes over HTTP. Either give component files — each COMPONENT.wasm is
    /// a class whose binding is the file's stem (`counter.wasm` answers at
    /// /counter/{name}/{path}) — or a config file with --config. Flags override the file.
    Run(Box<RunArgs>),
    /// Apply a config file's pending class migrations to the data directory, or with
    /// --dry-run print what would be applied, without serving.
    Migrate(MigrateArgs),
    /// A cluster's state as etcd records it.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Look at a running node's classes and objects through its admin API, and change
    /// them (each change one of the object's events).
    Inspect(super::inspect::InspectArgs),
    /// Save a consistent copy of a running node's storage (redb) through its admin API,
    /// while it keeps serving.
    Backup {
        /// The file to write (it must not exist).
        #[arg(long)]
        to: PathBuf,
        #[arg(long, env = "DOHOST_ADMIN", default_value = dohost::admin::DEFAULT_ADDR)]
        admin: String,
        #[arg(long, value_name = "FILE", env = "DOHOST_ADMIN_TOKEN_FILE")]
        admin_token_file: Option<PathBuf>,
    },
    /// Replace a class's code on a running node, without a restart: the new component is
    /// compiled and checked first (refused with the reason, the old code serving on), then
    /// each object's next event runs on it; sockets stay connected.
    Deploy {
        /// The class's binding.
        binding: String,
        /// The new component.
        component: PathBuf,
        #[arg(long, env = "DOHOST_ADMIN", default_value = dohost::admin::DEFAULT_ADDR)]
        admin: String,
        #[arg(long, value_name = "FILE", env = "DOHOST_ADMIN_TOKEN_FILE")]
        admin_token_file: Option<PathBuf>,
    },
    /// Start an object class of your own: writes a crate with the SDK, the wasm target,
    /// an example object and its test on dohost-testing (`cargo test-host` runs it).
    New {
        /// The crate's name; its component is served as this with `-` written `_`.
        name: String,
        /// Where to write it [default: ./NAME]; must not exist or be empty.
        #[arg(long)]
        path: Option<PathBuf>,
        /// The dohost checkout whose `sdk` and `testing` crates it depends on [default: the
        /// one this dohost was built from].
        #[arg(long, value_name = "DIR")]
        dohost_path: Option<PathBuf>,
    },
    /// Put a backup into an empty data directory, for `dohost run --data DIR`.
    Restore {
        /// The backup file (from `dohost backup`).
        #[arg(long)]
        from: PathBuf,
        /// The data directory (it must hold no database).
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// The members, and how many shards each holds with their epochs.
    Status {
        /// etcd's client URLs (comma-separated).
        #[arg(long, value_name = "ETCD_URLS", env = "DOHOST_CLUSTER")]
        cluster: String,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// The object components (.wasm) to serve (not with --config).
    #[arg(
        value_name = "COMPONENT.wasm",
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub components: Vec<PathBuf>,

    /// A wrangler.json(c)-shaped config file: durable_objects bindings, migrations, vars, and
    /// the dohost block (component files, listen address, data directory, limits).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address of the public HTTP server [default: 127.0.0.1:8787].
    #[arg(long, env = "DOHOST_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Data directory: the database and the compiled-code cache [default: ./data, or the
    /// config's dohost.data_dir].
    #[arg(long, env = "DOHOST_DATA")]
    pub data: Option<PathBuf>,

    /// Keep objects' data in PostgreSQL instead of redb under --data:
    /// postgres://USER[:PASSWORD]@HOST:PORT/DB [default: the config's dohost.storage].
    #[arg(long, env = "DOHOST_STORAGE", value_name = "URL")]
    pub storage: Option<String>,

    /// Run as a node of a cluster coordinated by the etcd at these client URLs
    /// (comma-separated); needs --storage postgres://…, --node-id and --advertise.
    #[arg(long, value_name = "ETCD_URLS", env = "DOHOST_CLUSTER")]
    pub cluster: Option<String>,

    /// This node's name in the cluster (unique).
    #[arg(long, requires = "cluster", env = "DOHOST_NODE_ID")]
    pub node_id: Option<String>,

    /// The host:port other nodes forward requests to (this node's --listen as they reach
    /// it).
    #[arg(long, requires = "cluster", env = "DOHOST_ADVERTISE")]
    pub advertise: Option<String>,

    /// A secret every node of the cluster shares: forwarded requests carry it, and one
    /// without it is refused.
    #[arg(
        long,
        requires = "cluster",
        env = "DOHOST_CLUSTER_SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,

    /// Address of the admin listener (Prometheus metrics at /metrics), or `off`
    /// [default: 127.0.0.1:8788]. It is never the public port; keep it off public
    /// addresses unless a token guards it.
    #[arg(long, env = "DOHOST_ADMIN", value_name = "ADDR|off")]
    pub admin: Option<String>,

    /// A file whose first line is the bearer token the admin listener requires.
    #[arg(long, value_name = "FILE", env = "DOHOST_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// A host name the admin listener answers to besides IP addresses and `localhost`
    /// (repeatable): a request naming any other host is refused, so that a web page cannot
    /// reach the listener through a name of its own (DNS rebinding).
    #[arg(long, value_name = "NAME")]
    pub admin_host: Vec<String>,

    /// A stateless worker component that receives every public request instead of the
    /// default routes, and reaches objects through its `objects` import.
    #[arg(long, value_name = "WORKER.wasm")]
    pub worker: Option<PathBuf>,

    /// A variable for every object's `Env` (repeatable); overrides the config's `vars`.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,

    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// The config file whose migrations to apply.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,

    /// Data directory [default: the config's dohost.data_dir, or ./data].
    #[arg(long)]
    pub data: Option<PathBuf>,

    /// The PostgreSQL database to migrate instead of redb under --data [default: the
    /// config's dohost.storage].
    #[arg(long, env = "DOHOST_STORAGE", value_name = "URL")]
    pub storage: Option<String>,

    /// Print what would be applied and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Every limit; unset flags keep the config file's value or the default shown (each help
/// line gets its default from `Limits::default()`, the one definition).
#[derive(Args)]
pub struct LimitArgs {
    /// Longest storage key, in bytes.
    #[arg(long, value_parser = dohost::config::size::parse_usize, value_name = "SIZE")]
    pub max_key_bytes: Option<usize>,
    /// Largest storage value, in bytes.
    #[arg(long, value_parser = dohost::config::size::parse_usize, value_name = "SIZE")]
    pub max_value_bytes: Option<usize>,
    /// Most keys in one get-many, put-many or delete-many call.
    #[arg(long)]
    pub max_keys_per_call: Option<usize>,
    /// Longest SQL statement text, in bytes.
    #[arg(long, value_parser = dohost::config::size::parse_usize, value_name = "SIZE")]
    pub max_sql_statement_bytes: Option<usize>,
    /// Most bound parameters in one SQL statement.
    #[arg(long)]
    pub max_sql_params: Option<usize>,
    /// Most columns in a SQL table or result.
    #[arg(long)]
    pub max_sql_columns: Option<usize>,
    /// Largest SQL string, blob or row, in bytes.
    #[arg(long, value_parser = dohost::config::size::parse_usize, value_name = "SIZE")]
    pub max_sql_value_bytes: Option<usize>,
    /// Largest SQL database of one object, in bytes (its storage quota, max_object_bytes, applies too; a live object holds its database in memory).
    #[arg(long, value_parser = dohost::config::size::parse, value_name = "SIZE")]
    pub max_sql_database_bytes: Option<u64>,
    /// Bytes one object may store, keys plus values.
    #[arg(long, value_parser = dohost::config::size::parse, value_name = "SIZE")]
    pub max_object_bytes: Option<u64>,
    /// Largest HTTP request body, in bytes.
    #[arg(long, value_parser = dohost::config::size::parse_usize, value_name = "SIZE")]
    pub max_body_bytes: Option<usize>,
    /// CPU time one event may use, in milliseconds.
    #[arg(long)]
    pub cpu_ms: Option<u64>,
    /// Linear memory one instance may use, in bytes.
    #[arg(long, value_parser = dohost::config::size::parse_usize, value_name = "SIZE")]
    pub memory_bytes: Option<usize>,
    /// Seconds without events before an object's instance is evicted.
    #[arg(long)]
    pub idle_secs: Option<f64>,
    /// Object instances alive at once.
    #[arg(long)]
    pub max_live_objects: Option<u32>,
    /// How long an event waits for a free instance slot before it is refused with 503 and
    /// Retry-After, in milliseconds.
    #[arg(long)]
    pub slot_wait_ms: Option<u64>,
    /// Worker instances running at once (slots of their own).
    #[arg(long)]
    pub max_worker_instances: Option<u32>,
    /// On SIGTERM or Ctrl-C, seconds in-flight requests may take before the host stops
    /// anyway.
    #[arg(long)]
    pub shutdown_timeout_secs: Option<u64>,
    /// Minimum alarm interval, in milliseconds: an alarm set sooner than this from now is
    /// moved to now plus this (the original platform's figure; lower it for development).
    #[arg(long)]
    pub min_alarm_interval: Option<u64>,
    /// How long a deferred request waits for its answer before the client gets 503, in
    /// milliseconds.
    #[arg(long)]
    pub deferred_timeout_ms: Option<u64>,
    /// Largest WebSocket message a client may send, in bytes; a bigger one closes the
    /// socket with code 1009.
    #[arg(long, value_parser = dohost::config::size::parse_usize, value_name = "SIZE")]
    pub max_ws_message_bytes: Option<usize>,
    /// Messages queued for one WebSocket client before it counts as too slow and is closed
    /// with code 1013.
    #[arg(long)]
    pub ws_send_queue: Option<usize>,
    /// Bytes queued for one WebSocket client before it counts as too slow and is closed
    /// with code 1013.
    #[arg(long, value_parser = dohost::config::size::parse_usize, value_name = "SIZE")]
    pub ws_send_queue_bytes: Option<usize>,
    /// Streamed responses open on this host at once; an object opening one more is
    /// refused.
    #[arg(long)]
    pub max_streams: Option<usize>,
    /// Streamed responses one object may hold open at once.
    #[arg(long)]
    pub max_streams_per_object: Option<usize>,
    /// Chunks queued for one stream's client before it counts as too slow and is cut.
    #[arg(long)]
    pub stream_queue: Option<usize>,
    /// Bytes queued for one stream's client before it counts as too slow and is cut.
    #[arg(long, value_parser = dohost::config::size::parse_usize, value_name = "SIZE")]
    pub stream_queue_bytes: Option<usize>,
    /// Milliseconds a server-sent events stream may stay silent before the host writes a
    /// comment line to it (so proxies keep it open); 0 for never.
    #[arg(long)]
    pub sse_keepalive_ms: Option<u64>,
    /// Requests queued for one object before more are refused with 503 and Retry-After.
    #[arg(long)]
    pub max_queued_events: Option<usize>,
    /// How long a request's body may take to arrive, in milliseconds, before 408.
    #[arg(long)]
    pub body_timeout_ms: Option<u64>,
    /// How long a connection may take to send a request's headers, in milliseconds; also
    /// how long a kept-alive connection may sit idle. Past it the connection is closed.
    #[arg(long)]
    pub header_timeout_ms: Option<u64>,
    /// How long a connection's writes may make no progress (its client reads nothing), in
    /// milliseconds, before it is closed.
    #[arg(long)]
    pub write_timeout_ms: Option<u64>,
    /// Open public connections (HTTP and WebSocket) at once; one more gets 503 and is
    /// closed.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Guest events running past their first 15 ms at once (default: two per core); the
    /// others wait their turn, oldest first, so endless loops cannot starve short events.
    #[arg(long)]
    pub max_long_events: Option<u32>,
    /// Objects holding deferred requests (never evicted) get slots of their own, this
    /// many, beside the live-object slots (max_live_objects).
    #[arg(long)]
    pub max_deferring_objects: Option<u32>,
    /// Bytes the guests' memories, request bodies being read and WebSocket send queues
    /// may hold together (the default is three quarters of the machine's memory, or of its
    /// cgroup's limit); past it, a guest's growth fails its event, new requests get 503 and
    /// a socket whose message does not fit is closed.
    #[arg(long, value_parser = dohost::config::size::parse_usize, value_name = "SIZE")]
    pub max_memory: Option<usize>,
    /// Bytes of stdout and stderr one object may print a minute; the rest of the minute's
    /// is dropped, and the log says so and how much.
    #[arg(long, value_parser = dohost::config::size::parse_usize, value_name = "SIZE")]
    pub guest_log_bytes_per_minute: Option<usize>,
    /// How long one exchange with the PostgreSQL database may take, in milliseconds,
    /// before it fails as unavailable (503); bounds a database behind a black hole.
    #[arg(long)]
    pub storage_timeout_ms: Option<u64>,
}

impl LimitArgs {
    pub fn apply(&self, limits: &mut Limits) -> anyhow::Result<()> {
        dohost::config::file::FileLimits {
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            max_keys_per_call: self.max_keys_per_call,
            max_sql_statement_bytes: self.max_sql_statement_bytes,
            max_sql_params: self.max_sql_params,
            max_sql_columns: self.max_sql_columns,
            max_sql_value_bytes: self.max_sql_value_bytes,
            max_sql_database_bytes: self.max_sql_database_bytes,
            max_object_bytes: self.max_object_bytes,
            max_body_bytes: self.max_body_bytes,
            cpu_ms: self.cpu_ms,
            memory_bytes: self.memory_bytes,
            idle_secs: self.idle_secs,
            max_live_objects: self.max_live_objects,
            min_alarm_interval_ms: self.min_alarm_interval,
            deferred_timeout_ms: self.deferred_timeout_ms,
            max_ws_message_bytes: self.max_ws_message_bytes,
            ws_send_queue: self.ws_send_queue,
            ws_send_queue_bytes: self.ws_send_queue_bytes,
            max_streams: self.max_streams,
            max_streams_per_object: self.max_streams_per_object,
            stream_queue: self.stream_queue,
            stream_queue_bytes: self.stream_queue_bytes,
            sse_keepalive_ms: self.sse_keepalive_ms,
            max_queued_events: self.max_queued_events,
            body_timeout_ms: self.body_timeout_ms,
            header_timeout_ms: self.header_timeout_ms,
            write_timeout_ms: self.write_timeout_ms,
            max_connections: self.max_connections,
            max_long_events: self.max_long_events,
            max_deferring_objects: self.max_deferring_objects,
            max_memory: self.max_memory,
            slot_wait_ms: self.slot_wait_ms,
            max_worker_instances: self.max_worker_instances,
            shutdown_timeout_secs: self.shutdown_timeout_secs,
            guest_log_bytes_per_minute: self.guest_log_bytes_per_minute,
            storage_timeout_ms: self.storage_timeout_ms,
        }
        .apply(limits)
        .context("--idle-secs")
    }
}

/// Parses the command line, with each limit's default appended to its help from
/// `Limits::default()`, so that the help cannot drift from the code.
pub fn parse_cli() -> Cli {
    let defaults = Limits::default().flag_defaults();
    let command = Cli::command().mut_subcommand("run", |run| {
        defaults.iter().fold(run, |run, (id, value)| {
            run.mut_arg(*id, |arg| {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                arg.help(format!("{help} [default: {value}]"))
            })
        })
    });
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

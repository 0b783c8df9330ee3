//! The configuration file: the `durable_objects`, `migrations` and `vars` blocks of a
//! wrangler.json(c) as they are, plus dohost's own `dohost` block (component files, listen
//! address, data directory, storage, cluster, limits). JSON with comments and trailing
//! commas is accepted (see `jsonc`).

use crate::config::jsonc::strip_jsonc;
use crate::config::migration::Migration;
use crate::config::size;
use crate::config::{ClassConfig, ClusterConfig, Config, DEFAULT_SCRIPT, Limits, valid_binding};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
struct File {
    name: Option<String>,
    #[serde(default)]
    durable_objects: DurableObjects,
    #[serde(default)]
    migrations: Vec<Migration>,
    #[serde(default)]
    vars: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    dohost: DohostSection,
}

#[derive(Debug, Default, Deserialize)]
struct DurableObjects {
    #[serde(default)]
    bindings: Vec<Binding>,
}

#[derive(Debug, Deserialize)]
struct Binding {
    name: String,
    class_name: String,
    script_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DohostSection {
    /// Class name → component file, relative to the config file.
    #[serde(default)]
    components: BTreeMap<String, PathBuf>,
    /// The stateless worker component, relative to the config file.
    worker: Option<PathBuf>,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    /// A PostgreSQL URL to keep objects' data in (else redb under `data_dir`).
    storage: Option<String>,
    /// Run as a node of a cluster (the `--cluster` flags win over it).
    cluster: Option<FileCluster>,
    #[serde(default)]
    limits: FileLimits,
}

/// A cluster node's settings as the file spells them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    etcd: Vec<String>,
    node_id: String,
    advertise: String,
    #[serde(default)]
    secret: String,
}

/// Limits as the file spells them (the CLI flag names with `_`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    #[serde(default, deserialize_with = "size::option")]
    pub max_key_bytes: Option<usize>,
    #[serde(default, deserialize_with = "size::option")]
    pub max_value_bytes: Option<usize>,
    pub max_keys_per_call: Option<usize>,
    #[serde(default, deserialize_with = "size::option")]
    pub max_sql_statement_bytes: Option<usize>,
    pub max_sql_params: Option<usize>,
    pub max_sql_columns: Option<usize>,
    #[serde(default, deserialize_with = "size::option")]
    pub max_sql_value_bytes: Option<usize>,
    #[serde(default, deserialize_with = "size::option")]
    pub max_sql_database_bytes: Option<u64>,
    #[serde(default, deserialize_with = "size::option")]
    pub max_object_bytes: Option<u64>,
    #[serde(default, deserialize_with = "size::option")]
    pub max_body_bytes: Option<usize>,
    pub cpu_ms: Option<u64>,
    #[serde(default, deserialize_with = "size::option")]
    pub memory_bytes: Option<usize>,
    pub idle_secs: Option<f64>,
    pub max_live_objects: Option<u32>,
    pub max_deferring_objects: Option<u32>,
    pub min_alarm_interval_ms: Option<u64>,
    pub deferred_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "size::option")]
    pub max_ws_message_bytes: Option<usize>,
    pub ws_send_queue: Option<usize>,
    #[serde(default, deserialize_with = "size::option")]
    pub ws_send_queue_bytes: Option<usize>,
    pub max_streams: Option<usize>,
    pub max_streams_per_object: Option<usize>,
    pub stream_queue: Option<usize>,
    #[serde(default, deserialize_with = "size::option")]
    pub stream_queue_bytes: Option<usize>,
    pub sse_keepalive_ms: Option<u64>,
    pub max_queued_events: Option<usize>,
    pub body_timeout_ms: Option<u64>,
    pub header_timeout_ms: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_long_events: Option<u32>,
    #[serde(default, deserialize_with = "size::option")]
    pub max_memory: Option<usize>,
    pub slot_wait_ms: Option<u64>,
    pub max_worker_instances: Option<u32>,
    pub shutdown_timeout_secs: Option<u64>,
    #[serde(default, deserialize_with = "size::option")]
    pub guest_log_bytes_per_minute: Option<usize>,
    pub storage_timeout_ms: Option<u64>,
}

impl FileLimits {
    /// Applies the values that are set onto `limits`.
    pub fn apply(&self, limits: &mut Limits) -> Result<()> {
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { limits.$field = v; })* };
        }
        set!(
            max_key_bytes,
            max_value_bytes,
            max_keys_per_call,
            max_sql_statement_bytes,
            max_sql_params,
            max_sql_columns,
            max_sql_value_bytes,
            max_sql_database_bytes,
            max_object_bytes,
            max_body_bytes,
            max_deferring_objects,
            max_ws_message_bytes,
            ws_send_queue,
            ws_send_queue_bytes,
            max_streams,
            max_streams_per_object,
            stream_queue,
            stream_queue_bytes,
            max_queued_events,
            max_connections,
            max_long_events,
            max_memory,
            max_worker_instances,
            guest_log_bytes_per_minute
        );
        if let Some(n) = self.max_live_objects {
            limits.max_live_objects = Some(n);
        }
        if let Some(ms) = self.header_timeout_ms {
            limits.header_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.write_timeout_ms {
            limits.write_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.sse_keepalive_ms {
            limits.sse_keepalive = Duration::from_millis(ms);
        }
        if let Some(ms) = self.body_timeout_ms {
            limits.body_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.slot_wait_ms {
            limits.slot_wait = Duration::from_millis(ms);
        }
        if let Some(s) = self.shutdown_timeout_secs {
            limits.shutdown_timeout = Duration::from_secs(s);
        }
        if let Some(ms) = self.cpu_ms {
            limits.cpu_per_event = Duration::from_millis(ms);
        }
        if let Some(b) = self.memory_bytes {
            limits.memory_per_instance = b;
        }
        if let Some(s) = self.idle_secs {
            limits.idle_timeout = Duration::try_from_secs_f64(s)
                .context("idle_secs must be a non-negative number of seconds")?;
        }
        if let Some(ms) = self.min_alarm_interval_ms {
            limits.min_alarm_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = self.deferred_timeout_ms {
            limits.deferred_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.storage_timeout_ms {
            limits.storage_timeout = Duration::from_millis(ms);
        }
        Ok(())
    }
}

/// Reads a config file into a `Config` (migrations included).
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("in the config file {}", path.display()))
}

/// Parses config text; relative paths are resolved against `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config> {
    let json = strip_jsonc(text);
    let file: File = serde_json::from_str(&json).map_err(|e| {
        anyhow::anyhow!(
            "not a valid config (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })?;
    let script = file
        .name
        .clone()
        .unwrap_or_else(|| DEFAULT_SCRIPT.to_string());
    let mut classes = Vec::new();
    for b in &file.durable_objects.bindings {
        if !valid_binding(&b.name) {
            bail!(
                "binding name {:?} is not valid (use letters, digits, '-' and '_', at most 64)",
                b.name
            );
        }
        if classes.iter().any(|c: &ClassConfig| c.binding == b.name) {
            bail!("binding {:?} is declared twice", b.name);
        }
        if let Some(s) = &b.script_name
            && *s != script
        {
            bail!(
                "binding {:?} refers to class {:?} of script {s:?}, but this config is script \
                 {script:?}: dohost serves one script's classes (use transferred_classes to \
                 move a class into this script)",
                b.name,
                b.class_name
            );
        }
        let component = file.dohost.components.get(&b.class_name).ok_or_else(|| {
            anyhow::anyhow!(
                "class {:?} (binding {:?}) has no component file: add \"{}\": \"path/to/file.wasm\" \
                 to dohost.components",
                b.class_name,
                b.name,
                b.class_name
            )
        })?;
        classes.push(ClassConfig {
            binding: b.name.clone(),
            class_name: b.class_name.clone(),
            component: base.join(component),
        });
    }
    let mut limits = Limits::default();
    file.dohost.limits.apply(&mut limits)?;
    let vars = file
        .vars
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    Ok(Config {
        listen: file
            .dohost
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8787))),
        data_dir: base.join(
            file.dohost
                .data_dir
                .unwrap_or_else(|| PathBuf::from("data")),
        ),
        storage: file.dohost.storage,
        classes,
        limits,
        script,
        migrations: Some(file.migrations),
        vars,
        worker: file.dohost.worker.map(|w| base.join(w)),
        cluster: file.dohost.cluster.map(|c| ClusterConfig {
            etcd: c.etcd,
            node_id: c.node_id,
            advertise: c.advertise,
            secret: c.secret,
            lease_ttl: Duration::from_secs(3),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dohost_block_names_the_storage_and_the_cluster() {
        let text = r#"{
            "durable_objects": {"bindings": []},
            "dohost": {
                "storage": "postgres://me@db/app",
                "cluster": {"etcd": ["http://e1:2379"], "node_id": "n1",
                            "advertise": "10.0.0.1:8787", "secret": "s"},
            },
        }"#;
        let config = parse(text, Path::new("/")).unwrap();
        assert_eq!(config.storage.as_deref(), Some("postgres://me@db/app"));
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.etcd, ["http://e1:2379"]);
        assert_eq!(
            (cluster.node_id.as_str(), cluster.advertise.as_str()),
            ("n1", "10.0.0.1:8787")
        );
        assert_eq!(cluster.secret, "s");
    }

    #[test]
    fn sizes_in_the_file_are_numbers_or_written_with_units() {
        let text = r#"{"dohost": {"limits": {"max_memory": "512MiB", "memory_bytes": 1048576,
                        "max_body_bytes": "10MB"}}}"#;
        let limits = parse(text, Path::new("/")).unwrap().limits;
        assert_eq!(limits.max_memory, 512 << 20);
        assert_eq!(limits.memory_per_instance, 1 << 20);
        assert_eq!(limits.max_body_bytes, 10_000_000);
        let bad = r#"{"dohost": {"limits": {"max_memory": "lots"}}}"#;
        let e = format!("{:#}", parse(bad, Path::new("/")).unwrap_err());
        assert!(e.contains("not a size"), "{e}");
    }
}

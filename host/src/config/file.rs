//! The configuration file: the `durable_objects`, `migrations` and `vars` blocks of a
//! wrangler.json(c) as they are, plus dohost's own `dohost` block (component files, listen
//! address, data directory, limits). JSON with comments and trailing commas is accepted.

use crate::config::migration::Migration;
use crate::config::{ClassConfig, Config, DEFAULT_SCRIPT, Limits, valid_binding};
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
    #[serde(default)]
    limits: FileLimits,
}

/// Limits as the file spells them (the CLI flag names with `_`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_key_bytes: Option<usize>,
    pub max_value_bytes: Option<usize>,
    pub max_keys_per_call: Option<usize>,
    pub max_object_bytes: Option<u64>,
    pub max_body_bytes: Option<usize>,
    pub cpu_ms: Option<u64>,
    pub memory_bytes: Option<usize>,
    pub idle_secs: Option<f64>,
    pub max_live_objects: Option<u32>,
    pub min_alarm_interval_ms: Option<u64>,
    pub deferred_timeout_ms: Option<u64>,
    pub max_ws_message_bytes: Option<usize>,
    pub ws_send_queue: Option<usize>,
    pub slot_wait_ms: Option<u64>,
    pub max_worker_instances: Option<u32>,
    pub shutdown_timeout_secs: Option<u64>,
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
            max_object_bytes,
            max_body_bytes,
            max_live_objects,
            max_ws_message_bytes,
            ws_send_queue,
            max_worker_instances
        );
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
        cluster: None,
    })
}

/// JSON with comments (`//`, `/* */`) and trailing commas, as wrangler.jsonc allows, made
/// into plain JSON. Strings are copied untouched; line breaks are kept so error positions
/// still match the file.
pub fn strip_jsonc(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push(b'"');
                i += 1;
                while i < b.len() {
                    out.push(b[i]);
                    if b[i] == b'\\' && i + 1 < b.len() {
                        out.push(b[i + 1]);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if b[i - 1] == b'"' {
                        break;
                    }
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    if b[i] == b'\n' {
                        out.push(b'\n');
                    }
                    i += 1;
                }
                i += 2;
            }
            b',' => {
                // A comma followed (after white space and comments) by } or ] is dropped.
                let mut j = i + 1;
                loop {
                    while j < b.len() && b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if b.get(j) == Some(&b'/') && b.get(j + 1) == Some(&b'/') {
                        while j < b.len() && b[j] != b'\n' {
                            j += 1;
                        }
                    } else if b.get(j) == Some(&b'/') && b.get(j + 1) == Some(&b'*') {
                        j += 2;
                        while j < b.len() && !(b[j] == b'*' && b.get(j + 1) == Some(&b'/')) {
                            j += 1;
                        }
                        j += 2;
                    } else {
                        break;
                    }
                }
                if !matches!(b.get(j), Some(b'}') | Some(b']')) {
                    out.push(b',');
                }
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas_are_accepted() {
        let text = r#"{
            // a comment with "quotes" and a , comma
            "a": "keeps // and /* inside strings */ and \" escapes",
            /* block
               comment */ "b": [1, 2, /* x */ ],
            "c": {"d": 1,},
        }"#;
        let v: serde_json::Value = serde_json::from_str(&strip_jsonc(text)).unwrap();
        assert_eq!(v["a"], "keeps // and /* inside strings */ and \" escapes");
        assert_eq!(v["b"], serde_json::json!([1, 2]));
        assert_eq!(v["c"]["d"], 1);
    }
}

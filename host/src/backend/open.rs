//! Which backend a host runs on: PostgreSQL when a URL is configured, else redb.

use super::postgres::PostgresStorage;
use super::redb::RedbStorage;
use super::{Role, Storage};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Opens the configured backend: PostgreSQL when `url` is given, else redb under
/// `data_dir`. On PostgreSQL, `role` says which shards this process takes (see `Role`)
/// and `timeout` bounds each exchange with the database (`storage_timeout_ms`); a
/// cluster needs PostgreSQL.
pub fn storage(
    url: Option<&str>,
    data_dir: &Path,
    role: Role<'_>,
    timeout: Duration,
) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match url {
        Some(url) => Arc::new(PostgresStorage::open(url, role, timeout)?),
        None if matches!(role, Role::Cluster(_)) => anyhow::bail!(
            "a cluster keeps its data in PostgreSQL: give every node --storage postgres://…"
        ),
        None => Arc::new(RedbStorage::open(data_dir)?),
    })
}

/// How this process names itself as a shard's owner: host name and process ID.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    format!("{host}:{}", std::process::id())
}

//! Which backend a host runs on: PostgreSQL when a URL is configured, else redb.

use super::Storage;
use super::postgres::PostgresStorage;
use super::redb::RedbStorage;
use std::path::Path;
use std::sync::Arc;

/// Opens the configured backend: PostgreSQL when `url` is given, else redb under
/// `data_dir`. A serving node names itself as `owner` and takes every shard, fencing off
/// any other process that wrote to that database; a tool (`migrate`) passes None and
/// cannot commit objects' writes.
pub fn storage(
    url: Option<&str>,
    data_dir: &Path,
    owner: Option<&str>,
) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match url {
        Some(url) => Arc::new(PostgresStorage::open(url, owner)?),
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

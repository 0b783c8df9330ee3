//! The write side of redb: one batch of objects' writes in one transaction and one fsync,
//! and what kind of failure a failed one was.

use super::handle::RedbStorage;
use super::tables::{
    ALARM_RETRIES, ALARMS, KV, NAMES, OBJECT_SIZES, ObjectPrefix, SQL_PAGES, encode_retry,
};
use crate::backend::{Failure, FailureKind, Write};
use crate::id::ObjectKey;
use anyhow::{Context, Result};
use redb::ReadableTable;
use std::collections::HashMap;

/// The redb storage error under an anyhow error, whichever redb call it came from.
fn storage_error(e: &anyhow::Error) -> Option<&redb::StorageError> {
    e.chain().find_map(|c| {
        if let Some(s) = c.downcast_ref::<redb::StorageError>() {
            return Some(s);
        }
        match c.downcast_ref::<redb::CommitError>() {
            Some(redb::CommitError::Storage(s)) => return Some(s),
            Some(_) => return None,
            None => {}
        }
        match c.downcast_ref::<redb::TransactionError>() {
            Some(redb::TransactionError::Storage(s)) => return Some(s),
            Some(_) => return None,
            None => {}
        }
        match c.downcast_ref::<redb::TableError>() {
            Some(redb::TableError::Storage(s)) => Some(s),
            _ => None,
        }
    })
}

/// An I/O failure, or redb's refusal after one: both need the database reopened.
fn is_io(e: &anyhow::Error) -> bool {
    matches!(
        storage_error(e),
        Some(redb::StorageError::Io(_) | redb::StorageError::PreviousIo)
    )
}

/// ENOSPC and EDQUOT: no space left, or over a disk quota.
const DISK_FULL_ERRNOS: [i32; 2] = [28, 122];

/// What kind of failure a commit error is: a full disk, another I/O error (redb then refuses
/// every write until reopened), or something else.
pub(super) fn classify(e: anyhow::Error) -> Failure {
    let full = matches!(
        storage_error(&e),
        Some(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::StorageFull
                || io.raw_os_error().is_some_and(|n| DISK_FULL_ERRNOS.contains(&n))
    );
    let kind = if full {
        FailureKind::DiskFull
    } else if is_io(&e) {
        FailureKind::Io
    } else {
        FailureKind::Other
    };
    Failure { kind, error: e }
}

/// Applies the writes in order in one durable transaction; returns each object's new size.
pub(super) fn apply(db: &RedbStorage, batch: &[Write<'_>]) -> Result<HashMap<ObjectKey, u64>> {
    let txn = db.begin_write()?;
    let mut sizes: HashMap<ObjectKey, u64> = HashMap::new();
    {
        let mut kv = txn.open_table(KV)?;
        let mut size_table = txn.open_table(OBJECT_SIZES)?;
        let mut alarms = txn.open_table(ALARMS)?;
        let mut retries = txn.open_table(ALARM_RETRIES)?;
        let mut names = txn.open_table(NAMES)?;
        let mut pages = txn.open_table(SQL_PAGES)?;
        for job in batch {
            let prefix = ObjectPrefix::of(&job.object);
            let size = match sizes.get(&job.object) {
                Some(s) => *s,
                None => size_table
                    .get(prefix.0.as_slice())?
                    .map(|v| v.value())
                    .unwrap_or(0),
            };
            let mut size = size as i128;
            if job.writes.clear {
                let lo = prefix.0.to_vec();
                let hi = prefix.end();
                kv.retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false)?;
                let (lo, hi) = (prefix.page(0), prefix.page(u32::MAX));
                pages.retain_in::<&[u8], _>(lo.as_slice()..=hi.as_slice(), |_, _| false)?;
                size = 0;
            }
            if let Some(sql) = &job.writes.sql {
                let (lo, hi) = (prefix.page(sql.page_count), prefix.page(u32::MAX));
                pages.retain_in::<&[u8], _>(lo.as_slice()..=hi.as_slice(), |_, _| false)?;
                for (index, page) in sql.pages.range(..sql.page_count) {
                    pages.insert(prefix.page(*index).as_slice(), page.as_ref())?;
                }
                size += sql.size_delta();
            }
            for (key, value) in &job.writes.map {
                let full = prefix.key(key);
                let old = match value {
                    Some(v) => kv
                        .insert(full.as_slice(), v.as_ref())?
                        .map(|o| o.value().len()),
                    None => kv.remove(full.as_slice())?.map(|o| o.value().len()),
                };
                if let Some(old_len) = old {
                    size -= (key.len() + old_len) as i128;
                }
                if let Some(v) = value {
                    size += (key.len() + v.len()) as i128;
                }
            }
            match job.writes.alarm {
                Some(Some(at)) => {
                    alarms.insert(prefix.0.as_slice(), at)?;
                }
                Some(None) => {
                    alarms.remove(prefix.0.as_slice())?;
                }
                None => {}
            }
            // A new (or deleted) alarm ends any retry of the old one.
            match (job.writes.alarm, job.writes.alarm_retry) {
                (_, Some(retry)) => {
                    retries.insert(prefix.0.as_slice(), encode_retry(&retry).as_slice())?;
                }
                (Some(_), None) => {
                    retries.remove(prefix.0.as_slice())?;
                }
                (None, None) => {}
            }
            if let Some(name) = &job.writes.name {
                names.insert(prefix.0.as_slice(), name.as_ref())?;
            }
            let size = size.max(0) as u64;
            if size == 0 {
                size_table.remove(prefix.0.as_slice())?;
            } else {
                size_table.insert(prefix.0.as_slice(), size)?;
            }
            sizes.insert(job.object, size);
        }
    }
    txn.commit().context("fsync of the group commit")?;
    Ok(sizes)
}

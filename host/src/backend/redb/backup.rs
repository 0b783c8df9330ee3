//! A consistent copy of a running node's redb database: one read transaction (a snapshot
//! of the last commit) copied table by table into a new file, fsynced, while writes go on;
//! and its restore into an empty data directory.

use super::handle::RedbStorage;
use super::tables::{ALARM_RETRIES, ALARMS, CLASSES, KV, META, MIGRATIONS, NAMES, OBJECT_SIZES};
use anyhow::{Context, Result};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use std::path::Path;

impl RedbStorage {
    /// Writes the database as of now to a new file `to` (which must not exist).
    pub(super) fn write_backup(&self, to: &Path) -> Result<()> {
        let snapshot = self.begin_read()?;
        anyhow::ensure!(!to.exists(), "{} exists already", to.display());
        let copy = Database::create(to)
            .with_context(|| format!("cannot create the backup {}", to.display()))?;
        let txn = copy.begin_write()?;
        copy_table(&snapshot, &txn, META)?;
        copy_table(&snapshot, &txn, CLASSES)?;
        copy_table(&snapshot, &txn, MIGRATIONS)?;
        copy_table(&snapshot, &txn, KV)?;
        copy_table(&snapshot, &txn, OBJECT_SIZES)?;
        copy_table(&snapshot, &txn, NAMES)?;
        copy_table(&snapshot, &txn, ALARMS)?;
        copy_table(&snapshot, &txn, ALARM_RETRIES)?;
        // Committed with redb's default durability: on disk when this returns.
        txn.commit()?;
        Ok(())
    }
}

/// Every entry of `table` in the snapshot, into the same table of `into` (a table that
/// was never created has nothing to copy).
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    snapshot: &ReadTransaction,
    into: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<()> {
    let source = match snapshot.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut target = into.open_table(table)?;
    for entry in source.iter()? {
        let (k, v) = entry?;
        target.insert(k.value(), v.value())?;
    }
    Ok(())
}

/// Puts the backup `from` into `data_dir` as its database: the directory must hold none
/// yet; the file is checked to be a dohost database, copied, fsynced, then renamed into
/// place, so a failed restore leaves no half a database behind.
pub fn restore(from: &Path, data_dir: &Path) -> Result<()> {
    let target = data_dir.join(super::handle::FILE_NAME);
    anyhow::ensure!(
        !target.exists(),
        "{} already holds a database: restore into an empty data directory",
        data_dir.display()
    );
    {
        let db = Database::open(from)
            .with_context(|| format!("{} is not a dohost backup", from.display()))?;
        let txn = db.begin_read()?;
        txn.open_table(META).with_context(|| {
            format!("{} is not a dohost backup (no meta table)", from.display())
        })?;
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let partial = data_dir.join(format!("{}.restoring", super::handle::FILE_NAME));
    std::fs::copy(from, &partial)
        .with_context(|| format!("cannot copy {} into {}", from.display(), data_dir.display()))?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, &target)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(())
}

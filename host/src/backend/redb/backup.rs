//! A consistent copy of a running node's redb database: one read transaction (a snapshot
//! of the last commit) copied table by table into a new private file beside the data,
//! fsynced, while writes go on; and its restore into an empty data directory.

use super::handle::{FILE_NAME, RedbStorage};
use super::tables::{
    ALARM_RETRIES, ALARMS, CLASSES, KV, META, MIGRATIONS, NAMES, OBJECT_SIZES, SQL_PAGES,
};
use anyhow::{Context, Result};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

impl RedbStorage {
    /// Writes the database as of now to a new file beside it, readable by this user only
    /// (mode 0600: it holds every object's data), and answers it open for reading. The
    /// file leaves the directory as soon as it is created (the open handles keep it), so
    /// its space goes back when its reader closes it and a crash leaves nothing behind.
    /// Errors name the file within the data directory, never the directory's path: they
    /// reach the admin API's callers.
    pub(super) fn write_backup(&self) -> Result<File> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let snapshot = self.begin_read()?;
        let name = format!(
            "{FILE_NAME}.backup-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dir().join(&name);
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).with_context(|| {
            format!("cannot create the backup file {name} in the data directory")
        })?;
        let mut reader = file
            .try_clone()
            .context("cannot open the backup file twice")?;
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot unlink the backup file {name} once open"))?;
        let backend = redb::backends::FileBackend::new(file)?;
        let copy = redb::Builder::new()
            .create_with_backend(backend)
            .context("cannot start the backup's database")?;
        let txn = copy.begin_write()?;
        copy_table(&snapshot, &txn, META)?;
        copy_table(&snapshot, &txn, CLASSES)?;
        copy_table(&snapshot, &txn, MIGRATIONS)?;
        copy_table(&snapshot, &txn, KV)?;
        copy_table(&snapshot, &txn, SQL_PAGES)?;
        copy_table(&snapshot, &txn, OBJECT_SIZES)?;
        copy_table(&snapshot, &txn, NAMES)?;
        copy_table(&snapshot, &txn, ALARMS)?;
        copy_table(&snapshot, &txn, ALARM_RETRIES)?;
        // Committed with redb's default durability: on disk when this returns.
        txn.commit()?;
        drop(copy);
        reader.seek(SeekFrom::Start(0))?;
        Ok(reader)
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

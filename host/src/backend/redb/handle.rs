//! The handle on the redb database: opening it with a schema check, transactions, and
//! reopening it in place after an I/O failure (redb refuses writes until then).

use super::tables::{
    ALARM_RETRIES, ALARMS, CLASSES, KV, META, MIGRATIONS, NAMES, OBJECT_SIZES, SCHEMA_KEY,
    SCHEMA_VERSION, SQL_PAGES,
};
use anyhow::{Context, Result, bail};
use redb::{Database, ReadableDatabase, ReadableTable};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// How much free space a reopen after a storage failure asks for first (see `RedbStorage::reopen`).
const PROBE_BYTES: usize = 1 << 20;
/// How long a reopen waits for readers inside a call on the old handle.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Shared handle to the database. After an I/O error redb refuses every further write
/// until the database is closed and opened again, so the handle can be reopened in place
/// (by the committer) without the objects holding it noticing.
/// The database's file in the data directory.
pub const FILE_NAME: &str = "dohost.redb";

#[derive(Clone)]
pub struct RedbStorage {
    inner: Arc<Handle>,
}

struct Handle {
    path: PathBuf,
    // A std RwLock: held to clone the handle or swap it, never across an await or a
    // transaction. None only while a reopen is under way.
    current: RwLock<Option<Arc<Database>>>,
}

fn open_file(path: &Path) -> Result<Database> {
    Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => anyhow::anyhow!(
            "the database {} is already open: is another dohost using this data directory?",
            path.display()
        ),
        other => anyhow::anyhow!("cannot open the database {}: {other}", path.display()),
    })
}

impl RedbStorage {
    /// Opens (or creates) `dir/dohost.redb` and checks its schema version.
    pub fn open(dir: &Path) -> Result<RedbStorage> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let db = open_file(&path)?;
        let db = RedbStorage {
            inner: Arc::new(Handle {
                path,
                current: RwLock::new(Some(Arc::new(db))),
            }),
        };
        db.check_schema()?;
        Ok(db)
    }

    /// The data directory (the database file's).
    pub(super) fn dir(&self) -> &Path {
        self.inner.path.parent().unwrap_or(Path::new("."))
    }

    fn current(&self) -> Result<Arc<Database>> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .context("the database is being reopened after a storage failure; try again")
    }

    pub(super) fn begin_write(&self) -> Result<redb::WriteTransaction> {
        Ok(self.current()?.begin_write()?)
    }

    pub(super) fn begin_read(&self) -> Result<redb::ReadTransaction> {
        Ok(self.current()?.begin_read()?)
    }

    /// Closes the database and opens it again (redb's way out of a failed I/O), once the
    /// disk takes a probe write: while it does not, the old handle stays for reads. Readers
    /// that arrive meanwhile get an error; those already inside a call are waited out.
    pub fn reopen(&self) -> Result<()> {
        self.probe_space()
            .context("the disk still refuses writes")?;
        let mut slot = self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(mut old) = slot.take() {
            // A reader holds its clone for one short read: wait it out, within reason.
            let deadline = std::time::Instant::now() + REOPEN_WAIT;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => break drop(db),
                    Err(back) if std::time::Instant::now() >= deadline => {
                        *slot = Some(back);
                        bail!("the database stayed in use; will try again");
                    }
                    Err(back) => {
                        old = back;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            }
        }
        *slot = Some(Arc::new(open_file(&self.inner.path)?));
        Ok(())
    }

    /// Writes and syncs `PROBE_BYTES` beside the database, then removes them: whether the
    /// disk has room again, without touching the database.
    fn probe_space(&self) -> std::io::Result<()> {
        use std::io::Write;
        let path = self.inner.path.with_extension("space-probe");
        let result = (|| {
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&vec![0u8; PROBE_BYTES])?;
            f.sync_all()
        })();
        let _ = std::fs::remove_file(&path);
        result
    }

    fn check_schema(&self) -> Result<()> {
        let txn = self.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta
                .get(SCHEMA_KEY)?
                .map(|v| v.value().try_into().map(u32::from_be_bytes));
            match found {
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes().as_slice())?;
                }
                Some(Ok(SCHEMA_VERSION)) => {}
                Some(Ok(v)) if v > SCHEMA_VERSION => bail!(
                    "this data directory was written by a newer dohost (schema version {v}, this \
                     build knows up to {SCHEMA_VERSION}); upgrade dohost to open it"
                ),
                Some(Ok(v)) => bail!(
                    "this data directory has schema version {v}, which this dohost cannot upgrade \
                     to {SCHEMA_VERSION}"
                ),
                Some(Err(_)) => bail!("the database's schema version record is corrupt"),
            }
            txn.open_table(CLASSES)?;
            txn.open_table(KV)?;
            txn.open_table(SQL_PAGES)?;
            txn.open_table(OBJECT_SIZES)?;
            txn.open_table(ALARMS)?;
            txn.open_table(ALARM_RETRIES)?;
            txn.open_table(NAMES)?;
            txn.open_table(MIGRATIONS)?;
        }
        txn.commit()?;
        Ok(())
    }
}

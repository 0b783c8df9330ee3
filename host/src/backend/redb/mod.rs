//! The redb database: table definitions, opening with a schema check, class namespaces and
//! the read side of object storage.

pub mod migrate;

use crate::id::IdKey;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// dohost's own metadata: `schema_version` and the like.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// "script/class" → namespace record (8-byte namespace number, 32-byte ID key).
pub const CLASSES: TableDefinition<&str, &[u8]> = TableDefinition::new("classes");
/// Every object's data: namespace (8) ‖ object ID (32) ‖ user key (UTF-8) → value.
pub const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Object prefix (40 bytes) → bytes stored by that object (keys plus values).
pub const OBJECT_SIZES: TableDefinition<&[u8], u64> = TableDefinition::new("object_sizes");

/// Script name → JSON list of the migrations applied, in order (tag and digest).
pub const MIGRATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("migrations");
/// Object prefix → the time of its alarm (milliseconds since the Unix epoch).
pub const ALARMS: TableDefinition<&[u8], u64> = TableDefinition::new("alarms");
/// Object prefix → a failing alarm's retry: retry count (4 bytes) ‖ next attempt (8 bytes),
/// big-endian. Present only while the alarm is being retried.
pub const ALARM_RETRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarm_retries");
/// Object prefix → the name the object's ID was derived from, stored the first time the
/// object is reached by name, so it keeps its name however it is woken later.
pub const NAMES: TableDefinition<&[u8], &str> = TableDefinition::new("names");

/// The layout version of the tables above; a database written by a newer dohost is refused.
pub const SCHEMA_VERSION: u32 = 1;
const NEXT_NAMESPACE: &str = "next_namespace";
const SCHEMA_KEY: &str = "schema_version";

/// One entry of a redb range over `KV`.
type RangeItem<'a> = Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

/// Bytes in an object prefix: the namespace number and the object ID.
pub const PREFIX_BYTES: usize = 8 + crate::id::ID_BYTES;

/// Where one object's keys live in `KV`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ObjectPrefix(pub [u8; PREFIX_BYTES]);

impl ObjectPrefix {
    pub fn namespace(&self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"))
    }

    pub fn id(&self) -> crate::id::ObjectId {
        crate::id::ObjectId::from_bytes(self.0[8..].try_into().expect("32 bytes"))
    }

    pub fn new(namespace: u64, id: &crate::id::ObjectId) -> Self {
        let mut bytes = [0u8; PREFIX_BYTES];
        bytes[..8].copy_from_slice(&namespace.to_be_bytes());
        bytes[8..].copy_from_slice(id.as_bytes());
        ObjectPrefix(bytes)
    }

    pub fn key(&self, user_key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(PREFIX_BYTES + user_key.len());
        k.extend_from_slice(&self.0);
        k.extend_from_slice(user_key.as_bytes());
        k
    }

    /// A strict upper bound for this object's keys: user keys are UTF-8, which never holds
    /// the byte 0xFF.
    pub fn end(&self) -> Vec<u8> {
        let mut k = self.0.to_vec();
        k.push(0xFF);
        k
    }
}

/// A class's namespace: the number that prefixes its objects' data and its ID key.
#[derive(Clone)]
pub struct Namespace {
    pub number: u64,
    pub id_key: IdKey,
}

/// A failing alarm's next attempt, as stored in `ALARM_RETRIES`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AlarmRetry {
    /// Failed attempts so far (the handler sees this as its retry count).
    pub count: u32,
    /// When the next attempt is due (ms since the Unix epoch).
    pub at: u64,
}

impl AlarmRetry {
    pub fn encode(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.count.to_be_bytes());
        b[4..].copy_from_slice(&self.at.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<AlarmRetry> {
        let b: &[u8; 12] = b
            .try_into()
            .context("an alarm retry record is malformed: the database is corrupt")?;
        Ok(AlarmRetry {
            count: u32::from_be_bytes(b[..4].try_into().expect("4 bytes")),
            at: u64::from_be_bytes(b[4..].try_into().expect("8 bytes")),
        })
    }
}

/// How much free space a reopen after a storage failure asks for first (see `Db::reopen`).
const PROBE_BYTES: usize = 1 << 20;
/// How long a reopen waits for readers inside a call on the old handle.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Shared handle to the database. After an I/O error redb refuses every further write
/// until the database is closed and opened again, so the handle can be reopened in place
/// (by the committer) without the objects holding it noticing.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

struct DbInner {
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

impl Db {
    /// Opens (or creates) `dir/dohost.redb` and checks its schema version.
    pub fn open(dir: &Path) -> Result<Db> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let path = dir.join("dohost.redb");
        let db = open_file(&path)?;
        let db = Db {
            inner: Arc::new(DbInner {
                path,
                current: RwLock::new(Some(Arc::new(db))),
            }),
        };
        db.check_schema()?;
        Ok(db)
    }

    fn current(&self) -> Result<Arc<Database>> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .context("the database is being reopened after a storage failure; try again")
    }

    pub fn begin_write(&self) -> Result<redb::WriteTransaction> {
        Ok(self.current()?.begin_write()?)
    }

    pub fn begin_read(&self) -> Result<redb::ReadTransaction> {
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
            txn.open_table(OBJECT_SIZES)?;
            txn.open_table(ALARMS)?;
            txn.open_table(ALARM_RETRIES)?;
            txn.open_table(NAMES)?;
            txn.open_table(MIGRATIONS)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The namespace of `class` in `script`, created on first use (the zero-config mode,
    /// where each component file is implicitly a new class).
    pub fn ensure_class(&self, script: &str, class: &str) -> Result<Namespace> {
        if let Some(ns) = self.class(script, class)? {
            return Ok(ns);
        }
        let txn = self.begin_write()?;
        let ns = match class_in(&txn, script, class)? {
            Some(ns) => ns,
            None => create_class(&txn, script, class)?,
        };
        txn.commit()?;
        Ok(ns)
    }

    /// The namespace of `class` in `script`, if the class exists.
    pub fn class(&self, script: &str, class: &str) -> Result<Option<Namespace>> {
        let txn = self.begin_read()?;
        let classes = txn.open_table(CLASSES)?;
        let found = classes.get(class_key(script, class).as_str())?;
        found.map(|v| decode_namespace(v.value())).transpose()
    }

    /// One stored value.
    pub fn get(&self, prefix: &ObjectPrefix, key: &str) -> Result<Option<Bytes>> {
        let txn = self.begin_read()?;
        let table = txn.open_table(KV)?;
        let found = table.get(prefix.key(key).as_slice())?;
        Ok(found.map(|v| Bytes::copy_from_slice(v.value())))
    }

    /// The object's durable alarm.
    pub fn get_alarm(&self, prefix: &ObjectPrefix) -> Result<Option<u64>> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ALARMS)?;
        let found = table.get(prefix.0.as_slice())?;
        Ok(found.map(|v| v.value()))
    }

    /// Every durable alarm, as (object, time, retry): a failing alarm's retry, if one is
    /// pending, says when and as which attempt it runs next.
    pub fn all_alarms(&self) -> Result<Vec<(ObjectPrefix, u64, Option<AlarmRetry>)>> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ALARMS)?;
        let retries = txn.open_table(ALARM_RETRIES)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let prefix: [u8; PREFIX_BYTES] = k
                .value()
                .try_into()
                .context("an alarm record has a malformed key: the database is corrupt")?;
            let retry = retries
                .get(prefix.as_slice())?
                .map(|r| AlarmRetry::decode(r.value()))
                .transpose()?;
            out.push((ObjectPrefix(prefix), v.value(), retry));
        }
        Ok(out)
    }

    /// Bytes stored by one object as of its last durable commit, and its stored name.
    pub fn object_meta(&self, prefix: &ObjectPrefix) -> Result<(u64, Option<String>)> {
        let txn = self.begin_read()?;
        let size = txn
            .open_table(OBJECT_SIZES)?
            .get(prefix.0.as_slice())?
            .map(|v| v.value())
            .unwrap_or(0);
        let name = txn
            .open_table(NAMES)?
            .get(prefix.0.as_slice())?
            .map(|v| v.value().to_string());
        Ok((size, name))
    }

    /// Calls `visit` with the object's stored entries within `[lower, upper)` (user-key
    /// bytes; `None` is unbounded) in ascending or descending order until it returns false.
    pub fn scan(
        &self,
        prefix: &ObjectPrefix,
        lower: &[u8],
        upper: Option<&[u8]>,
        reverse: bool,
        mut visit: impl FnMut(String, Bytes) -> bool,
    ) -> Result<()> {
        let txn = self.begin_read()?;
        let table = txn.open_table(KV)?;
        let mut lo = prefix.0.to_vec();
        lo.extend_from_slice(lower);
        let hi = match upper {
            Some(u) => {
                let mut hi = prefix.0.to_vec();
                hi.extend_from_slice(u);
                hi
            }
            None => prefix.end(),
        };
        if lo >= hi {
            return Ok(());
        }
        let range = table.range::<&[u8]>((
            Bound::Included(lo.as_slice()),
            Bound::Excluded(hi.as_slice()),
        ))?;
        let mut step = |item: RangeItem<'_>| -> Result<bool> {
            let (k, v) = item?;
            let user_key = std::str::from_utf8(&k.value()[PREFIX_BYTES..])
                .context("a stored key is not UTF-8: the database is corrupt")?
                .to_string();
            Ok(visit(user_key, Bytes::copy_from_slice(v.value())))
        };
        if reverse {
            for item in range.rev() {
                if !step(item)? {
                    break;
                }
            }
        } else {
            for item in range {
                if !step(item)? {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The `CLASSES` key of a class.
pub fn class_key(script: &str, class: &str) -> String {
    format!("{script}/{class}")
}

/// Looks a class up inside a write transaction.
pub fn class_in(
    txn: &redb::WriteTransaction,
    script: &str,
    class: &str,
) -> Result<Option<Namespace>> {
    let classes = txn.open_table(CLASSES)?;
    let found = classes.get(class_key(script, class).as_str())?;
    found.map(|v| decode_namespace(v.value())).transpose()
}

/// Creates a class with a fresh namespace inside a write transaction.
pub fn create_class(txn: &redb::WriteTransaction, script: &str, class: &str) -> Result<Namespace> {
    let mut meta = txn.open_table(META)?;
    let number = meta
        .get(NEXT_NAMESPACE)?
        .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(1);
    meta.insert(NEXT_NAMESPACE, (number + 1).to_be_bytes().as_slice())?;
    let id_key = IdKey::random()?;
    let mut record = number.to_be_bytes().to_vec();
    record.extend_from_slice(id_key.bytes());
    let mut classes = txn.open_table(CLASSES)?;
    classes.insert(class_key(script, class).as_str(), record.as_slice())?;
    Ok(Namespace { number, id_key })
}

/// Moves a class to a new name (or script), keeping its namespace: its objects keep their
/// IDs, data and alarms.
pub fn move_class(txn: &redb::WriteTransaction, from: &str, to: &str) -> Result<()> {
    let mut classes = txn.open_table(CLASSES)?;
    let record = classes
        .remove(from)?
        .map(|v| v.value().to_vec())
        .context("class to move does not exist")?;
    classes.insert(to, record.as_slice())?;
    Ok(())
}

/// Deletes a class and everything its objects stored (data, sizes, alarms, names).
pub fn delete_class(txn: &redb::WriteTransaction, key: &str) -> Result<()> {
    let ns = {
        let mut classes = txn.open_table(CLASSES)?;
        let record = classes
            .remove(key)?
            .map(|v| v.value().to_vec())
            .context("class to delete does not exist")?;
        decode_namespace(&record)?
    };
    let lo = ns.number.to_be_bytes();
    let hi = (ns.number + 1).to_be_bytes();
    let range = lo.as_slice()..hi.as_slice();
    txn.open_table(KV)?
        .retain_in::<&[u8], _>(range.clone(), |_, _| false)?;
    txn.open_table(OBJECT_SIZES)?
        .retain_in::<&[u8], _>(range.clone(), |_, _| false)?;
    txn.open_table(ALARMS)?
        .retain_in::<&[u8], _>(range.clone(), |_, _| false)?;
    txn.open_table(ALARM_RETRIES)?
        .retain_in::<&[u8], _>(range.clone(), |_, _| false)?;
    txn.open_table(NAMES)?
        .retain_in::<&[u8], _>(range, |_, _| false)?;
    Ok(())
}

fn decode_namespace(v: &[u8]) -> Result<Namespace> {
    if v.len() != 40 {
        bail!("a class record in the database is corrupt");
    }
    let number = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
    let key: [u8; 32] = v[8..].try_into().expect("32 bytes");
    Ok(Namespace {
        number,
        id_key: IdKey::new(key),
    })
}

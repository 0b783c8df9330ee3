//! Classes in redb: each class's namespace number and ID key, created, moved (renames and
//! transfers keep a class's objects) and deleted with everything its objects stored.

use super::handle::RedbStorage;
use super::tables::{
    ALARM_RETRIES, ALARMS, CLASSES, KV, META, NAMES, NEXT_NAMESPACE, OBJECT_SIZES, SQL_PAGES,
};
use crate::id::{IdKey, Namespace};
use anyhow::{Context, Result, bail};
use redb::ReadableTable;

impl RedbStorage {
    /// The namespace of `class` in `script`, created on first use (the zero-config mode,
    /// where each component file is implicitly a new class).
    pub(super) fn ensure_class_record(&self, script: &str, class: &str) -> Result<Namespace> {
        if let Some(ns) = self.class_record(script, class)? {
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
    pub(super) fn class_record(&self, script: &str, class: &str) -> Result<Option<Namespace>> {
        let txn = self.begin_read()?;
        let classes = txn.open_table(CLASSES)?;
        let found = classes.get(class_key(script, class).as_str())?;
        found.map(|v| decode_namespace(v.value())).transpose()
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
    txn.open_table(SQL_PAGES)?
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

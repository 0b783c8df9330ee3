//! The read side of object storage in redb.

use super::handle::RedbStorage;
use super::tables::{
    ALARM_RETRIES, ALARMS, KV, NAMES, OBJECT_SIZES, ObjectPrefix, SQL_PAGES, decode_retry,
};
use crate::backend::{ObjectMeta, StoredAlarm};
use crate::id::{KEY_BYTES, ObjectId, ObjectKey};
use anyhow::{Context, Result};
use bytes::Bytes;
use redb::ReadableTable;
use std::collections::BTreeMap;
use std::ops::Bound;

/// One entry of a redb range over `KV`.
type RangeItem<'a> = Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

impl RedbStorage {
    pub(super) fn read_value(&self, object: &ObjectKey, key: &str) -> Result<Option<Bytes>> {
        let prefix = ObjectPrefix::of(object);
        let txn = self.begin_read()?;
        let table = txn.open_table(KV)?;
        let found = table.get(prefix.key(key).as_slice())?;
        Ok(found.map(|v| Bytes::copy_from_slice(v.value())))
    }

    pub(super) fn read_sql_pages(&self, object: &ObjectKey) -> Result<Vec<(u32, Bytes)>> {
        let prefix = ObjectPrefix::of(object);
        let txn = self.begin_read()?;
        let table = txn.open_table(SQL_PAGES)?;
        let (lo, hi) = (prefix.page(0), prefix.page(u32::MAX));
        let mut out = Vec::new();
        for item in table.range::<&[u8]>(lo.as_slice()..=hi.as_slice())? {
            let (k, v) = item?;
            let index: [u8; 4] = k.value()[KEY_BYTES..]
                .try_into()
                .context("a SQL page record has a malformed key: the database is corrupt")?;
            out.push((u32::from_be_bytes(index), Bytes::copy_from_slice(v.value())));
        }
        Ok(out)
    }

    pub(super) fn read_alarm(&self, object: &ObjectKey) -> Result<Option<u64>> {
        let prefix = ObjectPrefix::of(object);
        let txn = self.begin_read()?;
        let table = txn.open_table(ALARMS)?;
        let found = table.get(prefix.0.as_slice())?;
        Ok(found.map(|v| v.value()))
    }

    pub(super) fn read_all_alarms(&self) -> Result<Vec<StoredAlarm>> {
        let txn = self.begin_read()?;
        let table = txn.open_table(ALARMS)?;
        let retries = txn.open_table(ALARM_RETRIES)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let prefix: [u8; KEY_BYTES] = k
                .value()
                .try_into()
                .context("an alarm record has a malformed key: the database is corrupt")?;
            let retry = retries
                .get(prefix.as_slice())?
                .map(|r| decode_retry(r.value()))
                .transpose()?;
            out.push(StoredAlarm {
                object: ObjectPrefix(prefix).object(),
                at: v.value(),
                retry,
            });
        }
        Ok(out)
    }

    pub(super) fn read_meta(&self, object: &ObjectKey) -> Result<ObjectMeta> {
        let prefix = ObjectPrefix::of(object);
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
        Ok(ObjectMeta {
            size,
            name,
            preload: None,
        })
    }

    pub(super) fn read_range(
        &self,
        object: &ObjectKey,
        lower: &[u8],
        upper: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        let prefix = ObjectPrefix::of(object);
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
        let mut out = Vec::new();
        if lo >= hi || limit == 0 {
            return Ok(out);
        }
        let range = table.range::<&[u8]>((
            Bound::Included(lo.as_slice()),
            Bound::Excluded(hi.as_slice()),
        ))?;
        let mut step = |item: RangeItem<'_>| -> Result<bool> {
            let (k, v) = item?;
            let user_key = std::str::from_utf8(&k.value()[KEY_BYTES..])
                .context("a stored key is not UTF-8: the database is corrupt")?
                .to_string();
            out.push((user_key, Bytes::copy_from_slice(v.value())));
            Ok(out.len() < limit)
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
        Ok(out)
    }

    /// Objects of `namespace` with a size or a name recorded, in ID order after `after`.
    pub(super) fn read_objects(
        &self,
        namespace: u64,
        after: Option<ObjectId>,
        limit: usize,
    ) -> Result<Vec<(ObjectId, Option<String>)>> {
        let from = match after {
            Some(id) => Bound::Excluded(ObjectKey { namespace, id }.to_bytes()),
            None => Bound::Included(
                ObjectKey {
                    namespace,
                    id: ObjectId::from_bytes([0; crate::id::ID_BYTES]),
                }
                .to_bytes(),
            ),
        };
        let in_namespace = |k: &[u8]| k[..8] == namespace.to_be_bytes();
        let txn = self.begin_read()?;
        let sizes = txn.open_table(OBJECT_SIZES)?;
        let names = txn.open_table(NAMES)?;
        let from = from.as_ref().map(|k| k.as_slice());
        // The first `limit` of each table, merged: the first `limit` of the union.
        let mut found: BTreeMap<[u8; KEY_BYTES], Option<String>> = BTreeMap::new();
        for item in sizes.range::<&[u8]>((from, Bound::Unbounded))?.take(limit) {
            let key = item?.0.value().to_vec();
            if !in_namespace(&key) {
                break;
            }
            found.insert(prefix_of(&key)?, None);
        }
        for item in names.range::<&[u8]>((from, Bound::Unbounded))?.take(limit) {
            let (k, v) = item?;
            if !in_namespace(k.value()) {
                break;
            }
            found.insert(prefix_of(k.value())?, Some(v.value().to_string()));
        }
        let mut out = Vec::new();
        for (key, name) in found.into_iter().take(limit) {
            let name = match name {
                Some(n) => Some(n),
                None => names.get(key.as_slice())?.map(|v| v.value().to_string()),
            };
            out.push((ObjectPrefix(key).object().id, name));
        }
        Ok(out)
    }
}

impl RedbStorage {
    /// Every object's recorded size, summed per namespace (one pass over the sizes).
    pub(super) fn read_stored_bytes(&self) -> Result<std::collections::HashMap<u64, u64>> {
        let txn = self.begin_read()?;
        let sizes = txn.open_table(OBJECT_SIZES)?;
        let mut out = std::collections::HashMap::new();
        for item in sizes.iter()? {
            let (k, v) = item?;
            let object = ObjectPrefix(prefix_of(k.value())?).object();
            *out.entry(object.namespace).or_insert(0) += v.value();
        }
        Ok(out)
    }
}

fn prefix_of(key: &[u8]) -> Result<[u8; KEY_BYTES]> {
    key.try_into()
        .context("an object record has a malformed key: the database is corrupt")
}

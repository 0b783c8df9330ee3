//! The read side of PostgreSQL: an object's values, ranges and alarm over the shared
//! reader connections, its preload at activation, and every alarm at start.

use super::conn::Conn;
use super::{PRELOAD_MAX_BYTES, PostgresStorage};
use crate::backend::{ObjectMeta, Preload, StoredAlarm};
use crate::id::{ObjectId, ObjectKey};
use anyhow::{Context, Result};
use bytes::Bytes;
use tokio_postgres::types::ToSql;

impl PostgresStorage {
    pub(super) async fn reader(&self) -> Result<std::sync::Arc<Conn>> {
        self.readers
            .get(&self.config, self.timeout, self.rt().handle(), &self.url)
            .await
    }

    /// One read, bounded by `storage_timeout_ms`, its failure to reach the database
    /// marked `Unreachable` (see `conn::bounded`).
    async fn bounded<T>(&self, read: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        super::conn::bounded(self.timeout, read).await
    }

    pub(super) async fn read_value(&self, object: &ObjectKey, key: &str) -> Result<Option<Bytes>> {
        self.bounded(async {
            let c = self.reader().await?;
            let (ns, id) = (object.namespace as i64, object.id.as_bytes().as_slice());
            let row = c
                .client
                .query_opt(&c.get, &[&ns, &id, &key.as_bytes()])
                .await?;
            Ok(row.map(|r| Bytes::from(r.get::<_, Vec<u8>>(0))))
        })
        .await
    }

    pub(super) async fn read_range(
        &self,
        object: &ObjectKey,
        lower: &[u8],
        upper: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        self.bounded(async {
            let c = self.reader().await?;
            let (ns, id) = (object.namespace as i64, object.id.as_bytes().as_slice());
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = match (upper, reverse) {
                (None, false) => c.client.query(&c.scan, &[&ns, &id, &lower, &limit]).await?,
                (None, true) => {
                    c.client
                        .query(&c.scan_rev, &[&ns, &id, &lower, &limit])
                        .await?
                }
                (Some(u), false) => {
                    c.client
                        .query(&c.scan_upper, &[&ns, &id, &lower, &limit, &u])
                        .await?
                }
                (Some(u), true) => {
                    c.client
                        .query(&c.scan_rev_upper, &[&ns, &id, &lower, &limit, &u])
                        .await?
                }
            };
            rows.into_iter().map(entry).collect()
        })
        .await
    }

    pub(super) async fn read_sql_pages(&self, object: &ObjectKey) -> Result<Vec<(u32, Bytes)>> {
        self.bounded(async {
            let c = self.reader().await?;
            let (ns, id) = (object.namespace as i64, object.id.as_bytes().as_slice());
            let rows = c.client.query(&c.sql_pages, &[&ns, &id]).await?;
            Ok(rows
                .iter()
                .map(|r| {
                    let data: &[u8] = r.get(1);
                    (r.get::<_, i32>(0) as u32, Bytes::copy_from_slice(data))
                })
                .collect())
        })
        .await
    }

    pub(super) async fn read_alarm(&self, object: &ObjectKey) -> Result<Option<u64>> {
        self.bounded(async {
            let c = self.reader().await?;
            let (ns, id) = (object.namespace as i64, object.id.as_bytes().as_slice());
            let row = c.client.query_opt(&c.alarm, &[&ns, &id]).await?;
            Ok(row
                .and_then(|r| r.get::<_, Option<i64>>(0))
                .map(|a| a as u64))
        })
        .await
    }

    /// The object's row and, when it is small, all its entries: two statements, pipelined.
    pub(super) async fn read_meta(&self, object: &ObjectKey) -> Result<ObjectMeta> {
        self.bounded(async {
            let c = self.reader().await?;
            let (ns, id) = (object.namespace as i64, object.id.as_bytes().as_slice());
            let meta_params: [&(dyn ToSql + Sync); 2] = [&ns, &id];
            let preload_params: [&(dyn ToSql + Sync); 3] = [&ns, &id, &PRELOAD_MAX_BYTES];
            let (meta, entries) = futures::try_join!(
                c.client.query_opt(&c.meta, &meta_params),
                c.client.query(&c.preload, &preload_params),
            )?;
            let (size, name, alarm) = match &meta {
                Some(r) => (
                    r.get::<_, i64>(0),
                    r.get::<_, Option<String>>(1),
                    r.get::<_, Option<i64>>(2),
                ),
                None => (0, None, None),
            };
            let preload = if size <= PRELOAD_MAX_BYTES {
                Some(Preload {
                    entries: entries.into_iter().map(entry).collect::<Result<_>>()?,
                    alarm: alarm.map(|a| a as u64),
                })
            } else {
                None
            };
            Ok(ObjectMeta {
                size: size as u64,
                name,
                preload,
            })
        })
        .await
    }

    /// Objects of `namespace` with a row, in ID order after `after`.
    pub(super) async fn read_objects(
        &self,
        namespace: u64,
        after: Option<ObjectId>,
        limit: usize,
    ) -> Result<Vec<(ObjectId, Option<String>)>> {
        self.bounded(async {
            let c = self.reader().await?;
            let after: &[u8] = after.as_ref().map_or(&[], |id| id.as_bytes().as_slice());
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = c
                .client
                .query(
                    "SELECT id, name FROM dohost.objects WHERE ns = $1 AND id > $2 \
                     ORDER BY id LIMIT $3",
                    &[&(namespace as i64), &after, &limit],
                )
                .await?;
            rows.into_iter()
                .map(|r| {
                    let id: &[u8] = r.get(0);
                    let id: [u8; crate::id::ID_BYTES] = id
                        .try_into()
                        .context("an object row has a malformed ID: the database is corrupt")?;
                    Ok((ObjectId::from_bytes(id), r.get(1)))
                })
                .collect()
        })
        .await
    }

    pub(super) fn read_all_alarms(&self) -> Result<Vec<StoredAlarm>> {
        let rows = self.block_on(self.bounded(async {
            let c = self.reader().await?;
            let rows = c
                .client
                .query(
                    "SELECT ns, id, alarm, retry_count, retry_at FROM dohost.objects \
                     WHERE alarm IS NOT NULL",
                    &[],
                )
                .await?;
            anyhow::Ok(rows)
        }))?;
        rows.into_iter()
            .map(|r| {
                let id: &[u8] = r.get(1);
                let id: [u8; crate::id::ID_BYTES] = id
                    .try_into()
                    .context("an object row has a malformed ID: the database is corrupt")?;
                let retry = match (r.get::<_, Option<i32>>(3), r.get::<_, Option<i64>>(4)) {
                    (Some(count), Some(at)) => Some(crate::backend::AlarmRetry {
                        count: count as u32,
                        at: at as u64,
                    }),
                    _ => None,
                };
                Ok(StoredAlarm {
                    object: ObjectKey {
                        namespace: r.get::<_, i64>(0) as u64,
                        id: crate::id::ObjectId::from_bytes(id),
                    },
                    at: r.get::<_, i64>(2) as u64,
                    retry,
                })
            })
            .collect()
    }
}

/// A `(key, value)` row as an entry (keys are UTF-8, as written).
fn entry(r: tokio_postgres::Row) -> Result<(String, Bytes)> {
    let key = String::from_utf8(r.get::<_, Vec<u8>>(0))
        .context("a stored key is not UTF-8: the database is corrupt")?;
    Ok((key, Bytes::from(r.get::<_, Vec<u8>>(1))))
}

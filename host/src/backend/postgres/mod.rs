//! The PostgreSQL backend (`--storage postgres://…`): the same semantics as redb, a commit
//! batch as one transaction, and fenced commits so that two processes on one database can
//! never both write. Rooms: `conn` (connections), `schema` (tables and statements),
//! `commit` (the write path), `classes` (classes and migrations).

mod classes;
mod commit;
mod conn;
mod schema;

pub use conn::redact;

use crate::backend::{
    Failure, MigrationReport, ObjectMeta, Preload, ReadFuture, Storage, StoredAlarm, Write,
};
use crate::config::migration::Migration;
use crate::id::{Namespace, ObjectKey};
use anyhow::{Context, Result};
use bytes::Bytes;
use conn::{Conn, Readers};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use tokio_postgres::types::ToSql;

/// Objects storing at most this many bytes are read whole at activation, in one query, and
/// then answered from memory.
pub const PRELOAD_MAX_BYTES: i64 = 64 << 10;

/// The PostgreSQL backend's handle.
pub struct PostgresStorage {
    /// The URL as shown in messages (password redacted).
    url: String,
    config: tokio_postgres::Config,
    /// Drives every connection: the committer thread and start-up block on it, and reads
    /// from the host's runtime await its connections.
    rt: Option<tokio::runtime::Runtime>,
    readers: Readers,
    /// The committer's connection (only the committer thread commits).
    writer: Mutex<Option<Conn>>,
    /// This node's epoch of each shard, taken at start.
    epochs: Vec<i64>,
}

impl PostgresStorage {
    /// Connects, creates or checks the schema, and takes every shard for `owner` (which
    /// fences off any process that held them); without an owner no shard is taken and
    /// commits are refused. Errors name the URL, password redacted.
    pub fn open(url: &str, owner: Option<&str>) -> Result<PostgresStorage> {
        let shown = redact(url);
        let config: tokio_postgres::Config = url
            .parse()
            .with_context(|| format!("the storage URL {shown} is not a PostgreSQL URL"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dohost-postgres")
            .enable_all()
            .build()
            .context("cannot start the database runtime")?;
        let mut db = PostgresStorage {
            url: shown.clone(),
            config,
            rt: Some(rt),
            readers: Readers::new(),
            writer: Mutex::new(None),
            epochs: Vec::new(),
        };
        let (writer, epochs) = db
            .block_on(async {
                let mut client = conn::connect_raw(db.config.clone()).await?;
                let shards = schema::prepare_schema(&mut client).await?;
                let epochs = match owner {
                    Some(owner) => schema::take_shards(&client, shards, owner).await?,
                    None => Vec::new(),
                };
                anyhow::Ok((conn::prepare(client).await?, epochs))
            })
            .with_context(|| format!("cannot use the database {shown}"))?;
        *db.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
        db.epochs = epochs;
        if owner.is_some() {
            tracing::info!(database = %shown, shards = db.epochs.len(), "storage: PostgreSQL, every shard taken");
        }
        Ok(db)
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt
            .as_ref()
            .expect("the runtime lives as long as the storage")
    }

    /// Runs `fut` to completion on the backend's runtime, from a thread that may or may
    /// not be inside another runtime (start-up is; the committer thread is not).
    fn block_on<F: Future + Send>(&self, fut: F) -> F::Output
    where
        F::Output: Send,
    {
        self.outside_runtime(|| self.rt().block_on(fut))
    }

    /// Runs `f` on a thread outside any async runtime, where it may block on the backend's.
    fn outside_runtime<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(f).join().expect("a database call panicked"))
        } else {
            f()
        }
    }

    /// The committer's connection, reconnected if it was lost.
    fn writer(&self) -> Result<Conn> {
        let kept = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        match kept {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => self
                .block_on(conn::connect(self.config.clone()))
                .with_context(|| format!("cannot reach the database {}", self.url)),
        }
    }

    fn put_writer(&self, conn: Conn) {
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
    }

    /// The shard an object belongs to (its ID's first bytes; IDs are uniform hashes).
    fn shard_of(&self, object: &ObjectKey) -> i32 {
        let b = object.id.as_bytes();
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (n % self.epochs.len() as u32) as i32
    }

    fn epoch(&self, shard: i32) -> i64 {
        self.epochs[shard as usize]
    }

    async fn reader(&self) -> Result<std::sync::Arc<Conn>> {
        self.readers
            .get(&self.config, self.rt().handle(), &self.url)
            .await
    }

    async fn read_value(&self, object: &ObjectKey, key: &str) -> Result<Option<Bytes>> {
        let c = self.reader().await?;
        let (ns, id) = (object.namespace as i64, object.id.as_bytes().as_slice());
        let row = c
            .client
            .query_opt(&c.get, &[&ns, &id, &key.as_bytes()])
            .await?;
        Ok(row.map(|r| Bytes::from(r.get::<_, Vec<u8>>(0))))
    }

    async fn read_range(
        &self,
        object: &ObjectKey,
        lower: &[u8],
        upper: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>> {
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
    }

    async fn read_alarm(&self, object: &ObjectKey) -> Result<Option<u64>> {
        let c = self.reader().await?;
        let (ns, id) = (object.namespace as i64, object.id.as_bytes().as_slice());
        let row = c.client.query_opt(&c.alarm, &[&ns, &id]).await?;
        Ok(row
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(|a| a as u64))
    }

    /// The object's row and, when it is small, all its entries: two statements, pipelined.
    async fn read_meta(&self, object: &ObjectKey) -> Result<ObjectMeta> {
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
    }

    fn read_all_alarms(&self) -> Result<Vec<StoredAlarm>> {
        let rows = self.block_on(async {
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
        })?;
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

fn entry(r: tokio_postgres::Row) -> Result<(String, Bytes)> {
    let key = String::from_utf8(r.get::<_, Vec<u8>>(0))
        .context("a stored key is not UTF-8: the database is corrupt")?;
    Ok((key, Bytes::from(r.get::<_, Vec<u8>>(1))))
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        // Dropped from async code at shutdown: a runtime may not block there.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Storage for PostgresStorage {
    fn get<'a>(&'a self, object: &'a ObjectKey, key: &'a str) -> ReadFuture<'a, Option<Bytes>> {
        Box::pin(self.read_value(object, key))
    }

    fn scan<'a>(
        &'a self,
        object: &'a ObjectKey,
        lower: &'a [u8],
        upper: Option<&'a [u8]>,
        reverse: bool,
        limit: usize,
    ) -> ReadFuture<'a, Vec<(String, Bytes)>> {
        Box::pin(self.read_range(object, lower, upper, reverse, limit))
    }

    fn get_alarm<'a>(&'a self, object: &'a ObjectKey) -> ReadFuture<'a, Option<u64>> {
        Box::pin(self.read_alarm(object))
    }

    fn load<'a>(&'a self, object: &'a ObjectKey) -> ReadFuture<'a, ObjectMeta> {
        Box::pin(self.read_meta(object))
    }

    fn all_alarms(&self) -> Result<Vec<StoredAlarm>> {
        self.read_all_alarms()
    }

    fn ensure_class(&self, script: &str, class: &str) -> Result<Namespace> {
        classes::ensure_class(self, script, class)
    }

    fn class(&self, script: &str, class: &str) -> Result<Option<Namespace>> {
        classes::class(self, script, class)
    }

    fn migrate(
        &self,
        script: &str,
        migrations: &[Migration],
        bound: &[(String, String)],
        dry_run: bool,
    ) -> Result<MigrationReport> {
        classes::migrate(self, script, migrations, bound, dry_run)
    }

    fn commit_batch(&self, batch: &[Write<'_>]) -> Result<HashMap<ObjectKey, u64>, Failure> {
        if self.epochs.is_empty() {
            return Err(Failure {
                kind: crate::backend::FailureKind::Other,
                error: anyhow::anyhow!("this storage was opened without taking its shards"),
            });
        }
        self.commit(batch)
    }

    fn recover(&self) -> Result<()> {
        let conn = self.writer()?;
        self.put_writer(conn);
        Ok(())
    }
}

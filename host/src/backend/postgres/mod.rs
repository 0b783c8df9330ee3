//! The PostgreSQL backend (`--storage postgres://…`): the same semantics as redb, a commit
//! batch as one transaction, and fenced commits so that two processes on one database can
//! never both write. Rooms: `conn` (connections), `schema` (tables and statements),
//! `read` (object reads and preloads), `commit` (the write path) and `batch` (its arrays),
//! `classes` (classes and migrations), `fence` (the shards this node holds).

mod batch;
mod classes;
mod commit;
mod conn;
mod fence;
mod read;
mod schema;

pub use conn::redact;

use crate::backend::{
    Failure, MigrationReport, ObjectMeta, ReadFuture, Role, Storage, StoredAlarm, Write,
};
use crate::config::migration::Migration;
use crate::id::{Namespace, ObjectId, ObjectKey};
use anyhow::{Context, Result};
use bytes::Bytes;
use conn::{Conn, Readers};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

/// Objects storing at most this many bytes are read whole at activation, in one query, and
/// then answered from memory.
pub const PRELOAD_MAX_BYTES: i64 = 64 << 10;

/// The PostgreSQL backend's handle.
pub struct PostgresStorage {
    /// The URL as shown in messages (password redacted).
    url: String,
    config: tokio_postgres::Config,
    /// How long one exchange with the database may take (`storage_timeout_ms`).
    timeout: Duration,
    /// Drives every connection: the committer thread and start-up block on it, and reads
    /// from the host's runtime await its connections.
    rt: Option<tokio::runtime::Runtime>,
    readers: Readers,
    /// The committer's connection (only the committer thread commits).
    writer: Mutex<Option<Conn>>,
    /// The shards this node holds, with their epochs (see `fence`).
    held: fence::Held,
}

impl PostgresStorage {
    /// Connects, creates or checks the schema, and takes shards as `role` says; each
    /// exchange with the database is bounded by `timeout` (`storage_timeout_ms`). Errors
    /// name the URL, password redacted.
    pub fn open(url: &str, role: Role<'_>, timeout: Duration) -> Result<PostgresStorage> {
        let shown = redact(url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .with_context(|| format!("the storage URL {shown} is not a PostgreSQL URL"))?;
        conn::bound(&mut config, timeout);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dohost-postgres")
            .enable_all()
            .build()
            .context("cannot start the database runtime")?;
        let mut db = PostgresStorage {
            url: shown.clone(),
            config,
            timeout,
            rt: Some(rt),
            readers: Readers::new(),
            writer: Mutex::new(None),
            held: fence::Held::default(),
        };
        let (writer, shards, epochs) = db
            .block_on(async {
                let mut client = conn::connect_raw(db.config.clone()).await?;
                let shards = schema::prepare_schema(&mut client).await?;
                let epochs = match role {
                    Role::Single(owner) => Some(schema::take_shards(&client, shards, owner).await?),
                    Role::Cluster(_) | Role::Tool => None,
                };
                anyhow::Ok((conn::prepare(client, timeout).await?, shards, epochs))
            })
            .with_context(|| format!("cannot use the database {shown}"))?;
        *db.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
        db.held = fence::Held::new(shards, epochs, matches!(role, Role::Cluster(_)));
        if let Role::Single(_) = role {
            tracing::info!(database = %shown, shards, "storage: PostgreSQL, every shard taken");
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
                .block_on(conn::bounded(
                    self.timeout,
                    conn::connect(self.config.clone(), self.timeout),
                ))
                .with_context(|| format!("cannot reach the database {}", self.url)),
        }
    }

    fn put_writer(&self, conn: Conn) {
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn);
    }
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

    fn sql_pages<'a>(&'a self, object: &'a ObjectKey) -> ReadFuture<'a, Vec<(u32, Bytes)>> {
        Box::pin(self.read_sql_pages(object))
    }

    fn get_alarm<'a>(&'a self, object: &'a ObjectKey) -> ReadFuture<'a, Option<u64>> {
        Box::pin(self.read_alarm(object))
    }

    fn list_objects<'a>(
        &'a self,
        namespace: u64,
        after: Option<ObjectId>,
        limit: usize,
    ) -> ReadFuture<'a, Vec<(ObjectId, Option<String>)>> {
        Box::pin(self.read_objects(namespace, after, limit))
    }

    fn load<'a>(&'a self, object: &'a ObjectKey) -> ReadFuture<'a, ObjectMeta> {
        Box::pin(self.read_meta(object))
    }

    fn probe(&self) -> ReadFuture<'_, ()> {
        Box::pin(conn::bounded(self.timeout, async {
            let c = self.reader().await?;
            c.client.simple_query("SELECT 1").await?;
            Ok(())
        }))
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

    fn stored_bytes(&self) -> Result<HashMap<u64, u64>> {
        self.block_on(conn::bounded(self.timeout, async {
            let c = self.reader().await?;
            let rows = c
                .client
                .query(
                    "SELECT ns, sum(size)::bigint FROM dohost.objects GROUP BY ns",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
                .collect())
        }))
    }

    fn commit_batch(&self, batch: &[Write<'_>]) -> Result<HashMap<ObjectKey, u64>, Failure> {
        self.commit(batch)
    }

    fn shard_count(&self) -> u32 {
        self.held.count()
    }

    fn take_shards(&self, claims: &[(u32, i64)], owner: &str) -> Result<Vec<u32>> {
        PostgresStorage::take_shards(self, claims, owner)
    }

    fn drop_shard(&self, shard: u32) {
        PostgresStorage::drop_shard(self, shard)
    }

    fn recover(&self) -> Result<()> {
        let conn = self.writer()?;
        self.put_writer(conn);
        Ok(())
    }
}

//! Connections to PostgreSQL: the URL (shown with its password redacted), one connection
//! with every statement prepared, and the small set of reader connections that events share.

use super::schema::SCHEMA;
use crate::backend::Unreachable;
use anyhow::{Context, Result};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio_postgres::{Client, NoTls, Statement};

/// Reader connections shared by every object's reads. tokio-postgres pipelines the
/// queries of concurrent callers on one connection, so a few are enough.
pub const READERS: usize = 4;

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _password)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
        return url.to_string();
    }
    // The key=value form: hide the value of `password`.
    url.split_whitespace()
        .map(|part| match part.split_once('=') {
            Some(("password", _)) => "password=***".to_string(),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bounds every connection of `config` by `limit` (`storage_timeout_ms`), so that a
/// database behind a black hole fails in bounded time instead of holding requests as long
/// as the hole lasts: connecting, unacknowledged data (`tcp_user_timeout`), and TCP
/// keepalives that find a dead peer of an idle connection. A URL's own `connect_timeout`
/// wins.
pub fn bound(config: &mut tokio_postgres::Config, limit: Duration) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(limit);
    }
    let probe = (limit / 3).max(Duration::from_secs(1));
    config
        .tcp_user_timeout(limit)
        .keepalives(true)
        .keepalives_idle(limit.max(Duration::from_secs(1)))
        .keepalives_interval(probe)
        .keepalives_retries(3);
}

/// Runs one exchange with the database, bounded by `limit`: a failure to reach it (a lost
/// or refused connection, no answer in time, a server shutting down) is marked
/// `Unreachable`, so that callers answer 503 (retry later), not 500.
pub async fn bounded<T>(limit: Duration, exchange: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(limit, exchange).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if transient(&e) => Err(e.context(Unreachable)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(anyhow::anyhow!(
            "the database did not answer within {limit:?} (storage_timeout_ms)"
        )
        .context(Unreachable)),
    }
}

/// Whether `e` says the database could not be reached, rather than that it refused a
/// statement or holds bad data: a driver error without SQLSTATE (a lost, refused or
/// timed-out connection), or one of the classes of a server that cannot serve now: 08
/// (connection exception), 53 (insufficient resources), 57 (statement timeout, shutdown).
pub fn transient(e: &anyhow::Error) -> bool {
    match e
        .chain()
        .find_map(|c| c.downcast_ref::<tokio_postgres::Error>())
    {
        Some(pg) => pg.code().is_none_or(|c| {
            ["08", "53", "57"]
                .iter()
                .any(|class| c.code().starts_with(class))
        }),
        None => false,
    }
}

/// One connection and its prepared statements.
pub struct Conn {
    pub client: Client,
    pub get: Statement,
    pub scan: Statement,
    pub scan_upper: Statement,
    pub scan_rev: Statement,
    pub scan_rev_upper: Statement,
    pub alarm: Statement,
    pub meta: Statement,
    pub preload: Statement,
    pub fence: Statement,
    pub clear: Statement,
    pub delete_keys: Statement,
    pub objects: Statement,
    pub insert: Statement,
    pub upsert_objects: Statement,
    pub sql_pages: Statement,
    pub clear_pages: Statement,
    pub trim_pages: Statement,
    pub upsert_pages: Statement,
}

/// Opens a connection and prepares every statement, pipelined. Call it on the backend's own
/// runtime: the socket and the connection's task belong to the runtime it runs on.
pub async fn connect(config: tokio_postgres::Config, limit: Duration) -> Result<Conn> {
    prepare(connect_raw(config).await?, limit).await
}

/// A bare connection (no statement prepared: the schema may not exist yet).
pub async fn connect_raw(config: tokio_postgres::Config) -> Result<Client> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "a database connection ended");
        }
    });
    // Commits are acknowledged to clients: each must be on disk before COMMIT returns,
    // whatever the database's default.
    client.batch_execute("SET synchronous_commit = on").await?;
    Ok(client)
}

/// Prepares every statement on `client`, pipelined. The server ends a statement of this
/// connection that runs longer than `limit`, and a transaction left idle that long (its
/// client gone behind a partition), so that the locks it holds (the fence rows) are freed
/// for the node that takes over.
pub async fn prepare(client: Client, limit: Duration) -> Result<Conn> {
    let ms = limit.as_millis().max(1);
    client
        .batch_execute(&format!(
            "SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {ms}"
        ))
        .await?;
    let s = &SCHEMA;
    let (get, scan, scan_upper, scan_rev, scan_rev_upper, alarm, meta, preload) = futures::try_join!(
        client.prepare(s.get),
        client.prepare(s.scan),
        client.prepare(s.scan_upper),
        client.prepare(s.scan_rev),
        client.prepare(s.scan_rev_upper),
        client.prepare(s.alarm),
        client.prepare(s.meta),
        client.prepare(s.preload),
    )?;
    let (fence, clear, delete_keys, objects, insert, upsert_objects) = futures::try_join!(
        client.prepare(s.fence),
        client.prepare(s.clear),
        client.prepare(s.delete_keys),
        client.prepare(s.objects),
        client.prepare(s.insert),
        client.prepare(s.upsert_objects),
    )?;
    let (sql_pages, clear_pages, trim_pages, upsert_pages) = futures::try_join!(
        client.prepare(s.sql_pages),
        client.prepare(s.clear_pages),
        client.prepare(s.trim_pages),
        client.prepare(s.upsert_pages),
    )?;
    Ok(Conn {
        client,
        get,
        scan,
        scan_upper,
        scan_rev,
        scan_rev_upper,
        alarm,
        meta,
        preload,
        fence,
        clear,
        delete_keys,
        objects,
        insert,
        upsert_objects,
        sql_pages,
        clear_pages,
        trim_pages,
        upsert_pages,
    })
}

/// The reader connections, reconnected on demand when one was lost.
pub struct Readers {
    slots: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
}

impl Readers {
    pub fn new() -> Self {
        Readers {
            slots: (0..READERS)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A live reader connection (round robin), connecting it first if needed.
    pub async fn get(
        &self,
        config: &tokio_postgres::Config,
        limit: Duration,
        rt: &Handle,
        url: &str,
    ) -> Result<Arc<Conn>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        if let Some(conn) = slot.as_ref()
            && !conn.client.is_closed()
        {
            return Ok(conn.clone());
        }
        *slot = None;
        let conn = rt
            .spawn(connect(config.clone(), limit))
            .await
            .context("the database connection task failed")?
            .with_context(|| format!("cannot reach the database {url}"))?;
        let conn = Arc::new(conn);
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

//! Connections to PostgreSQL: the URL (shown with its password redacted), one connection
//! with every statement prepared, and the small set of reader connections that events share.

use super::schema::SCHEMA;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
}

/// Opens a connection and prepares every statement, pipelined. Call it on the backend's own
/// runtime: the socket and the connection's task belong to the runtime it runs on.
pub async fn connect(config: tokio_postgres::Config) -> Result<Conn> {
    prepare(connect_raw(config).await?).await
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

/// Prepares every statement on `client`, pipelined.
pub async fn prepare(client: Client) -> Result<Conn> {
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
            .spawn(connect(config.clone()))
            .await
            .context("the database connection task failed")?
            .with_context(|| format!("cannot reach the database {url}"))?;
        let conn = Arc::new(conn);
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

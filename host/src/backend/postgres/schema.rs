//! The PostgreSQL schema (in its own `dohost` schema, so it sits beside a user's tables):
//! created and versioned by dohost, and every statement the backend runs.

use anyhow::{Context, Result, bail};
use tokio_postgres::Client;

/// The layout version below; a database written by a newer dohost is refused.
pub const SCHEMA_VERSION: i64 = 1;
/// Shards objects are grouped in for fencing; fixed when the database is created.
pub const DEFAULT_SHARDS: i32 = 256;
/// Serializes schema creation between processes starting at once.
const SCHEMA_LOCK: i64 = 0x646f_686f_7374; // "dohost"

const CREATE: &str = "
CREATE SCHEMA IF NOT EXISTS dohost;
CREATE TABLE IF NOT EXISTS dohost.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS dohost.shard_fence (
    shard integer PRIMARY KEY, epoch bigint NOT NULL, owner text NOT NULL);
CREATE SEQUENCE IF NOT EXISTS dohost.namespaces START 1;
CREATE TABLE IF NOT EXISTS dohost.classes (
    script text NOT NULL, class text NOT NULL, namespace bigint NOT NULL UNIQUE,
    id_key bytea NOT NULL, PRIMARY KEY (script, class));
CREATE TABLE IF NOT EXISTS dohost.migrations (script text PRIMARY KEY, history bytea NOT NULL);
CREATE TABLE IF NOT EXISTS dohost.objects (
    ns bigint NOT NULL, id bytea NOT NULL, size bigint NOT NULL DEFAULT 0, name text,
    alarm bigint, retry_count integer, retry_at bigint, PRIMARY KEY (ns, id));
CREATE INDEX IF NOT EXISTS objects_alarm ON dohost.objects (alarm) WHERE alarm IS NOT NULL;
CREATE TABLE IF NOT EXISTS dohost.kv (
    ns bigint NOT NULL, id bytea NOT NULL, key bytea NOT NULL, value bytea NOT NULL,
    PRIMARY KEY (ns, id, key));
CREATE TABLE IF NOT EXISTS dohost.sql_pages (
    ns bigint NOT NULL, id bytea NOT NULL, pgno integer NOT NULL, data bytea NOT NULL,
    PRIMARY KEY (ns, id, pgno));
";

/// Every statement, prepared on each connection.
pub struct Statements {
    pub get: &'static str,
    pub scan: &'static str,
    pub scan_upper: &'static str,
    pub scan_rev: &'static str,
    pub scan_rev_upper: &'static str,
    pub alarm: &'static str,
    pub meta: &'static str,
    pub preload: &'static str,
    pub fence: &'static str,
    pub clear: &'static str,
    pub delete_keys: &'static str,
    pub objects: &'static str,
    pub insert: &'static str,
    pub upsert_objects: &'static str,
    pub sql_pages: &'static str,
    pub clear_pages: &'static str,
    pub trim_pages: &'static str,
    pub upsert_pages: &'static str,
}

// Keys are bytea, compared byte by byte: `list` order is redb's. A range scan has one
// statement per shape so that both bounds are index conditions.
pub const SCHEMA: Statements = Statements {
    get: "SELECT value FROM dohost.kv WHERE ns = $1 AND id = $2 AND key = $3",
    scan: "SELECT key, value FROM dohost.kv WHERE ns = $1 AND id = $2 AND key >= $3 \
           ORDER BY key LIMIT $4",
    scan_upper: "SELECT key, value FROM dohost.kv WHERE ns = $1 AND id = $2 AND key >= $3 \
                 AND key < $5 ORDER BY key LIMIT $4",
    scan_rev: "SELECT key, value FROM dohost.kv WHERE ns = $1 AND id = $2 AND key >= $3 \
               ORDER BY key DESC LIMIT $4",
    scan_rev_upper: "SELECT key, value FROM dohost.kv WHERE ns = $1 AND id = $2 AND key >= $3 \
                     AND key < $5 ORDER BY key DESC LIMIT $4",
    alarm: "SELECT alarm FROM dohost.objects WHERE ns = $1 AND id = $2",
    meta: "SELECT size, name, alarm FROM dohost.objects WHERE ns = $1 AND id = $2",
    // Empty unless the object is at most $3 bytes (a missing row is an empty object).
    preload: "SELECT key, value FROM dohost.kv WHERE ns = $1 AND id = $2 AND \
              COALESCE((SELECT size FROM dohost.objects WHERE ns = $1 AND id = $2), 0) <= $3 \
              ORDER BY key",
    fence: "SELECT shard, epoch, owner FROM dohost.shard_fence WHERE shard = ANY($1) \
            ORDER BY shard FOR UPDATE",
    clear: "DELETE FROM dohost.kv k USING unnest($1::bigint[], $2::bytea[]) AS c(ns, id) \
            WHERE k.ns = c.ns AND k.id = c.id",
    delete_keys: "DELETE FROM dohost.kv k \
                  USING unnest($1::bigint[], $2::bytea[], $3::bytea[]) AS d(ns, id, key) \
                  WHERE k.ns = d.ns AND k.id = d.id AND k.key = d.key \
                  RETURNING k.ns, k.id, octet_length(k.key) + octet_length(k.value)",
    objects: "SELECT o.ns, o.id, o.size, o.name, o.alarm, o.retry_count, o.retry_at \
              FROM dohost.objects o JOIN unnest($1::bigint[], $2::bytea[]) AS w(ns, id) \
              ON o.ns = w.ns AND o.id = w.id",
    insert: "INSERT INTO dohost.kv (ns, id, key, value) \
             SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[])",
    upsert_objects: "INSERT INTO dohost.objects AS o \
                     (ns, id, size, name, alarm, retry_count, retry_at) \
                     SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::text[], \
                     $5::bigint[], $6::integer[], $7::bigint[]) \
                     ON CONFLICT (ns, id) DO UPDATE SET size = EXCLUDED.size, \
                     name = EXCLUDED.name, alarm = EXCLUDED.alarm, \
                     retry_count = EXCLUDED.retry_count, retry_at = EXCLUDED.retry_at",
    sql_pages: "SELECT pgno, data FROM dohost.sql_pages WHERE ns = $1 AND id = $2 ORDER BY pgno",
    clear_pages: "DELETE FROM dohost.sql_pages p USING unnest($1::bigint[], $2::bytea[]) AS c(ns, id) \
                  WHERE p.ns = c.ns AND p.id = c.id",
    // Pages from an object's new page count on (a truncated database).
    trim_pages: "DELETE FROM dohost.sql_pages p \
                 USING unnest($1::bigint[], $2::bytea[], $3::integer[]) AS t(ns, id, n) \
                 WHERE p.ns = t.ns AND p.id = t.id AND p.pgno >= t.n",
    upsert_pages: "INSERT INTO dohost.sql_pages (ns, id, pgno, data) \
                   SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::integer[], $4::bytea[]) \
                   ON CONFLICT (ns, id, pgno) DO UPDATE SET data = EXCLUDED.data",
};

/// Creates the schema if needed and checks its version; answers the number of shards.
pub async fn prepare_schema(client: &mut Client) -> Result<i32> {
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    txn.batch_execute(CREATE)
        .await
        .context("cannot create dohost's tables")?;
    let rows = txn.query("SELECT key, value FROM dohost.meta", &[]).await?;
    let get = |k: &str| {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == k)
            .map(|r| r.get::<_, String>(1))
    };
    let shards = match (get("schema_version"), get("shards")) {
        (None, _) => {
            txn.execute(
                "INSERT INTO dohost.meta VALUES ('schema_version', $1), ('shards', $2)",
                &[&SCHEMA_VERSION.to_string(), &DEFAULT_SHARDS.to_string()],
            )
            .await?;
            DEFAULT_SHARDS
        }
        (Some(v), shards) => {
            let v: i64 = v
                .parse()
                .context("the database's schema version record is corrupt")?;
            if v > SCHEMA_VERSION {
                bail!(
                    "this database was written by a newer dohost (schema version {v}, this \
                     build knows up to {SCHEMA_VERSION}); upgrade dohost to use it"
                );
            }
            if v < SCHEMA_VERSION {
                bail!(
                    "this database has schema version {v}, which this dohost cannot upgrade \
                     to {SCHEMA_VERSION}"
                );
            }
            shards
                .and_then(|s| s.parse().ok())
                .context("the database's shard count record is missing or corrupt")?
        }
    };
    // Every shard has a fence row from the start: a cluster node raises it when it takes
    // the shard.
    txn.execute(
        "INSERT INTO dohost.shard_fence (shard, epoch, owner) \
         SELECT s, 0, '' FROM generate_series(0, $1 - 1) AS s ON CONFLICT (shard) DO NOTHING",
        &[&shards],
    )
    .await?;
    txn.commit().await?;
    Ok(shards)
}

/// Takes every shard for this node: bumps each shard's epoch, so that commits of any
/// process that held them before are refused from now on. Answers the epochs, by shard.
pub async fn take_shards(client: &Client, shards: i32, owner: &str) -> Result<Vec<i64>> {
    let rows = client
        .query(
            "INSERT INTO dohost.shard_fence (shard, epoch, owner) \
             SELECT s, 1, $2 FROM generate_series(0, $1 - 1) AS s \
             ON CONFLICT (shard) DO UPDATE SET epoch = dohost.shard_fence.epoch + 1, \
             owner = EXCLUDED.owner RETURNING shard, epoch",
            &[&shards, &owner],
        )
        .await
        .context("cannot take the shards")?;
    let mut epochs = vec![0; shards as usize];
    for r in rows {
        let shard: i32 = r.get(0);
        epochs[shard as usize] = r.get(1);
    }
    Ok(epochs)
}

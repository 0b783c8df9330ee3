//! Classes and migrations in PostgreSQL: each class's namespace number and ID key, and the
//! migration history, changed in one transaction (the rules are in `backend::migrate`).

use super::PostgresStorage;
use super::conn::connect_raw;
use crate::backend::MigrationReport;
use crate::backend::migrate::{ClassTxn, migrate as apply};
use crate::config::migration::Migration;
use crate::id::{IdKey, Namespace};
use anyhow::{Context, Result, bail};
use tokio_postgres::Transaction;

/// Serializes class creation and migrations between processes.
const CLASSES_LOCK: i64 = 0x0064_6f68_6f73_7401;

/// A class's record as stored.
fn namespace(row: &tokio_postgres::Row) -> Result<Namespace> {
    let key: &[u8] = row.get(1);
    let key: [u8; 32] = key
        .try_into()
        .context("a class record in the database is corrupt")?;
    Ok(Namespace {
        number: row.get::<_, i64>(0) as u64,
        id_key: IdKey::new(key),
    })
}

/// The class records inside one PostgreSQL transaction, called synchronously from the
/// migration rules: each step blocks on the backend's runtime.
struct PgClasses<'a, 't> {
    rt: &'a tokio::runtime::Runtime,
    txn: &'a Transaction<'t>,
}

impl ClassTxn for PgClasses<'_, '_> {
    fn class(&mut self, script: &str, class: &str) -> Result<Option<Namespace>> {
        let row = self.rt.block_on(self.txn.query_opt(
            "SELECT namespace, id_key FROM dohost.classes WHERE script = $1 AND class = $2",
            &[&script, &class],
        ))?;
        row.as_ref().map(namespace).transpose()
    }

    fn create_class(&mut self, script: &str, class: &str) -> Result<Namespace> {
        let id_key = IdKey::random()?;
        let row = self.rt.block_on(self.txn.query_one(
            "INSERT INTO dohost.classes (script, class, namespace, id_key) \
             VALUES ($1, $2, nextval('dohost.namespaces'), $3) RETURNING namespace, id_key",
            &[&script, &class, &id_key.bytes().as_slice()],
        ))?;
        namespace(&row)
    }

    fn move_class(&mut self, from: (&str, &str), to: (&str, &str)) -> Result<()> {
        let n = self.rt.block_on(self.txn.execute(
            "UPDATE dohost.classes SET script = $3, class = $4 WHERE script = $1 AND class = $2",
            &[&from.0, &from.1, &to.0, &to.1],
        ))?;
        if n != 1 {
            bail!("class to move does not exist");
        }
        Ok(())
    }

    fn delete_class(&mut self, script: &str, class: &str) -> Result<()> {
        let ns = self
            .class(script, class)?
            .context("class to delete does not exist")?
            .number as i64;
        self.rt.block_on(async {
            self.txn
                .execute("DELETE FROM dohost.kv WHERE ns = $1", &[&ns])
                .await?;
            self.txn
                .execute("DELETE FROM dohost.sql_pages WHERE ns = $1", &[&ns])
                .await?;
            self.txn
                .execute("DELETE FROM dohost.objects WHERE ns = $1", &[&ns])
                .await?;
            self.txn
                .execute(
                    "DELETE FROM dohost.classes WHERE script = $1 AND class = $2",
                    &[&script, &class],
                )
                .await
        })?;
        Ok(())
    }

    fn history(&mut self, script: &str) -> Result<Option<Vec<u8>>> {
        let row = self.rt.block_on(self.txn.query_opt(
            "SELECT history FROM dohost.migrations WHERE script = $1",
            &[&script],
        ))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_history(&mut self, script: &str, json: &[u8]) -> Result<()> {
        self.rt.block_on(self.txn.execute(
            "INSERT INTO dohost.migrations (script, history) VALUES ($1, $2) \
             ON CONFLICT (script) DO UPDATE SET history = EXCLUDED.history",
            &[&script, &json],
        ))?;
        Ok(())
    }
}

/// Runs `f` on the class records in one transaction on a connection of its own (classes
/// change only at start), committed when `commit` and `f` succeed.
fn in_transaction<T: Send>(
    db: &PostgresStorage,
    commit: bool,
    f: impl FnOnce(&mut PgClasses<'_, '_>) -> Result<T> + Send,
) -> Result<T> {
    let rt = db.rt();
    db.outside_runtime(|| {
        let mut client = rt
            .block_on(connect_raw(db.config.clone()))
            .with_context(|| format!("cannot reach the database {}", db.url))?;
        let txn = rt.block_on(client.transaction())?;
        rt.block_on(txn.execute("SELECT pg_advisory_xact_lock($1)", &[&CLASSES_LOCK]))?;
        let out = f(&mut PgClasses { rt, txn: &txn })?;
        if commit {
            rt.block_on(txn.commit())?;
        } else {
            rt.block_on(txn.rollback())?;
        }
        Ok(out)
    })
}

pub(super) fn class(db: &PostgresStorage, script: &str, class: &str) -> Result<Option<Namespace>> {
    in_transaction(db, false, |t| t.class(script, class))
}

pub(super) fn ensure_class(db: &PostgresStorage, script: &str, class: &str) -> Result<Namespace> {
    in_transaction(db, true, |t| match t.class(script, class)? {
        Some(ns) => Ok(ns),
        None => t.create_class(script, class),
    })
}

pub(super) fn migrate(
    db: &PostgresStorage,
    script: &str,
    migrations: &[Migration],
    bound: &[(String, String)],
    dry_run: bool,
) -> Result<MigrationReport> {
    in_transaction(db, !dry_run, |t| apply(t, script, migrations, bound))
}

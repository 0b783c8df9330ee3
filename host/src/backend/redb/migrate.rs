//! The redb side of class migrations: class records and the migration history inside one
//! write transaction (the rules are in `backend::migrate`).

use super::classes::{class_in, class_key, create_class, delete_class, move_class};
use super::handle::RedbStorage;
use super::tables::MIGRATIONS;
use crate::backend::MigrationReport;
use crate::backend::migrate::{ClassTxn, migrate as apply};
use crate::config::migration::Migration;
use crate::id::Namespace;
use anyhow::Result;
use redb::ReadableTable;

struct RedbClasses<'a>(&'a redb::WriteTransaction);

impl ClassTxn for RedbClasses<'_> {
    fn class(&mut self, script: &str, class: &str) -> Result<Option<Namespace>> {
        class_in(self.0, script, class)
    }

    fn create_class(&mut self, script: &str, class: &str) -> Result<Namespace> {
        create_class(self.0, script, class)
    }

    fn move_class(&mut self, from: (&str, &str), to: (&str, &str)) -> Result<()> {
        move_class(self.0, &class_key(from.0, from.1), &class_key(to.0, to.1))
    }

    fn delete_class(&mut self, script: &str, class: &str) -> Result<()> {
        delete_class(self.0, &class_key(script, class))
    }

    fn history(&mut self, script: &str) -> Result<Option<Vec<u8>>> {
        let table = self.0.open_table(MIGRATIONS)?;
        let found = table.get(script)?;
        Ok(found.map(|v| v.value().to_vec()))
    }

    fn set_history(&mut self, script: &str, json: &[u8]) -> Result<()> {
        self.0.open_table(MIGRATIONS)?.insert(script, json)?;
        Ok(())
    }
}

/// Applies `script`'s new migrations in one redb transaction (aborted for a dry run).
pub fn migrate(
    db: &RedbStorage,
    script: &str,
    migrations: &[Migration],
    bound: &[(String, String)],
    dry_run: bool,
) -> Result<MigrationReport> {
    let txn = db.begin_write()?;
    let report = apply(&mut RedbClasses(&txn), script, migrations, bound)?;
    if dry_run {
        txn.abort()?;
    } else {
        txn.commit()?;
    }
    Ok(report)
}

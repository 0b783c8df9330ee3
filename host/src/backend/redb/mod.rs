//! The redb backend (the embedded default): one database file under the data directory, its
//! tables, reads, group commits, classes and migrations.

mod classes;
mod commit;
mod handle;
mod migrate;
mod read;
pub mod tables;

pub use handle::RedbStorage;

use crate::backend::{Failure, MigrationReport, ObjectMeta, Storage, StoredAlarm, Write};
use crate::config::migration::Migration;
use crate::id::{Namespace, ObjectKey};
use anyhow::Result;
use bytes::Bytes;
use std::collections::HashMap;

impl Storage for RedbStorage {
    fn get(&self, object: &ObjectKey, key: &str) -> Result<Option<Bytes>> {
        self.read_value(object, key)
    }

    fn scan(
        &self,
        object: &ObjectKey,
        lower: &[u8],
        upper: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(String, Bytes) -> bool,
    ) -> Result<()> {
        self.read_range(object, lower, upper, reverse, visit)
    }

    fn get_alarm(&self, object: &ObjectKey) -> Result<Option<u64>> {
        self.read_alarm(object)
    }

    fn object_meta(&self, object: &ObjectKey) -> Result<ObjectMeta> {
        self.read_meta(object)
    }

    fn all_alarms(&self) -> Result<Vec<StoredAlarm>> {
        self.read_all_alarms()
    }

    fn ensure_class(&self, script: &str, class: &str) -> Result<Namespace> {
        self.ensure_class_record(script, class)
    }

    fn class(&self, script: &str, class: &str) -> Result<Option<Namespace>> {
        self.class_record(script, class)
    }

    fn migrate(
        &self,
        script: &str,
        migrations: &[Migration],
        bound: &[(String, String)],
        dry_run: bool,
    ) -> Result<MigrationReport> {
        migrate::migrate(self, script, migrations, bound, dry_run)
    }

    fn commit_batch(&self, batch: &[Write<'_>]) -> Result<HashMap<ObjectKey, u64>, Failure> {
        commit::apply(self, batch).map_err(commit::classify)
    }

    fn recover(&self) -> Result<()> {
        self.reopen()
    }
}

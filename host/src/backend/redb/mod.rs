//! The redb backend (the embedded default): one database file under the data directory, its
//! tables, reads, group commits, classes and migrations.

mod backup;
mod classes;
mod commit;
mod handle;
mod migrate;
mod read;
pub mod tables;

pub use backup::restore;
pub use handle::RedbStorage;

use crate::backend::{
    Failure, MigrationReport, ObjectMeta, ReadFuture, Storage, StoredAlarm, Write,
};
use crate::config::migration::Migration;
use crate::id::{Namespace, ObjectId, ObjectKey};
use anyhow::Result;
use bytes::Bytes;
use std::collections::HashMap;

// Reads answer at once from redb's cache or the page cache: the futures are ready.
impl Storage for RedbStorage {
    fn get<'a>(&'a self, object: &'a ObjectKey, key: &'a str) -> ReadFuture<'a, Option<Bytes>> {
        Box::pin(std::future::ready(self.read_value(object, key)))
    }

    fn scan<'a>(
        &'a self,
        object: &'a ObjectKey,
        lower: &'a [u8],
        upper: Option<&'a [u8]>,
        reverse: bool,
        limit: usize,
    ) -> ReadFuture<'a, Vec<(String, Bytes)>> {
        Box::pin(std::future::ready(
            self.read_range(object, lower, upper, reverse, limit),
        ))
    }

    fn sql_pages<'a>(&'a self, object: &'a ObjectKey) -> ReadFuture<'a, Vec<(u32, Bytes)>> {
        Box::pin(std::future::ready(self.read_sql_pages(object)))
    }

    fn get_alarm<'a>(&'a self, object: &'a ObjectKey) -> ReadFuture<'a, Option<u64>> {
        Box::pin(std::future::ready(self.read_alarm(object)))
    }

    fn stored_bytes(&self) -> Result<HashMap<u64, u64>> {
        self.read_stored_bytes()
    }

    fn backup(&self) -> Result<std::fs::File> {
        self.write_backup()
    }

    fn list_objects<'a>(
        &'a self,
        namespace: u64,
        after: Option<ObjectId>,
        limit: usize,
    ) -> ReadFuture<'a, Vec<(ObjectId, Option<String>)>> {
        Box::pin(std::future::ready(
            self.read_objects(namespace, after, limit),
        ))
    }

    fn load<'a>(&'a self, object: &'a ObjectKey) -> ReadFuture<'a, ObjectMeta> {
        Box::pin(std::future::ready(self.read_meta(object)))
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

//! The redb tables, and how an object's address and records are laid out in them.

use crate::backend::AlarmRetry;
use crate::id::{KEY_BYTES, ObjectKey};
use anyhow::{Context, Result};
use redb::TableDefinition;

/// dohost's own metadata: `schema_version` and the like.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// "script/class" → namespace record (8-byte namespace number, 32-byte ID key).
pub const CLASSES: TableDefinition<&str, &[u8]> = TableDefinition::new("classes");
/// Every object's data: namespace (8) ‖ object ID (32) ‖ user key (UTF-8) → value.
pub const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Every object's SQL database: object prefix (40) ‖ page index (4, big-endian) → the page.
pub const SQL_PAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sql_pages");
/// Object prefix (40 bytes) → bytes stored by that object (keys plus values).
pub const OBJECT_SIZES: TableDefinition<&[u8], u64> = TableDefinition::new("object_sizes");

/// Script name → JSON list of the migrations applied, in order (tag and digest).
pub const MIGRATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("migrations");
/// Object prefix → the time of its alarm (milliseconds since the Unix epoch).
pub const ALARMS: TableDefinition<&[u8], u64> = TableDefinition::new("alarms");
/// Object prefix → a failing alarm's retry: retry count (4 bytes) ‖ next attempt (8 bytes),
/// big-endian. Present only while the alarm is being retried.
pub const ALARM_RETRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarm_retries");
/// Object prefix → the name the object's ID was derived from, stored the first time the
/// object is reached by name, so it keeps its name however it is woken later.
pub const NAMES: TableDefinition<&[u8], &str> = TableDefinition::new("names");

/// The layout version of the tables above; a database written by a newer dohost is refused.
pub const SCHEMA_VERSION: u32 = 1;
pub const NEXT_NAMESPACE: &str = "next_namespace";
pub const SCHEMA_KEY: &str = "schema_version";

/// Where one object's keys live in `KV`: its address as 40 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ObjectPrefix(pub [u8; KEY_BYTES]);

impl ObjectPrefix {
    pub fn of(object: &ObjectKey) -> Self {
        ObjectPrefix(object.to_bytes())
    }

    pub fn object(&self) -> ObjectKey {
        ObjectKey::from_bytes(&self.0)
    }

    pub fn key(&self, user_key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(KEY_BYTES + user_key.len());
        k.extend_from_slice(&self.0);
        k.extend_from_slice(user_key.as_bytes());
        k
    }

    /// Where page `index` of this object's SQL database lives in `SQL_PAGES`.
    pub fn page(&self, index: u32) -> [u8; KEY_BYTES + 4] {
        let mut k = [0; KEY_BYTES + 4];
        k[..KEY_BYTES].copy_from_slice(&self.0);
        k[KEY_BYTES..].copy_from_slice(&index.to_be_bytes());
        k
    }

    /// A strict upper bound for this object's keys: user keys are UTF-8, which never holds
    /// the byte 0xFF.
    pub fn end(&self) -> Vec<u8> {
        let mut k = self.0.to_vec();
        k.push(0xFF);
        k
    }
}

/// `ALARM_RETRIES` value: retry count (4 bytes) ‖ next attempt (8 bytes), big-endian.
pub fn encode_retry(r: &AlarmRetry) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&r.count.to_be_bytes());
    b[4..].copy_from_slice(&r.at.to_be_bytes());
    b
}

pub fn decode_retry(b: &[u8]) -> Result<AlarmRetry> {
    let b: &[u8; 12] = b
        .try_into()
        .context("an alarm retry record is malformed: the database is corrupt")?;
    Ok(AlarmRetry {
        count: u32::from_be_bytes(b[..4].try_into().expect("4 bytes")),
        at: u64::from_be_bytes(b[4..].try_into().expect("8 bytes")),
    })
}

//! Class migrations as the config file spells them (the seed's `migrations` entries).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One entry of `migrations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    pub tag: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_classes: Vec<String>,
    /// Cloudflare's SQLite-backed classes; dohost has one storage backend, so these are
    /// new classes like any other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_sqlite_classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renamed_classes: Vec<Rename>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_classes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transferred_classes: Vec<Transfer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub from: String,
    pub from_script: String,
    pub to: String,
}

impl Migration {
    /// A short hash of the migration as written: an applied one must not change.
    pub fn digest(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a migration always serializes");
        hex::encode(&Sha256::digest(canonical)[..16])
    }
}

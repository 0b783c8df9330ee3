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
    /// Cloudflare's SQLite-backed classes: new classes whose objects have a SQL database
    /// (classes in `new_classes` have key-value storage only, as on the platform).
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

/// The classes that have no SQL database: declared with `new_classes` (and renamed since),
/// not deleted. Every other class, and every class started without a configuration, has one.
pub fn key_value_classes(migrations: &[Migration]) -> std::collections::HashSet<String> {
    let mut kv = std::collections::HashSet::new();
    for m in migrations {
        kv.extend(m.new_classes.iter().cloned());
        for r in &m.renamed_classes {
            if kv.remove(&r.from) {
                kv.insert(r.to.clone());
            }
        }
        for d in &m.deleted_classes {
            kv.remove(d);
        }
    }
    kv
}

impl Migration {
    /// A short hash of the migration as written: an applied one must not change.
    pub fn digest(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a migration always serializes");
        hex::encode(&Sha256::digest(canonical)[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(json: serde_json::Value) -> Vec<Migration> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn classes_declared_with_new_classes_have_no_sql_database_renamed_or_not() {
        let kv = key_value_classes(&m(serde_json::json!([
            { "tag": "v1", "new_classes": ["Old", "Gone"], "new_sqlite_classes": ["Todos"] },
            { "tag": "v2", "renamed_classes": [{ "from": "Old", "to": "New" }],
              "deleted_classes": ["Gone"] },
        ])));
        assert_eq!(kv, std::collections::HashSet::from(["New".to_string()]));
    }
}

//! Class migrations in the seed's shape, for every backend: applied tags are stored per
//! script; new tags apply in order, all in one transaction, at start; a config that drops,
//! reorders or edits an applied tag, or binds a class no migration created, is refused and
//! nothing changes.

use crate::backend::MigrationReport;
use crate::config::migration::Migration;
use crate::id::Namespace;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The class records of one backend, inside one write transaction that the caller commits
/// (or aborts, for a dry run) once `migrate` returns.
pub trait ClassTxn {
    fn class(&mut self, script: &str, class: &str) -> Result<Option<Namespace>>;
    /// Creates a class with a fresh namespace.
    fn create_class(&mut self, script: &str, class: &str) -> Result<Namespace>;
    /// Moves a class to a new name (or script), keeping its namespace: its objects keep
    /// their IDs, data and alarms.
    fn move_class(&mut self, from: (&str, &str), to: (&str, &str)) -> Result<()>;
    /// Deletes a class and everything its objects stored (data, sizes, alarms, names).
    fn delete_class(&mut self, script: &str, class: &str) -> Result<()>;
    /// The script's stored migration history (JSON), if any.
    fn history(&mut self, script: &str) -> Result<Option<Vec<u8>>>;
    fn set_history(&mut self, script: &str, json: &[u8]) -> Result<()>;
}

/// What is stored for each applied migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Applied {
    tag: String,
    digest: String,
}

/// Applies the migrations of `script` not yet applied and checks that every bound class
/// exists; `bound` lists (binding, class). On an error the caller aborts the transaction,
/// so nothing is changed.
pub fn migrate(
    txn: &mut dyn ClassTxn,
    script: &str,
    migrations: &[Migration],
    bound: &[(String, String)],
) -> Result<MigrationReport> {
    let mut seen = HashSet::new();
    for m in migrations {
        if m.tag.is_empty() {
            bail!("a migration has an empty tag");
        }
        if !seen.insert(m.tag.as_str()) {
            bail!("migration tag {:?} appears twice", m.tag);
        }
    }
    let applied: Vec<Applied> = match txn.history(script)? {
        Some(v) => serde_json::from_slice(&v)
            .map_err(|e| anyhow::anyhow!("the stored migration history is corrupt: {e}"))?,
        None => Vec::new(),
    };
    for (i, done) in applied.iter().enumerate() {
        match migrations.get(i) {
            Some(m) if m.tag == done.tag => {
                if m.digest() != done.digest {
                    bail!(
                        "migration {:?} was changed after it was applied; applied migrations \
                         cannot be edited: restore it and add a new migration instead",
                        done.tag
                    );
                }
            }
            _ if migrations.iter().any(|m| m.tag == done.tag) => bail!(
                "migration {:?} was applied as number {} but the config has it elsewhere; \
                 applied migrations cannot be reordered",
                done.tag,
                i + 1
            ),
            _ => bail!(
                "migration {:?} was applied to this data directory but is missing from the \
                 config; applied migrations cannot be removed (never skip migration tags)",
                done.tag
            ),
        }
    }
    let bound_classes: HashSet<&str> = bound.iter().map(|(_, c)| c.as_str()).collect();
    let mut report = MigrationReport {
        already_applied: applied.iter().map(|a| a.tag.clone()).collect(),
        steps: Vec::new(),
    };
    let mut history = applied.clone();
    for m in &migrations[applied.len().min(migrations.len())..] {
        let tag = &m.tag;
        for class in m.new_classes.iter().chain(&m.new_sqlite_classes) {
            if txn.class(script, class)?.is_some() {
                bail!("migration {tag:?}: new class {class:?} already exists");
            }
            txn.create_class(script, class)?;
            report.steps.push(format!("{tag}: create class {class}"));
        }
        for r in &m.renamed_classes {
            if txn.class(script, &r.from)?.is_none() {
                bail!(
                    "migration {tag:?}: renamed class {:?} does not exist (rename from a class \
                     an earlier migration created)",
                    r.from
                );
            }
            if txn.class(script, &r.to)?.is_some() {
                bail!(
                    "migration {tag:?}: cannot rename {:?} to {:?}: {:?} already exists",
                    r.from,
                    r.to,
                    r.to
                );
            }
            txn.move_class((script, &r.from), (script, &r.to))?;
            report.steps.push(format!(
                "{tag}: rename class {} to {} (data and alarms kept)",
                r.from, r.to
            ));
        }
        for t in &m.transferred_classes {
            if txn.class(&t.from_script, &t.from)?.is_none() {
                bail!(
                    "migration {tag:?}: transferred class {:?} of script {:?} does not exist",
                    t.from,
                    t.from_script
                );
            }
            if txn.class(script, &t.to)?.is_some() {
                bail!(
                    "migration {tag:?}: cannot transfer into {:?}: it already exists",
                    t.to
                );
            }
            txn.move_class((&t.from_script, &t.from), (script, &t.to))?;
            report.steps.push(format!(
                "{tag}: transfer class {} from script {} as {} (data and alarms kept)",
                t.from, t.from_script, t.to
            ));
        }
        for class in &m.deleted_classes {
            if txn.class(script, class)?.is_none() {
                bail!("migration {tag:?}: deleted class {class:?} does not exist");
            }
            if bound_classes.contains(class.as_str()) {
                let binding = bound
                    .iter()
                    .find(|(_, c)| c == class)
                    .map(|(b, _)| b.as_str());
                bail!(
                    "migration {tag:?} deletes class {class:?}, but binding {:?} still uses it; \
                     remove the binding first",
                    binding.unwrap_or_default()
                );
            }
            txn.delete_class(script, class)?;
            report
                .steps
                .push(format!("{tag}: delete class {class} and all its data"));
        }
        history.push(Applied {
            tag: tag.clone(),
            digest: m.digest(),
        });
    }
    for (binding, class) in bound {
        if txn.class(script, class)?.is_none() {
            bail!(
                "binding {binding:?} uses class {class:?}, which no migration created; add it to \
                 new_classes in a new migration"
            );
        }
    }
    txn.set_history(script, &serde_json::to_vec(&history)?)?;
    Ok(report)
}

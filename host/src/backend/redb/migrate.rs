//! Class migrations in the seed's shape: applied tags are stored per script; new tags apply
//! in order, all in one transaction, at start; a config that drops, reorders or edits an
//! applied tag, or binds a class no migration created, is refused and nothing changes.

use super::classes::{class_in, class_key, create_class, delete_class, move_class};
use super::handle::RedbStorage;
use super::tables::MIGRATIONS;
use crate::backend::MigrationReport;
use crate::config::migration::Migration;
use anyhow::{Result, bail};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// What is stored for each applied migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Applied {
    tag: String,
    digest: String,
}

/// Applies the migrations of `script` not yet applied and checks that every bound class
/// exists; `bound` lists (binding, class). With `dry_run` nothing is written. On any error
/// nothing is changed.
pub fn migrate(
    db: &RedbStorage,
    script: &str,
    migrations: &[Migration],
    bound: &[(String, String)],
    dry_run: bool,
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
    let txn = db.begin_write()?;
    let applied: Vec<Applied> = {
        let table = txn.open_table(MIGRATIONS)?;
        let found = table.get(script)?;
        match found {
            Some(v) => serde_json::from_slice(v.value())
                .map_err(|e| anyhow::anyhow!("the stored migration history is corrupt: {e}"))?,
            None => Vec::new(),
        }
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
            if class_in(&txn, script, class)?.is_some() {
                bail!("migration {tag:?}: new class {class:?} already exists");
            }
            create_class(&txn, script, class)?;
            report.steps.push(format!("{tag}: create class {class}"));
        }
        for r in &m.renamed_classes {
            if class_in(&txn, script, &r.from)?.is_none() {
                bail!(
                    "migration {tag:?}: renamed class {:?} does not exist (rename from a class \
                     an earlier migration created)",
                    r.from
                );
            }
            if class_in(&txn, script, &r.to)?.is_some() {
                bail!(
                    "migration {tag:?}: cannot rename {:?} to {:?}: {:?} already exists",
                    r.from,
                    r.to,
                    r.to
                );
            }
            move_class(&txn, &class_key(script, &r.from), &class_key(script, &r.to))?;
            report.steps.push(format!(
                "{tag}: rename class {} to {} (data and alarms kept)",
                r.from, r.to
            ));
        }
        for t in &m.transferred_classes {
            if class_in(&txn, &t.from_script, &t.from)?.is_none() {
                bail!(
                    "migration {tag:?}: transferred class {:?} of script {:?} does not exist",
                    t.from,
                    t.from_script
                );
            }
            if class_in(&txn, script, &t.to)?.is_some() {
                bail!(
                    "migration {tag:?}: cannot transfer into {:?}: it already exists",
                    t.to
                );
            }
            move_class(
                &txn,
                &class_key(&t.from_script, &t.from),
                &class_key(script, &t.to),
            )?;
            report.steps.push(format!(
                "{tag}: transfer class {} from script {} as {} (data and alarms kept)",
                t.from, t.from_script, t.to
            ));
        }
        for class in &m.deleted_classes {
            if class_in(&txn, script, class)?.is_none() {
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
            delete_class(&txn, &class_key(script, class))?;
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
        if class_in(&txn, script, class)?.is_none() {
            bail!(
                "binding {binding:?} uses class {class:?}, which no migration created; add it to \
                 new_classes in a new migration"
            );
        }
    }
    {
        let mut table = txn.open_table(MIGRATIONS)?;
        table.insert(script, serde_json::to_vec(&history)?.as_slice())?;
    }
    if dry_run {
        txn.abort()?;
    } else {
        txn.commit()?;
    }
    Ok(report)
}

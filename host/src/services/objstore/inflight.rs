//! An object's writes handed to the committer and not yet durable: reads must see them,
//! and a failed commit drops them all (the object is then rebuilt from disk). Also holds
//! the object's durable data when the backend preloaded it (kept current by each commit).

use crate::backend::committer::CommitTarget;
use crate::backend::{Preload, WriteSet};
use crate::id::ObjectKey;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// An object's writes handed to the committer but not yet durable (reads must see them),
/// shared by its actor and the committer. Lives as long as the object's actor.
pub struct InflightWrites {
    pub object: ObjectKey,
    // A std Mutex: held only for map updates, never across an await or a disk write.
    inflight: Mutex<Inflight>,
}

#[derive(Default)]
pub struct Inflight {
    /// Bumped when a commit of this object fails: queued commits of the old generation
    /// are refused and the actor rebuilds the instance from disk.
    pub generation: u64,
    next_seq: u64,
    pub(super) entries: BTreeMap<String, (u64, Option<Bytes>)>,
    pub(super) clear_seq: Option<u64>,
    pub(super) added_bytes: u64,
    /// The latest alarm change handed to the committer and not yet durable.
    pub(super) alarm: Option<(u64, Option<u64>)>,
    /// SQL pages handed to the committer and not yet durable (index → (seq, contents)),
    /// and the latest page count among them.
    pub(super) pages: BTreeMap<u32, (u64, Bytes)>,
    pub(super) page_count: Option<(u64, u32)>,
    /// Bytes stored by the object as of its last durable commit.
    pub committed_bytes: u64,
    /// Everything durable, when the backend preloaded it: reads need not reach the
    /// backend. Coherent because this node is the object's only writer and every commit
    /// applies its writes here; dropped when a commit fails (its outcome may be unknown).
    pub(super) durable: Option<Preload>,
}

impl InflightWrites {
    pub fn new(object: ObjectKey, committed_bytes: u64, durable: Option<Preload>) -> Arc<Self> {
        Arc::new(InflightWrites {
            object,
            inflight: Mutex::new(Inflight {
                committed_bytes,
                durable,
                ..Inflight::default()
            }),
        })
    }

    /// After a failed commit, the object's state as read again from the backend.
    pub fn reload(&self, committed_bytes: u64, durable: Option<Preload>) {
        let mut inf = self.lock();
        inf.committed_bytes = committed_bytes;
        inf.durable = durable;
    }

    pub fn lock(&self) -> MutexGuard<'_, Inflight> {
        // A poisoned lock means a panic in a few lines of map code; the data is still
        // consistent enough to keep serving, so take it.
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Registers an event's writes as in flight; returns (generation, sequence number).
    /// `expected` is the generation the writes were computed against (the instance's):
    /// after a failed commit they may rest on values that never became durable, so they
    /// are refused (None) rather than registered.
    pub fn begin_commit(&self, writes: &WriteSet, expected: Option<u64>) -> Option<(u64, u64)> {
        let mut inf = self.lock();
        if expected.is_some_and(|g| g != inf.generation) {
            return None;
        }
        inf.next_seq += 1;
        let seq = inf.next_seq;
        if writes.clear {
            inf.entries.clear();
            inf.pages.clear();
            inf.page_count = None;
            inf.clear_seq = Some(seq);
        }
        if let Some(sql) = &writes.sql {
            inf.pages.retain(|i, _| *i < sql.page_count);
            for (i, page) in &sql.pages {
                inf.pages.insert(*i, (seq, page.clone()));
            }
            inf.page_count = Some((seq, sql.page_count));
        }
        for (k, v) in &writes.map {
            inf.entries.insert(k.clone(), (seq, v.clone()));
        }
        inf.added_bytes += writes.added_bytes;
        if let Some(alarm) = writes.alarm {
            inf.alarm = Some((seq, alarm));
        }
        Some((inf.generation, seq))
    }

    /// The commit `seq` is durable: drop what it wrote from the in-flight view (unless a
    /// later commit overwrote it) and record the object's new size.
    pub fn finish_commit(&self, seq: u64, writes: &WriteSet, committed_bytes: u64) {
        let mut inf = self.lock();
        for k in writes.map.keys() {
            if inf.entries.get(k).is_some_and(|(s, _)| *s == seq) {
                inf.entries.remove(k);
            }
        }
        if inf.clear_seq == Some(seq) {
            inf.clear_seq = None;
        }
        if let Some(sql) = &writes.sql {
            for i in sql.pages.keys() {
                if inf.pages.get(i).is_some_and(|(s, _)| *s == seq) {
                    inf.pages.remove(i);
                }
            }
            if inf.page_count.is_some_and(|(s, _)| s == seq) {
                inf.page_count = None;
            }
        }
        inf.added_bytes = inf.added_bytes.saturating_sub(writes.added_bytes);
        inf.committed_bytes = committed_bytes;
        if let Some(durable) = &mut inf.durable {
            if writes.clear {
                durable.entries.clear();
            }
            for (k, v) in &writes.map {
                match v {
                    Some(v) => durable.entries.insert(k.clone(), v.clone()),
                    None => durable.entries.remove(k),
                };
            }
            if let Some(alarm) = writes.alarm {
                durable.alarm = alarm;
            }
        }
        if inf.alarm.is_some_and(|(s, _)| s == seq) {
            inf.alarm = None;
        }
    }

    /// A commit of generation `generation` failed: forget everything in flight.
    pub fn fail_commit(&self, generation: u64) {
        let mut inf = self.lock();
        if inf.generation == generation {
            inf.generation += 1;
            inf.entries.clear();
            inf.clear_seq = None;
            inf.pages.clear();
            inf.page_count = None;
            inf.added_bytes = 0;
            inf.alarm = None;
            // The batch may have been applied (a connection lost after COMMIT): what is
            // durable is known again only once read back.
            inf.durable = None;
        }
    }

    /// True when nothing is waiting to become durable.
    pub fn is_settled(&self) -> bool {
        let inf = self.lock();
        inf.entries.is_empty()
            && inf.clear_seq.is_none()
            && inf.alarm.is_none()
            && inf.pages.is_empty()
            && inf.page_count.is_none()
    }

    /// The SQL database as far as writes in flight say: whether a pending `delete-all`
    /// hides what is durable, the pages written, and the page count they leave.
    pub fn sql_view(&self) -> (bool, BTreeMap<u32, Bytes>, Option<u32>) {
        let inf = self.lock();
        let pages = inf
            .pages
            .iter()
            .map(|(i, (_, p))| (*i, p.clone()))
            .collect();
        (
            inf.clear_seq.is_some(),
            pages,
            inf.page_count.map(|(_, n)| n),
        )
    }
}

impl CommitTarget for InflightWrites {
    fn object(&self) -> ObjectKey {
        self.object
    }

    fn generation(&self) -> u64 {
        InflightWrites::generation(self)
    }

    fn finish_commit(&self, seq: u64, writes: &WriteSet, committed_bytes: u64) {
        InflightWrites::finish_commit(self, seq, writes, committed_bytes)
    }

    fn fail_commit(&self, generation: u64) {
        InflightWrites::fail_commit(self, generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdKey;

    /// Guards against an event that ran across a failed commit committing writes that may
    /// rest on values that never became durable.
    #[test]
    fn writes_built_before_a_failed_commit_are_refused() {
        let object = ObjectKey {
            namespace: 1,
            id: IdKey::new([2; 32]).id_from_name("o"),
        };
        let inflight = InflightWrites::new(object, 0, None);
        let mut writes = WriteSet::default();
        writes
            .map
            .insert("k".into(), Some(Bytes::from_static(b"v")));
        let built_on = inflight.generation();
        let (generation, _) = inflight.begin_commit(&writes, Some(built_on)).unwrap();
        inflight.fail_commit(generation);
        assert_eq!(inflight.begin_commit(&writes, Some(built_on)), None);
        assert!(inflight.is_settled(), "a refused commit registers nothing");
        assert!(
            inflight
                .begin_commit(&writes, Some(inflight.generation()))
                .is_some()
        );
    }
}

//! Which of the host's connections (WebSockets, streams) belong to which object: the index
//! the socket and stream registries each keep beside their entries, under their own lock.

use crate::id::ObjectKey;
use std::collections::{BTreeSet, HashMap};

#[derive(Default)]
pub struct ByObject(HashMap<ObjectKey, BTreeSet<u64>>);

impl ByObject {
    pub fn insert(&mut self, object: ObjectKey, id: u64) {
        self.0.entry(object).or_default().insert(id);
    }

    pub fn remove(&mut self, object: &ObjectKey, id: u64) {
        if let Some(set) = self.0.get_mut(object) {
            set.remove(&id);
            if set.is_empty() {
                self.0.remove(object);
            }
        }
    }

    /// The object's connections, in the order they were made.
    pub fn of(&self, object: &ObjectKey) -> impl Iterator<Item = u64> + '_ {
        self.0.get(object).into_iter().flatten().copied()
    }

    pub fn count(&self, object: &ObjectKey) -> usize {
        self.0.get(object).map_or(0, BTreeSet::len)
    }

    /// The connections of every object `pick` picks.
    pub fn picked(&self, pick: impl Fn(&ObjectKey) -> bool) -> Vec<u64> {
        self.0
            .iter()
            .filter(|(object, _)| pick(object))
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect()
    }
}

//! Which object waits on which in a call to another object: the graph deadlocks are found in
//! (and how many objects are waiting, which instance-slot admission needs).

use crate::id::ObjectKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct CallGraph {
    // A std Mutex: held for a short walk of the graph, never across an await.
    waits_for: Mutex<HashMap<ObjectKey, ObjectKey>>,
}

/// The caller's edge in the graph while its call runs; dropping it ends the wait.
pub struct CallEdge {
    graph: Arc<CallGraph>,
    caller: ObjectKey,
}

impl Drop for CallEdge {
    fn drop(&mut self) {
        self.graph.lock().remove(&self.caller);
    }
}

/// A call that would close a cycle of objects waiting on each other.
#[derive(Debug)]
pub struct WouldDeadlock;

impl CallGraph {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, ObjectKey>> {
        self.waits_for.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `caller` waits on `target`, unless `target` already waits (directly or
    /// through others) on `caller`.
    pub fn wait_on(
        self: &Arc<Self>,
        caller: ObjectKey,
        target: ObjectKey,
    ) -> Result<CallEdge, WouldDeadlock> {
        let mut graph = self.lock();
        let mut at = target;
        // Follow who the target waits on; reaching the caller closes a cycle. The walk is
        // bounded by the number of waiting objects, since each waits on one other.
        for _ in 0..=graph.len() {
            if at == caller {
                return Err(WouldDeadlock);
            }
            match graph.get(&at) {
                Some(next) => at = *next,
                None => break,
            }
        }
        graph.insert(caller, target);
        Ok(CallEdge {
            graph: self.clone(),
            caller,
        })
    }

    /// Objects waiting on a call right now (each holds its instance meanwhile).
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdKey;

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            namespace: 1,
            id: IdKey::new([1; 32]).id_from_name(name),
        }
    }

    #[test]
    fn a_cycle_is_refused_and_an_ended_call_leaves_the_graph() {
        let graph = Arc::new(CallGraph::default());
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let ab = graph.wait_on(a, b).unwrap();
        let bc = graph.wait_on(b, c).unwrap();
        assert!(graph.wait_on(c, a).is_err());
        assert!(graph.wait_on(a, a).is_err());
        assert_eq!(graph.waiting(), 2);
        drop(bc);
        let ca = graph.wait_on(c, a).unwrap();
        drop(ab);
        assert_eq!(graph.waiting(), 1);
        drop(ca);
        assert_eq!(graph.waiting(), 0);
    }
}

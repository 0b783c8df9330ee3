//! Which object waits on which in a call to another object: the graph deadlocks are found in
//! (and how many objects are waiting, which instance-slot admission needs). In a cluster a
//! call to another node carries the chain of objects waiting on its caller, and the node
//! that serves it keeps that chain while it runs, so cycles through several nodes are found
//! too.

use crate::id::{KEY_BYTES, ObjectKey};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct CallGraph {
    // A std Mutex: held for a short walk of the graph, never across an await.
    inner: Mutex<Graph>,
}

#[derive(Default)]
struct Graph {
    /// Caller → the object it waits on (here or on another node).
    waits_for: HashMap<ObjectKey, ObjectKey>,
    /// An object here → the chains of objects on other nodes waiting on it, one per call
    /// from another node it serves (or has queued) right now.
    remote: HashMap<ObjectKey, Vec<Vec<ObjectKey>>>,
}

/// The caller's edge in the graph while its call runs; dropping it ends the wait.
pub struct CallEdge {
    graph: Arc<CallGraph>,
    caller: ObjectKey,
}

impl Drop for CallEdge {
    fn drop(&mut self) {
        self.graph.lock().waits_for.remove(&self.caller);
    }
}

/// A call from another node, waited on by its chain, while it runs here.
pub struct RemoteWait {
    graph: Arc<CallGraph>,
    target: ObjectKey,
}

impl Drop for RemoteWait {
    fn drop(&mut self) {
        let mut g = self.graph.lock();
        if let Some(chains) = g.remote.get_mut(&self.target) {
            chains.pop();
            if chains.is_empty() {
                g.remote.remove(&self.target);
            }
        }
    }
}

/// A call that would close a cycle of objects waiting on each other.
#[derive(Debug)]
pub struct WouldDeadlock;

/// At most this many objects in a call chain sent to another node (a longer chain is cut:
/// a cycle through the objects left out is then not found, only waited out by the call's
/// timeout).
pub const MAX_CHAIN: usize = 64;

impl CallGraph {
    fn lock(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `caller` waits on `target`, unless `target` already waits (directly or
    /// through others, on any node that told this one) on `caller`.
    pub fn wait_on(
        self: &Arc<Self>,
        caller: ObjectKey,
        target: ObjectKey,
    ) -> Result<CallEdge, WouldDeadlock> {
        let mut graph = self.lock();
        if target == caller || graph.waiters_of(caller).contains(&target) {
            return Err(WouldDeadlock);
        }
        graph.waits_for.insert(caller, target);
        Ok(CallEdge {
            graph: self.clone(),
            caller,
        })
    }

    /// What a call from `caller` to another node carries: every object waiting on it, and
    /// itself last.
    pub fn chain(&self, caller: ObjectKey) -> Vec<ObjectKey> {
        let mut chain: Vec<ObjectKey> = self.lock().waiters_of(caller).into_iter().collect();
        chain.sort();
        chain.truncate(MAX_CHAIN - 1);
        chain.push(caller);
        chain
    }

    /// A call from another node to `target` here, sent by the last of `chain`: refused if
    /// `target` is in the chain (it waits on itself); kept until the guard drops.
    pub fn wait_from_afar(
        self: &Arc<Self>,
        chain: Vec<ObjectKey>,
        target: ObjectKey,
    ) -> Result<RemoteWait, WouldDeadlock> {
        if chain.contains(&target) {
            return Err(WouldDeadlock);
        }
        let mut graph = self.lock();
        // The target already waits, through calls this node knows of, on the chain.
        if chain.iter().any(|c| graph.waiters_of(*c).contains(&target)) {
            return Err(WouldDeadlock);
        }
        graph.remote.entry(target).or_default().push(chain);
        Ok(RemoteWait {
            graph: self.clone(),
            target,
        })
    }

    /// Objects waiting on a call right now (each holds its instance meanwhile).
    pub fn waiting(&self) -> usize {
        self.lock().waits_for.len()
    }
}

impl Graph {
    /// Every object that waits on `object`, directly or through others: callers here, and
    /// the chains of calls from other nodes that any of them serves.
    fn waiters_of(&self, object: ObjectKey) -> HashSet<ObjectKey> {
        let mut found = HashSet::new();
        let mut todo = vec![object];
        while let Some(at) = todo.pop() {
            for chain in self.remote.get(&at).into_iter().flatten() {
                for c in chain {
                    if found.insert(*c) {
                        todo.push(*c);
                    }
                }
            }
            for (caller, target) in &self.waits_for {
                if *target == at && found.insert(*caller) {
                    todo.push(*caller);
                }
            }
        }
        found
    }
}

/// A chain as a header value: each key's 40 bytes in hex, comma-separated.
pub fn chain_to_wire(chain: &[ObjectKey]) -> String {
    chain
        .iter()
        .map(|k| hex::encode(k.to_bytes()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The chain a header value carries; None when it is malformed or too long.
pub fn chain_from_wire(text: &str) -> Option<Vec<ObjectKey>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let chain: Vec<ObjectKey> = text
        .split(',')
        .map(|h| {
            let bytes: [u8; KEY_BYTES] = hex::decode(h).ok()?.try_into().ok()?;
            Some(ObjectKey::from_bytes(&bytes))
        })
        .collect::<Option<_>>()?;
    (chain.len() <= MAX_CHAIN).then_some(chain)
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

    /// a (elsewhere) → b (here) → c (elsewhere) → b: c's call carries [a, b, c] and is
    /// refused; d here waiting on a (elsewhere) refuses a call from a's chain, and from c
    /// (which d waits on through a and b); a chain survives the trip through a header.
    #[test]
    fn chains_from_other_nodes_close_cycles() {
        let graph = Arc::new(CallGraph::default());
        let (a, b, c, d) = (key("a"), key("b"), key("c"), key("d"));
        let from_a = graph.wait_from_afar(vec![a], b).unwrap();
        let bc = graph.wait_on(b, c).unwrap();
        assert_eq!(graph.chain(b).last(), Some(&b));
        assert_eq!(graph.chain(b).len(), 2);
        assert!(graph.wait_from_afar(vec![a, b, c], b).is_err());
        let da = graph.wait_on(d, a).unwrap();
        assert!(graph.wait_from_afar(vec![a], d).is_err());
        // d → a → b → c here, so c calling d closes a cycle too; e calling d does not.
        assert!(graph.wait_from_afar(vec![c], d).is_err());
        assert!(graph.wait_from_afar(vec![key("e")], d).is_ok());
        drop((from_a, bc, da));
        assert!(graph.wait_from_afar(vec![a, b, c], d).is_ok());
        let wire = chain_to_wire(&[a, b, c]);
        assert_eq!(chain_from_wire(&wire), Some(vec![a, b, c]));
        assert_eq!(chain_from_wire("zz"), None);
        assert_eq!(chain_from_wire(""), Some(vec![]));
    }
}

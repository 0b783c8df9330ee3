//! Which node serves an object. One node serves everything (`LocalPlacement`); a cluster
//! answers from its shard ownership instead, and the runtime consults it before it starts
//! an object's actor.

use crate::cluster::{Membership, View};
use crate::id::ObjectKey;
use std::sync::{Arc, RwLock};

/// Where an object is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Here: this node runs the object's actor.
    Here,
    /// Another node, by address: requests for the object must go there.
    Elsewhere(String),
    /// Nobody serves it right now (its shard is between owners): try again shortly.
    Nobody,
}

/// The response header a cluster node adds to each answer it gives for an object it
/// serves: `node@epoch`, the node's ID and its epoch of the object's shard. For operators
/// (which node answered) and for the cluster tests' checker (epochs per object only grow,
/// and each belongs to one node).
pub const SERVED_BY: &str = "x-dohost-served-by";

pub trait Placement: Send + Sync + 'static {
    /// Where new requests for the object go.
    fn owner(&self, object: &ObjectKey) -> Owner;

    /// Whether this node still holds the object's shard, so that an answer from it may
    /// leave: true while `owner` is `Here`, and while the shard is being handed over.
    fn holds(&self, object: &ObjectKey) -> bool {
        self.owner(object) == Owner::Here
    }

    /// What `SERVED_BY` says for an object served here; None for a single node.
    fn served_by(&self, _object: &ObjectKey) -> Option<String> {
        None
    }
}

/// A single node: every object is served here.
pub struct LocalPlacement;

impl Placement for LocalPlacement {
    fn owner(&self, _object: &ObjectKey) -> Owner {
        Owner::Here
    }
}

/// A cluster node: the shards this node holds are served here, the others where etcd says
/// (as the coordinator last saw it); nothing is served here once the node's lease may have
/// expired (a node paused past its lease serves nothing from the moment it resumes, before
/// its coordinator has looked at etcd again).
pub struct ClusterPlacement {
    pub view: Arc<RwLock<View>>,
    pub membership: Arc<Membership>,
}

impl Placement for ClusterPlacement {
    fn owner(&self, object: &ObjectKey) -> Owner {
        if !self.membership.is_live() {
            return Owner::Nobody;
        }
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        let shard = object.shard(view.shards);
        if view.draining.contains(&shard) {
            return Owner::Nobody;
        }
        if view.held.contains_key(&shard) && view.lease == self.membership.lease() {
            return Owner::Here;
        }
        match view.elsewhere.get(&shard) {
            Some(addr) => Owner::Elsewhere(addr.clone()),
            None => Owner::Nobody,
        }
    }

    fn holds(&self, object: &ObjectKey) -> bool {
        if !self.membership.is_live() {
            return false;
        }
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.held.contains_key(&object.shard(view.shards)) && view.lease == self.membership.lease()
    }

    fn served_by(&self, object: &ObjectKey) -> Option<String> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        let epoch = view.held.get(&object.shard(view.shards))?;
        Some(format!("{}@{epoch}", self.membership.node))
    }
}

//! Which node serves an object. One node serves everything (`LocalPlacement`); a cluster
//! answers from its shard ownership instead, and the runtime consults it before it starts
//! an object's actor.

use crate::id::ObjectKey;

/// Where an object is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Here: this node runs the object's actor.
    Here,
    /// Another node, by name: requests for the object must go there.
    Elsewhere(String),
}

pub trait Placement: Send + Sync + 'static {
    fn owner(&self, object: &ObjectKey) -> Owner;
}

/// A single node: every object is served here.
pub struct LocalPlacement;

impl Placement for LocalPlacement {
    fn owner(&self, _object: &ObjectKey) -> Owner {
        Owner::Here
    }
}

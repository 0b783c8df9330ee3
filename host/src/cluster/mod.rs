//! The cluster's coordination through etcd: a node's lease and membership (`lease`), and
//! shard ownership — who should own each shard (a rendezvous hash over the live members),
//! create-only claims whose create revision is the shard's epoch, and hand-over (`shards`).
//! Knows nothing of objects or instances: the runtime's `Placement` asks it.

pub mod coordinator;
pub mod lease;
pub mod shards;
pub mod status;

pub use coordinator::{Coordinator, ShardEvents, View};
pub use lease::{Member, Membership};
pub use shards::{Claim, Shards, desired_owner};

/// Where a cluster's keys live in etcd.
pub const KEY_PREFIX: &str = "/dohost";

/// The keys dohost keeps in etcd, under one prefix per cluster.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// Everything the cluster keeps: members and claims.
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }

    pub fn members(&self) -> String {
        format!("{}/members/", self.prefix)
    }

    pub fn member(&self, node: &str) -> String {
        format!("{}{node}", self.members())
    }

    pub fn shards(&self) -> String {
        format!("{}/shards/", self.prefix)
    }

    pub fn shard(&self, shard: u32) -> String {
        // Zero-padded so that a prefix listing comes back in shard order.
        format!("{}{shard:05}", self.shards())
    }
}

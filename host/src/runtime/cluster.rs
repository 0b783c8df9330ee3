//! A runtime as one node of a cluster: it joins etcd before it starts, its coordinator
//! hands it shards (whose alarms it then loads) and takes them away (whose objects it then
//! disowns), and it leaves etcd when it stops.

use super::Runtime;
use crate::cluster::{Coordinator, KEY_PREFIX, Keys, Membership, ShardEvents};
use crate::config::Config;
use crate::object::Event;
use anyhow::{Context, Result};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::{Arc, Weak};
use tokio::sync::oneshot;

/// What the runtime keeps of its cluster membership, to leave at shutdown.
pub struct ClusterNode {
    pub membership: Arc<Membership>,
    pub coordinator: tokio::task::JoinHandle<()>,
}

impl Runtime {
    /// Starts a node: a single one as `start` does, or, with `config.cluster`, a cluster
    /// node that first joins etcd (an unreachable etcd stops start-up, naming it).
    pub async fn start_node(config: &Config) -> Result<Arc<Runtime>> {
        let Some(cluster) = &config.cluster else {
            return Runtime::start(config);
        };
        let membership = Membership::join(
            &cluster.etcd,
            Keys::new(KEY_PREFIX),
            &cluster.node_id,
            &cluster.advertise,
            cluster.lease_ttl,
        )
        .await
        .with_context(|| format!("cannot join the cluster as node {:?}", cluster.node_id))?;
        Runtime::start_clustered(config, Arc::new(membership))
    }

    /// Hands the coordinator its events and starts it.
    pub(super) fn run_coordinator(self: &Arc<Self>, coordinator: Coordinator) -> ClusterNode {
        let membership = coordinator.membership().clone();
        let events = Arc::new(NodeEvents(Arc::downgrade(self)));
        ClusterNode {
            membership,
            coordinator: tokio::spawn(coordinator.run(events)),
        }
    }

    /// Drops the instances of every object of `shards` (see `Event::Disown`) and closes
    /// their sockets and streams, so that clients reconnect to the new owner.
    pub fn disown(&self, shards: &[u32]) {
        let count = self.db_shard_count();
        self.sockets()
            .close_moved(|key| shards.contains(&key.shard(count)));
        self.streams()
            .end_where(|key| shards.contains(&key.shard(count)));
        for (key, handle) in self.lock_actors().iter() {
            if shards.contains(&key.shard(count)) {
                let _ = handle.send(Event::Disown(None));
            }
        }
    }

    /// Finishes this node's work on `shards` before they are handed over: their sockets
    /// and streams are closed, and the future resolves once every one of their objects has
    /// run the events already queued for it, had its writes made durable, and dropped its
    /// instance (no new event reaches them: placement sends requests elsewhere).
    pub fn drain(&self, shards: &[u32]) -> BoxFuture<'static, ()> {
        let count = self.db_shard_count();
        self.sockets()
            .close_moved(|key| shards.contains(&key.shard(count)));
        self.streams()
            .end_where(|key| shards.contains(&key.shard(count)));
        let mut drained = Vec::new();
        for (key, handle) in self.lock_actors().iter() {
            if shards.contains(&key.shard(count)) {
                let (done, rx) = oneshot::channel();
                if handle.send(Event::Disown(Some(done))).is_ok() {
                    drained.push(rx);
                }
            }
        }
        async move {
            futures::future::join_all(drained).await;
        }
        .boxed()
    }

    /// Loads the alarms of `shards` into the scheduler (a shard's alarms fire only on its
    /// owner, from when it holds the shard).
    fn load_alarms(&self, shards: &[u32]) {
        let Some(db) = self.db() else { return };
        let count = db.shard_count();
        match db.all_alarms() {
            Ok(alarms) => {
                for alarm in alarms {
                    if !shards.contains(&alarm.object.shard(count)) {
                        continue;
                    }
                    match alarm.retry {
                        Some(r) => self.scheduler().retry(alarm.object, r.at, r.count),
                        None => self.scheduler().set(alarm.object, Some(alarm.at)),
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot load the alarms of taken shards")
            }
        }
    }
}

struct NodeEvents(Weak<Runtime>);

impl ShardEvents for NodeEvents {
    fn taken(&self, shards: &[u32]) {
        let Some(rt) = self.0.upgrade() else { return };
        let shards = shards.to_vec();
        // Reading every alarm blocks on the database.
        tokio::task::spawn_blocking(move || rt.load_alarms(&shards));
    }

    fn dropped(&self, shards: &[u32]) {
        if let Some(rt) = self.0.upgrade() {
            rt.disown(shards);
        }
    }

    fn drain(&self, shards: &[u32]) -> BoxFuture<'static, ()> {
        match self.0.upgrade() {
            Some(rt) => rt.drain(shards),
            None => futures::future::ready(()).boxed(),
        }
    }
}

//! The cluster's ownership loop on one node: every tick it reads the members and claims
//! from etcd, claims the vacant shards it should own (rendezvous hash), fences them in the
//! storage before serving them, hands over the shards a newly joined member should own,
//! and gives up every shard once its lease may have expired. Publishes the resulting view
//! for placement.

use super::lease::{Member, Membership};
use super::shards::desired_owner;
use crate::backend::Storage;
use etcd_client::WatchOptions;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the loop looks at etcd.
pub const TICK: Duration = Duration::from_millis(200);

/// Where each shard is served, as this node last saw it.
#[derive(Default, Clone, Debug)]
pub struct View {
    /// Shards this node holds (claimed in etcd and fenced in storage), with their epochs.
    pub held: HashMap<u32, i64>,
    /// The lease `held` was claimed under: once the node has joined again under another
    /// (its old one expired), none of it is its own, even before the next tick drops it.
    pub lease: i64,
    /// Held shards being handed over: no new request is served here (the sender waits for
    /// the new owner) while the events already here finish and their writes commit.
    pub draining: HashSet<u32>,
    /// Other nodes' shards: the owner's advertised address.
    pub elsewhere: BTreeMap<u32, String>,
    pub shards: u32,
}

/// Told when shards come and go (the runtime loads their alarms, or disowns their
/// objects).
pub trait ShardEvents: Send + Sync + 'static {
    fn taken(&self, shards: &[u32]);
    fn dropped(&self, shards: &[u32]);
    /// Resolves once the work already here for `shards` is done and durable.
    fn drain(&self, shards: &[u32]) -> BoxFuture<'static, ()>;
}

/// How long a handover waits for the shards' events and writes to finish before it lets
/// them go anyway (a write still queued is then refused by the fence: 503, nothing
/// written).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);

pub struct Coordinator {
    membership: Arc<Membership>,
    storage: Arc<dyn Storage>,
    view: Arc<RwLock<View>>,
}

impl Coordinator {
    pub fn new(membership: Arc<Membership>, storage: Arc<dyn Storage>) -> Coordinator {
        let view = View {
            shards: storage.shard_count(),
            ..View::default()
        };
        Coordinator {
            membership,
            storage,
            view: Arc::new(RwLock::new(view)),
        }
    }

    pub fn view(&self) -> Arc<RwLock<View>> {
        self.view.clone()
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// Runs until the task is dropped: a tick every `TICK`, and at once when etcd reports
    /// a change (a member's lease expired, a shard released), so that a failover or a
    /// handover does not wait out the rest of a tick.
    pub async fn run(self, events: Arc<dyn ShardEvents>) {
        let changed = Arc::new(Notify::new());
        let watcher = tokio::spawn(watch_changes(self.membership.clone(), changed.clone()));
        let _stop_watching = AbortOnDrop(watcher);
        loop {
            if let Err(e) = self.tick(&*events).await {
                tracing::debug!(error = %format!("{e:#}"), "cluster: etcd not reachable this tick");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = changed.notified() => {}
            }
        }
    }

    fn held(&self) -> HashMap<u32, i64> {
        self.view
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .held
            .clone()
    }

    /// Gives up `shards` here: storage refuses their commits, the runtime drops their
    /// objects.
    fn drop_shards(&self, shards: &[u32], events: &dyn ShardEvents) {
        if shards.is_empty() {
            return;
        }
        {
            let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
            for s in shards {
                view.held.remove(s);
                view.draining.remove(s);
                self.storage.drop_shard(*s);
            }
        }
        events.dropped(shards);
    }

    async fn tick(&self, events: &dyn ShardEvents) -> anyhow::Result<()> {
        let m = &self.membership;
        if !m.is_live() {
            // The lease may have expired in etcd: another node may own these by now.
            let all: Vec<u32> = self.held().into_keys().collect();
            if !all.is_empty() {
                tracing::warn!(
                    shards = all.len(),
                    "cluster: lease not renewed in time; giving up every shard"
                );
            }
            self.drop_shards(&all, events);
            return Ok(());
        }
        let members = m.members().await?;
        let claims = m.shards().claims().await?;
        let addr_of: HashMap<&str, &str> = members
            .iter()
            .map(|mb: &Member| (mb.node.as_str(), mb.addr.as_str()))
            .collect();
        let held = self.held();
        let count = self.view.read().unwrap_or_else(|p| p.into_inner()).shards;
        // Held shards whose claim is gone or not ours any more.
        let lost: Vec<u32> = held
            .iter()
            .filter(|(s, epoch)| {
                claims
                    .get(s)
                    .is_none_or(|c| c.lease != m.lease() || c.epoch != **epoch)
            })
            .map(|(s, _)| *s)
            .collect();
        self.drop_shards(&lost, events);
        // Claims under this node's lease that it does not serve: it gave them up while it
        // could not renew the lease, and etcd kept the lease (an etcd restart extends every
        // lease). Release them; the next tick claims them afresh, with a new epoch.
        for (shard, claim) in &claims {
            if claim.lease == m.lease() && !held.contains_key(shard) {
                m.shards().release(*shard, claim.epoch).await?;
            }
        }
        // Held shards another live member should own now (it joined): hand them over.
        // Commits of theirs still queued here are refused by the fence once the new owner
        // takes the shard (503, nothing written).
        let unwanted: Vec<(u32, i64)> = held
            .iter()
            .filter(|(s, _)| !lost.contains(s))
            .filter(|(s, _)| desired_owner(**s, &members).is_some_and(|d| d.node != m.node))
            .map(|(s, e)| (*s, *e))
            .collect();
        if !unwanted.is_empty() {
            let shards: Vec<u32> = unwanted.iter().map(|(s, _)| *s).collect();
            self.view
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .draining
                .extend(&shards);
            if tokio::time::timeout(DRAIN_LIMIT, events.drain(&shards))
                .await
                .is_err()
            {
                tracing::warn!(
                    shards = shards.len(),
                    "cluster: handing shards over before their work finished ({DRAIN_LIMIT:?})"
                );
            }
            self.drop_shards(&shards, events);
            for (shard, epoch) in &unwanted {
                m.shards().release(*shard, *epoch).await?;
            }
            tracing::info!(shards = shards.len(), "cluster: handed shards over");
        }
        // Vacant shards this node should own (those released just above wait a tick).
        let claimed_under = m.lease();
        // All at once: after a crash a third of the shards may be vacant, and one round
        // trip to etcd each, in turn, would add to the failover.
        let vacant = (0..count).filter(|s| {
            !claims.contains_key(s) && desired_owner(*s, &members).is_some_and(|d| d.node == m.node)
        });
        let shards = &m.shards();
        let tries = futures::future::join_all(
            vacant.map(|shard| async move { (shard, shards.claim(shard).await) }),
        )
        .await;
        let mut claimed = Vec::new();
        for (shard, tried) in tries {
            if let Some(epoch) = tried? {
                claimed.push((shard, epoch));
            }
        }
        if !claimed.is_empty() {
            // Objects left here from an earlier holding of these shards (dropped, but with
            // events or commits still queued) finish first: their commits are refused while
            // the shards are not held, and must not pass under the new epoch with what
            // they read before another node wrote.
            let shards: Vec<u32> = claimed.iter().map(|(s, _)| *s).collect();
            if tokio::time::timeout(DRAIN_LIMIT, events.drain(&shards))
                .await
                .is_err()
            {
                tracing::warn!("cluster: objects of a lost shard still busy; not taking it yet");
                for (shard, epoch) in &claimed {
                    m.shards().release(*shard, *epoch).await?;
                }
                return Ok(());
            }
            let storage = self.storage.clone();
            let node = m.node.clone();
            let to_fence = claimed.clone();
            let taken = tokio::task::spawn_blocking(move || storage.take_shards(&to_fence, &node))
                .await??;
            for (shard, epoch) in &claimed {
                if !taken.contains(shard) {
                    // A newer epoch is fenced already: not ours to serve.
                    m.shards().release(*shard, *epoch).await?;
                }
            }
            {
                let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
                for (shard, epoch) in &claimed {
                    if taken.contains(shard) {
                        view.held.insert(*shard, *epoch);
                    }
                }
                view.lease = claimed_under;
            }
            if !taken.is_empty() {
                tracing::info!(shards = taken.len(), "cluster: took shards");
                events.taken(&taken);
            }
        }
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        view.elsewhere = claims
            .iter()
            .filter(|(_, c)| c.lease != m.lease())
            .filter_map(|(s, c)| Some((*s, addr_of.get(c.node.as_str())?.to_string())))
            .collect();
        Ok(())
    }
}

/// Tells `changed` of every change under the cluster's keys, watching again (a tick later)
/// whenever the watch ends, as it does while etcd is away.
async fn watch_changes(membership: Arc<Membership>, changed: Arc<Notify>) {
    loop {
        let mut client = membership.client.clone();
        let watch = client
            .watch(
                membership.keys.all(),
                Some(WatchOptions::new().with_prefix()),
            )
            .await;
        if let Ok(mut stream) = watch {
            while let Ok(Some(_)) = stream.message().await {
                changed.notify_one();
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Stops a spawned task when dropped (the watch ends with the coordinator's loop).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

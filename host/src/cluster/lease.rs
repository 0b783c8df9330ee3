//! A node's lease in etcd and its membership key: granted at join, kept alive in the
//! background, and a local deadline — the last acknowledged keepalive plus the TTL less a
//! margin — after which the node must consider itself dead, before etcd can expire it. A
//! node whose lease did expire (it was paused, or cut off) joins again under a new lease:
//! a new incarnation, which owns none of the old one's shards.

use super::Keys;
use crate::backend::committer::{PROBE_INTERVAL, StorageHealth};
use anyhow::{Context, Result};
use etcd_client::{Client, GetOptions, PutOptions};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Of the lease's TTL, what the local deadline keeps in hand: etcd may expire the lease
/// as soon as TTL has passed since the keepalive it last acknowledged, and a keepalive's
/// answer arrives some time after etcd acted on it.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// A live member as etcd lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node: String,
    /// Where other nodes reach it (its `--advertise` address).
    pub addr: String,
}

/// What the keepalive task shares with the membership.
struct Live {
    lease: AtomicI64,
    /// Set while this node's database is unreachable past the lease's TTL: renewals stop,
    /// so that the lease expires and other nodes take its shards.
    standing_down: AtomicBool,
    // A std Mutex: read or replaced whole, never across an await.
    alive_until: Mutex<Instant>,
}

/// This node's membership: its lease, and until when it may act as a member.
pub struct Membership {
    pub client: Client,
    pub keys: Keys,
    pub node: String,
    ttl: Duration,
    live: Arc<Live>,
    keepalive: tokio::task::JoinHandle<()>,
}

/// Grants a lease and registers `node` at `addr` under it; answers the lease and when it
/// was asked for (the earliest etcd can have started counting its TTL).
async fn register(
    client: &mut Client,
    keys: &Keys,
    node: &str,
    addr: &str,
    ttl: Duration,
) -> Result<(i64, Instant)> {
    let asked = Instant::now();
    let lease = client
        .lease_grant(ttl.as_secs().max(1) as i64, None)
        .await
        .context("etcd refused a lease")?
        .id();
    client
        .put(
            keys.member(node),
            addr,
            Some(PutOptions::new().with_lease(lease)),
        )
        .await
        .context("cannot register this node in etcd")?;
    Ok((lease, asked))
}

impl Membership {
    /// Grants a lease of `ttl`, registers `node` at `addr` under it and keeps it alive.
    pub async fn join(
        endpoints: &[String],
        keys: Keys,
        node: &str,
        addr: &str,
        ttl: Duration,
    ) -> Result<Membership> {
        let mut client = Client::connect(endpoints, None)
            .await
            .with_context(|| format!("cannot reach etcd at {}", endpoints.join(",")))?;
        let (lease, asked) = register(&mut client, &keys, node, addr, ttl).await?;
        let live = Arc::new(Live {
            lease: AtomicI64::new(lease),
            standing_down: AtomicBool::new(false),
            alive_until: Mutex::new(asked + ttl.saturating_sub(DEADLINE_MARGIN)),
        });
        let keepalive = tokio::spawn(keep_alive(
            client.clone(),
            keys.clone(),
            node.to_string(),
            addr.to_string(),
            ttl,
            live.clone(),
        ));
        Ok(Membership {
            client,
            keys,
            node: node.to_string(),
            ttl,
            live,
            keepalive,
        })
    }

    /// The current incarnation's lease (every shard this node holds is claimed under it).
    pub fn lease(&self) -> i64 {
        self.live.lease.load(Ordering::SeqCst)
    }

    /// Whether this node may still act as a member (own shards, commit, answer): false
    /// once its lease may have expired in etcd.
    pub fn is_live(&self) -> bool {
        Instant::now() < self.deadline()
    }

    /// When this node stops being live unless a keepalive is acknowledged before.
    pub fn deadline(&self) -> Instant {
        *self
            .live
            .alive_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Stops renewing the lease (`true`) or renews it again (`false`). A node that cannot
    /// reach its database cannot serve its shards, yet its lease would keep them from the
    /// nodes that can: standing down lets the lease lapse (this node then drops every
    /// shard, and the others take them over); standing up joins again under a new lease.
    pub fn stand_down(&self, yes: bool) {
        if self.live.standing_down.swap(yes, Ordering::SeqCst) != yes {
            if yes {
                tracing::warn!(node = %self.node, "cluster: the database is unreachable past the lease's TTL; letting the lease lapse so that other nodes take this node's shards");
            } else {
                tracing::info!(node = %self.node, "cluster: the database answers again; renewing the lease");
            }
        }
    }

    /// The live members, in node order.
    pub async fn members(&self) -> Result<Vec<Member>> {
        read_members(&self.client, &self.keys).await
    }

    /// Leaves at once: the lease is revoked, so its membership and every shard claimed
    /// under it go with it.
    pub async fn leave(&self) -> Result<()> {
        self.keepalive.abort();
        let mut client = self.client.clone();
        client.lease_revoke(self.lease()).await?;
        Ok(())
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// Renews the lease every third of its TTL; each acknowledged renewal moves the local
/// deadline to when it was sent plus the TTL less the margin. A failed renewal is retried
/// (reconnecting); a lease etcd no longer has is replaced by a new registration.
async fn keep_alive(
    client: Client,
    keys: Keys,
    node: String,
    addr: String,
    ttl: Duration,
    live: Arc<Live>,
) {
    let every = ttl / 3;
    loop {
        let mut client = client.clone();
        let lease = live.lease.load(Ordering::SeqCst);
        let Ok((mut keeper, mut answers)) = client.lease_keep_alive(lease).await else {
            tokio::time::sleep(every / 4).await;
            continue;
        };
        loop {
            if live.standing_down.load(Ordering::SeqCst) {
                tokio::time::sleep(every).await;
                continue;
            }
            let sent = Instant::now();
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match answers.message().await {
                Ok(Some(answer)) if answer.ttl() > 0 => {
                    *live.alive_until.lock().unwrap_or_else(|p| p.into_inner()) =
                        sent + ttl.saturating_sub(DEADLINE_MARGIN);
                }
                Ok(Some(_)) => {
                    // Gone in etcd (expired while this node was paused or cut off): join
                    // again as a new incarnation.
                    match register(&mut client, &keys, &node, &addr, ttl).await {
                        Ok((lease, asked)) => {
                            tracing::warn!(node = %node, "cluster: the lease had expired; joined again under a new one");
                            live.lease.store(lease, Ordering::SeqCst);
                            *live.alive_until.lock().unwrap_or_else(|p| p.into_inner()) =
                                asked + ttl.saturating_sub(DEADLINE_MARGIN);
                        }
                        Err(_) => tokio::time::sleep(every / 4).await,
                    }
                    break;
                }
                _ => break,
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// Stands the node down (see `Membership::stand_down`) while its database has not
/// answered for longer than the lease's TTL, as `health` tells from the storage probe, and
/// up again once it answers. Ends when `stop` turns true.
pub async fn stand_down_while_unreachable(
    membership: Arc<Membership>,
    health: Arc<StorageHealth>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let cut_off = health
            .unreachable()
            .is_some_and(|(_, since)| since.elapsed() > membership.ttl());
        membership.stand_down(cut_off);
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL / 4) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The live members of the cluster under `keys`, in node order.
pub async fn read_members(client: &Client, keys: &Keys) -> Result<Vec<Member>> {
    let mut client = client.clone();
    let prefix = keys.members();
    let resp = client
        .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
        .await?;
    let mut members: Vec<Member> = resp
        .kvs()
        .iter()
        .filter_map(|kv| {
            let node = kv.key_str().ok()?.strip_prefix(&prefix)?.to_string();
            let addr = kv.value_str().ok()?.to_string();
            Some(Member { node, addr })
        })
        .collect();
    members.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(members)
}

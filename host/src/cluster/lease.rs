//! A node's lease in etcd and its membership key: granted at join, kept alive in the
//! background, and a local deadline — the last acknowledged keepalive plus the TTL less a
//! margin — after which the node must consider itself dead, before etcd can expire it.

use super::Keys;
use anyhow::{Context, Result};
use etcd_client::{Client, GetOptions, PutOptions};
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

/// This node's membership: its lease, and until when it may act as a member.
pub struct Membership {
    pub client: Client,
    pub keys: Keys,
    pub node: String,
    pub lease: i64,
    ttl: Duration,
    // A std Mutex: read or replaced whole, never across an await.
    alive_until: Arc<Mutex<Instant>>,
    keepalive: tokio::task::JoinHandle<()>,
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
        let granted_at = Instant::now();
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
        let alive_until = Arc::new(Mutex::new(granted_at + ttl.saturating_sub(DEADLINE_MARGIN)));
        let keepalive = tokio::spawn(keep_alive(client.clone(), lease, ttl, alive_until.clone()));
        Ok(Membership {
            client,
            keys,
            node: node.to_string(),
            lease,
            ttl,
            alive_until,
            keepalive,
        })
    }

    /// Whether this node may still act as a member (own shards, commit, answer): false
    /// once its lease may have expired in etcd.
    pub fn is_live(&self) -> bool {
        Instant::now() < self.deadline()
    }

    /// When this node stops being live unless a keepalive is acknowledged before.
    pub fn deadline(&self) -> Instant {
        *self.alive_until.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The live members, in node order.
    pub async fn members(&self) -> Result<Vec<Member>> {
        let mut client = self.client.clone();
        let resp = client
            .get(self.keys.members(), Some(GetOptions::new().with_prefix()))
            .await?;
        let prefix = self.keys.members();
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

    /// Leaves at once: the lease is revoked, so its membership and every shard claimed
    /// under it go with it.
    pub async fn leave(&self) -> Result<()> {
        self.keepalive.abort();
        let mut client = self.client.clone();
        client.lease_revoke(self.lease).await?;
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
/// (reconnecting) until it succeeds or the lease is gone.
async fn keep_alive(client: Client, lease: i64, ttl: Duration, alive_until: Arc<Mutex<Instant>>) {
    let every = ttl / 3;
    loop {
        let mut client = client.clone();
        let stream = client.lease_keep_alive(lease).await;
        let Ok((mut keeper, mut answers)) = stream else {
            tokio::time::sleep(every / 4).await;
            continue;
        };
        loop {
            let sent = Instant::now();
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match answers.message().await {
                Ok(Some(answer)) if answer.ttl() > 0 => {
                    *alive_until.lock().unwrap_or_else(|p| p.into_inner()) =
                        sent + ttl.saturating_sub(DEADLINE_MARGIN);
                }
                // The lease is gone in etcd (expired or revoked): nothing to renew.
                Ok(Some(_)) => return,
                _ => break,
            }
            tokio::time::sleep(every).await;
        }
    }
}

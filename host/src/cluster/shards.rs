//! Shard ownership in etcd: the desired owner of a shard (a rendezvous hash over the live
//! members, so a join or a leave moves only the shards it must), create-only claims bound
//! to the claimer's lease — the key's create revision is the shard's epoch, which only
//! grows — and releases that delete a claim only if it is still the one made.

use super::Keys;
use super::lease::{Member, Membership};
use anyhow::Result;
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// A shard as etcd records its claim: who holds it, and its epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub node: String,
    pub epoch: i64,
    /// The lease it is bound to: a restarted node with the same name holds a new lease, so
    /// its old claims are not its own.
    pub lease: i64,
}

/// The member that should own `shard`: the highest score of hash(shard, node).
pub fn desired_owner(shard: u32, members: &[Member]) -> Option<&Member> {
    members.iter().max_by_key(|m| {
        let mut h = Sha256::new();
        h.update(shard.to_be_bytes());
        h.update(m.node.as_bytes());
        let d = h.finalize();
        u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
    })
}

/// The shard operations of a member.
pub struct Shards<'m> {
    m: &'m Membership,
}

impl Membership {
    pub fn shards(&self) -> Shards<'_> {
        Shards { m: self }
    }
}

impl Shards<'_> {
    /// Claims `shard` if nobody holds it; answers its new epoch, or None if it is held.
    pub async fn claim(&self, shard: u32) -> Result<Option<i64>> {
        let key = self.m.keys.shard(shard);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                self.m.node.clone(),
                Some(PutOptions::new().with_lease(self.m.lease())),
            )]);
        let mut client = self.m.client.clone();
        let resp = client.txn(txn).await?;
        if !resp.succeeded() {
            return Ok(None);
        }
        // The put is the transaction's only write: its revision is the key's creation.
        let epoch = resp
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| anyhow::anyhow!("etcd answered a transaction without a header"))?;
        Ok(Some(epoch))
    }

    /// Gives `shard` up, if the claim is still the one made at `epoch`; answers whether
    /// it was.
    pub async fn release(&self, shard: u32, epoch: i64) -> Result<bool> {
        let key = self.m.keys.shard(shard);
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                epoch,
            )])
            .and_then([TxnOp::delete(key, None)]);
        let mut client = self.m.client.clone();
        Ok(client.txn(txn).await?.succeeded())
    }

    /// Every claimed shard, by shard.
    pub async fn claims(&self) -> Result<BTreeMap<u32, Claim>> {
        read_claims(&self.m.client, &self.m.keys).await
    }
}

/// Every claimed shard of the cluster under `keys`, by shard.
pub async fn read_claims(client: &Client, keys: &Keys) -> Result<BTreeMap<u32, Claim>> {
    let prefix = keys.shards();
    let mut client = client.clone();
    let resp = client
        .get(prefix.clone(), Some(GetOptions::new().with_prefix()))
        .await?;
    Ok(resp
        .kvs()
        .iter()
        .filter_map(|kv| {
            let shard = kv.key_str().ok()?.strip_prefix(&prefix)?.parse().ok()?;
            let node = kv.value_str().ok()?.to_string();
            Some((
                shard,
                Claim {
                    node,
                    epoch: kv.create_revision(),
                    lease: kv.lease(),
                },
            ))
        })
        .collect())
}

//! The shards this node holds and their epochs: all of them at once for a single node, one
//! by one for a cluster node as etcd grants them (`fence_shard` raises the shard's epoch in
//! `shard_fence`, so that the previous holder's commits are refused from then on).

use super::PostgresStorage;
use crate::id::ObjectKey;
use anyhow::{Context, Result};
use std::sync::RwLock;

/// Held shards: `epochs[s]` is this node's epoch of shard `s`, None when not held.
#[derive(Default)]
pub struct Held {
    // A std RwLock: read for each batch, written when a shard is taken or given up; never
    // held across an await.
    epochs: RwLock<Vec<Option<i64>>>,
    /// A cluster node gives a shard up when fenced; a single node stops.
    cluster: bool,
}

impl Held {
    pub fn new(shards: i32, taken: Option<Vec<i64>>, cluster: bool) -> Held {
        let epochs = match taken {
            Some(e) => e.into_iter().map(Some).collect(),
            None => vec![None; shards.max(1) as usize],
        };
        Held {
            epochs: RwLock::new(epochs),
            cluster,
        }
    }

    pub fn count(&self) -> u32 {
        self.epochs.read().unwrap_or_else(|p| p.into_inner()).len() as u32
    }

    pub fn epoch(&self, shard: u32) -> Option<i64> {
        self.epochs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(shard as usize)
            .copied()
            .flatten()
    }

    pub fn set(&self, shard: u32, epoch: Option<i64>) {
        if let Some(e) = self
            .epochs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(shard as usize)
        {
            *e = epoch;
        }
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }
}

impl PostgresStorage {
    pub(super) fn shard_of(&self, object: &ObjectKey) -> u32 {
        object.shard(self.held.count())
    }

    /// Takes each `(shard, epoch)` (the epoch: etcd's create revision of this node's
    /// claim) whose holder has no newer epoch; answers the shards taken. One statement
    /// for all of them.
    pub(super) fn take_shards(&self, claims: &[(u32, i64)], owner: &str) -> Result<Vec<u32>> {
        let shards: Vec<i32> = claims.iter().map(|(s, _)| *s as i32).collect();
        let epochs: Vec<i64> = claims.iter().map(|(_, e)| *e).collect();
        let rows = self
            .block_on(super::conn::bounded(self.timeout, async {
                let conn = self.writer_for_fence().await?;
                let rows = conn
                    .query(
                        "UPDATE dohost.shard_fence f SET epoch = c.epoch, owner = $3 \
                         FROM unnest($1::integer[], $2::bigint[]) AS c(shard, epoch) \
                         WHERE f.shard = c.shard AND f.epoch < c.epoch RETURNING f.shard",
                        &[&shards, &epochs, &owner],
                    )
                    .await?;
                anyhow::Ok(rows)
            }))
            .with_context(|| format!("cannot fence shards in {}", self.url))?;
        let taken: Vec<u32> = rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect();
        for (shard, epoch) in claims {
            if taken.contains(shard) {
                self.held.set(*shard, Some(*epoch));
            }
        }
        Ok(taken)
    }

    /// Gives `shard` up here (its commits are refused from now on).
    pub(super) fn drop_shard(&self, shard: u32) {
        self.held.set(shard, None);
    }

    /// A connection for a fence update (not the committer's: it may be mid-batch).
    async fn writer_for_fence(&self) -> Result<tokio_postgres::Client> {
        let handle = self.rt().handle().clone();
        handle
            .spawn(super::conn::connect_raw(self.config.clone()))
            .await?
    }
}

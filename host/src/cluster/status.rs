//! `dohost cluster status`: the members, and the shards each holds with their epochs, as
//! etcd records them (read-only: takes no lease).

use super::Keys;
use super::lease::read_members;
use super::shards::{desired_owner, read_claims};
use anyhow::{Context, Result};
use etcd_client::Client;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The cluster under `keys` at the etcd `endpoints`, as text.
pub async fn status(endpoints: &[String], keys: &Keys) -> Result<String> {
    let client = Client::connect(endpoints, None)
        .await
        .with_context(|| format!("cannot reach etcd at {}", endpoints.join(",")))?;
    let members = read_members(&client, keys).await?;
    let claims = read_claims(&client, keys).await?;
    // node → (shards held, lowest epoch, highest epoch)
    let mut held: BTreeMap<&str, (u32, i64, i64)> = BTreeMap::new();
    for claim in claims.values() {
        let e = held
            .entry(claim.node.as_str())
            .or_insert((0, i64::MAX, i64::MIN));
        e.0 += 1;
        e.1 = e.1.min(claim.epoch);
        e.2 = e.2.max(claim.epoch);
    }
    // Shards not (yet) held by the member that should own them: moving after a join or
    // a leave, vacant after a crash until the lease expires.
    let count = shard_count(&claims);
    let to_move = (0..count)
        .filter(|s| {
            let holder = claims.get(s).map(|c| c.node.as_str());
            holder != desired_owner(*s, &members).map(|m| m.node.as_str())
        })
        .count();
    let mut out = format!(
        "{} members, {} shards claimed, {to_move} to move\nnode\taddress\tshards\tepochs\n",
        members.len(),
        claims.len()
    );
    for m in &members {
        let (n, lo, hi) = held.get(m.node.as_str()).copied().unwrap_or((0, 0, 0));
        let epochs = if n == 0 {
            "-".to_string()
        } else {
            format!("{lo}..{hi}")
        };
        writeln!(out, "{}\t{}\t{n}\t{epochs}", m.node, m.addr)?;
    }
    for (node, (n, _, _)) in &held {
        if !members.iter().any(|m| m.node == *node) {
            writeln!(out, "{node}\t(not a member: its lease is expiring)\t{n}\t-")?;
        }
    }
    Ok(out)
}

/// How many shards the cluster has, as far as etcd tells (it holds claims, not the count,
/// which is the database's): one past the highest claimed. A vacant shard above every
/// claimed one is not counted as one to move.
fn shard_count(claims: &BTreeMap<u32, super::Claim>) -> u32 {
    claims.keys().next_back().map_or(0, |s| s + 1)
}

//! The cluster's coordination against a real etcd: members and their leases, shards owned
//! by their rendezvous owner with growing epochs, a dead member's shards freed by etcd, a
//! member that loses etcd counting itself dead before etcd can expire it, and a leave that
//! frees everything at once.

mod common;
use common::etcd::Etcd;
use common::proxy::Proxy;
use common::*;
use dohost::cluster::{Keys, Membership, desired_owner};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(3);

async fn join(endpoint: &str, node: &str) -> Membership {
    Membership::join(
        &[endpoint.to_string()],
        Keys::new("/dohost-test"),
        node,
        &format!("{node}.example:8787"),
        TTL,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn shards_go_to_their_rendezvous_owner_and_epochs_grow() {
    let etcd = Etcd::start().await;
    let a = join(&etcd.client_url, "a").await;
    let b = join(&etcd.client_url, "b").await;
    let members = a.members().await.unwrap();
    assert_eq!(
        members.iter().map(|m| m.node.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(members[1].addr, "b.example:8787");
    let mut epochs = Vec::new();
    for shard in 0..32 {
        let owner = desired_owner(shard, &members).unwrap();
        let (mine, other) = if owner.node == "a" {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let epoch = mine.shards().claim(shard).await.unwrap().expect("vacant");
        assert_eq!(other.shards().claim(shard).await.unwrap(), None, "held");
        epochs.push(epoch);
    }
    assert!(
        epochs.windows(2).all(|w| w[0] < w[1]),
        "epochs grow: {epochs:?}"
    );
    let claims = a.shards().claims().await.unwrap();
    assert_eq!(claims.len(), 32);
    for (shard, claim) in &claims {
        assert_eq!(claim.node, desired_owner(*shard, &members).unwrap().node);
        assert_eq!(claim.epoch, epochs[*shard as usize]);
    }
    // Both own some: the hash spreads them.
    assert!(claims.values().any(|c| c.node == "a") && claims.values().any(|c| c.node == "b"));

    // A release only deletes the claim it names.
    let (shard, claim) = claims.iter().find(|(_, c)| c.node == "a").unwrap();
    assert!(!a.shards().release(*shard, claim.epoch + 1).await.unwrap());
    assert!(a.shards().release(*shard, claim.epoch).await.unwrap());
    let again = b
        .shards()
        .claim(*shard)
        .await
        .unwrap()
        .expect("vacant again");
    assert!(again > claim.epoch, "a new claim has a newer epoch");
}

#[tokio::test]
async fn a_dead_members_shards_are_freed_by_etcd_and_a_leave_frees_them_at_once() {
    let etcd = Etcd::start().await;
    let dead = join(&etcd.client_url, "dead").await;
    let left = join(&etcd.client_url, "left").await;
    let alive = join(&etcd.client_url, "alive").await;
    let old = dead.shards().claim(7).await.unwrap().unwrap();
    left.shards().claim(8).await.unwrap().unwrap();
    // A crash: no more keepalives, no revoke.
    drop(dead);
    left.leave().await.unwrap();
    let claims = alive.shards().claims().await.unwrap();
    assert!(!claims.contains_key(&8), "a leave frees its shards at once");
    assert!(
        claims.contains_key(&7),
        "a crashed member's lease has not expired yet"
    );
    wait_until("etcd expired the dead member's lease", || async {
        !alive.shards().claims().await.unwrap().contains_key(&7)
    })
    .await;
    let members = alive.members().await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    let new = alive.shards().claim(7).await.unwrap().unwrap();
    assert!(new > old);
}

/// A member cut off from etcd counts itself dead (and so stops serving) before etcd can
/// have expired its lease and let another member claim its shards.
#[tokio::test]
async fn a_member_cut_from_etcd_is_dead_before_its_lease_can_expire() {
    let etcd = Etcd::start().await;
    let target: std::net::SocketAddr = etcd.client_url["http://".len()..].parse().unwrap();
    let proxy = Proxy::start(target).await;
    let cut = join(&format!("http://{}", proxy.addr), "cut").await;
    let watcher = join(&etcd.client_url, "watcher").await;
    cut.shards().claim(1).await.unwrap().unwrap();
    assert!(cut.is_live());
    proxy.cut();
    wait_until("the cut member counts itself dead", || async {
        !cut.is_live()
    })
    .await;
    assert!(
        watcher.shards().claims().await.unwrap().contains_key(&1),
        "etcd still holds the shard for the cut member when it gives up"
    );
    assert_eq!(watcher.shards().claim(1).await.unwrap(), None);
    wait_until("etcd expired the cut member's lease", || async {
        !watcher.shards().claims().await.unwrap().contains_key(&1)
    })
    .await;
    assert!(!cut.is_live());
}

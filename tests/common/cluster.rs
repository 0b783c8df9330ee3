//! Watching a test cluster through `dohost cluster status`: what it prints, and waiting
//! until every member holds its shards.

/// What `dohost cluster status` prints for the cluster on `etcd`.
pub fn cluster_status(etcd: &str) -> String {
    super::process::run_dohost(["cluster", "status", "--cluster", etcd])
}

/// Waits until `members` members hold all 256 shards between them, each the shards it
/// should: joins have been handed their shards, so no shard is moving while the test runs
/// its workload.
pub async fn settled(etcd: &str, members: usize) {
    super::wait_until("every member holds its shards", || async {
        cluster_status(etcd)
            .starts_with(&format!("{members} members, 256 shards claimed, 0 to move"))
    })
    .await;
}

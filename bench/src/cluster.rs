//! The cluster rig for the bench: a real etcd (Debian's `etcd-server`) and three dohost
//! nodes on the bench's PostgreSQL; what a forwarded request costs against a local one, and
//! how long a killed node's objects go unserved.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use tokio::process::{Child, Command};

use crate::servers::{Kind, Paths, Server};

pub const NODES: usize = 3;

/// A one-member etcd in the bench's work directory, killed when dropped.
pub struct Etcd {
    pub url: String,
    _child: Child,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Etcd {
    pub async fn start(paths: &Paths) -> Result<Etcd> {
        let dir = paths.work.join("etcd");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let (client, peer) = (free_port()?, free_port()?);
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(paths.work.join("etcd.log"))?;
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting etcd (Debian's etcd-server: `make bench-deps`)")?;
        let etcd = Etcd { url, _child: child };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = client.get(format!("{}/health", etcd.url)).send().await;
            if let Ok(r) = health
                && r.text().await.is_ok_and(|t| t.contains("true"))
            {
                return Ok(etcd);
            }
            if Instant::now() > deadline {
                bail!("etcd did not become healthy within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Three nodes; `nodes[i]` is None while node i is down.
pub struct Cluster {
    pub etcd: Etcd,
    pub nodes: Vec<Option<Server>>,
    storage: String,
    max_live: u32,
    dohost: PathBuf,
}

fn node_id(i: usize) -> String {
    format!("n{}", i + 1)
}

impl Cluster {
    pub async fn start(paths: &Paths, storage: &str, max_live: u32) -> Result<Cluster> {
        let _ = std::fs::remove_dir_all(paths.data(Kind::DohostCluster));
        let etcd = Etcd::start(paths).await?;
        let mut cluster = Cluster {
            etcd,
            nodes: (0..NODES).map(|_| None).collect(),
            storage: storage.to_string(),
            max_live,
            dohost: paths.dohost(),
        };
        for i in 0..NODES {
            cluster.launch(paths, i).await?;
        }
        cluster.settled().await?;
        Ok(cluster)
    }

    async fn launch(&mut self, paths: &Paths, i: usize) -> Result<()> {
        let id = node_id(i);
        let node = Server::start_node(
            Kind::DohostCluster,
            paths,
            self.max_live,
            Some(&self.storage),
            Some((&self.etcd.url, &id)),
        )
        .await?;
        self.nodes[i] = Some(node);
        Ok(())
    }

    pub fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("node is up")
    }

    /// Waits until every up node holds exactly the shards it should.
    pub async fn settled(&self) -> Result<()> {
        let up = self.nodes.iter().flatten().count();
        let want = format!("{up} members, 256 shards claimed, 0 to move");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(&self.dohost)
                .args(["cluster", "status", "--cluster", &self.etcd.url])
                .output()
                .await?;
            if String::from_utf8_lossy(&out.stdout).starts_with(&want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the cluster did not settle in 60 s:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sequential GETs through node 0 to `n` warm counters, split by who served each (the
    /// `x-dohost-served-by` header): (answered by node 0 itself, forwarded to another).
    pub async fn latencies(&self, n: u32) -> Result<(Vec<Duration>, Vec<Duration>)> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let entry = self.node(0);
        let url = |i: u32| entry.url(&format!("/counter/lat-{i}/get"));
        for i in 0..n {
            client.get(url(i)).send().await?.error_for_status()?;
        }
        let (mut local, mut forwarded) = (Vec::new(), Vec::new());
        for i in 0..n {
            let start = Instant::now();
            let r = client.get(url(i)).send().await?.error_for_status()?;
            let here = served_by(&r)? == node_id(0);
            r.bytes().await?;
            let took = start.elapsed();
            if here {
                local.push(took);
            } else {
                forwarded.push(took);
            }
        }
        Ok((local, forwarded))
    }

    /// `rounds` times: SIGKILL node 1 or 2 in turn, then time, for each of the counters
    /// `objects` it served, how long after the kill node 0 first answers for it; then
    /// start the node again and wait for the cluster to settle. Each moved counter's
    /// value must be what it was before the kill.
    pub async fn failover(
        &mut self,
        paths: &Paths,
        rounds: usize,
        objects: u32,
    ) -> Result<Vec<Duration>> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()?;
        let mut times = Vec::new();
        for round in 0..rounds {
            let victim = 1 + round % (NODES - 1);
            let entry = self.node(0).addr;
            // Which counters the victim serves, each written once this round.
            let mut served = Vec::new();
            for i in 0..objects {
                let url = format!("http://{entry}/counter/fo-{i}/increment");
                let r = client.get(&url).send().await?.error_for_status()?;
                if served_by(&r)? == node_id(victim) {
                    let value: i64 = r.text().await?.trim().parse()?;
                    served.push((i, value));
                }
            }
            let killed_at = Instant::now();
            self.nodes[victim].take().expect("up").kill().await?;
            let waits = futures::stream::iter(served)
                .map(|(i, value)| {
                    let client = client.clone();
                    let url = format!("http://{entry}/counter/fo-{i}/get");
                    async move {
                        loop {
                            if let Ok(r) = client.get(&url).send().await
                                && r.status().is_success()
                            {
                                let took = killed_at.elapsed();
                                let now: i64 = r.text().await?.trim().parse()?;
                                if now != value {
                                    bail!("fo-{i} read {now} after failover, {value} before");
                                }
                                return Ok(took);
                            }
                            if killed_at.elapsed() > Duration::from_secs(60) {
                                bail!("fo-{i} was not served again within 60 s");
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                })
                .buffer_unordered(64)
                .collect::<Vec<Result<Duration>>>()
                .await;
            for w in waits {
                times.push(w?);
            }
            self.launch(paths, victim).await?;
            self.settled().await?;
        }
        Ok(times)
    }

    pub async fn stop(self) -> Result<()> {
        for node in self.nodes.into_iter().flatten() {
            node.kill().await?;
        }
        Ok(())
    }
}

fn served_by(r: &reqwest::Response) -> Result<String> {
    let tag = r
        .headers()
        .get("x-dohost-served-by")
        .context("a cluster node's answer without x-dohost-served-by")?
        .to_str()?;
    Ok(tag.split('@').next().unwrap_or_default().to_string())
}

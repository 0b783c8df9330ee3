//! A real etcd for the tests (Debian's `etcd-server`): one member per test that asks,
//! started from a temp data dir on free loopback ports, stopped by its PID when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Etcd {
    pub client_url: String,
    child: Child,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

/// Debian's etcd-server puts `etcd` on the PATH; `DOHOST_ETCD` overrides.
fn binary() -> PathBuf {
    PathBuf::from(std::env::var("DOHOST_ETCD").unwrap_or_else(|_| "etcd".into()))
}

impl Etcd {
    /// Starts a one-member etcd and waits until it answers its health check.
    pub async fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (client, peer) = (super::free_port(), super::free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args: Vec<String> = [
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("default={peer_url}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let child = spawn(&args, dir.path());
        let etcd = Etcd {
            client_url,
            child,
            args,
            dir,
        };
        etcd.healthy().await;
        etcd
    }

    async fn healthy(&self) {
        let health = format!("{}/health", self.client_url);
        let c = reqwest::Client::new();
        super::wait_until("etcd answers its health check", || async {
            match c.get(&health).send().await {
                Ok(r) => r.text().await.is_ok_and(|t| t.contains("true")),
                Err(_) => false,
            }
        })
        .await;
    }

    /// Kills etcd (SIGKILL); it keeps its data for `restart`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts etcd again on the same ports and data.
    pub async fn restart(&mut self) {
        self.child = spawn(&self.args, self.dir.path());
        self.healthy().await;
    }
}

fn spawn(args: &[String], dir: &std::path::Path) -> Child {
    Command::new(binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("etcd.log"))
                .unwrap(),
        )
        .spawn()
        .expect("start etcd (Debian's etcd-server: run `make test-deps`)")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The three servers under test: how each is started, known ready, measured and killed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// Which runtime a server is; each has its own URL shape for the same counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Dohost,
    /// dohost with its data in PostgreSQL (`--storage`).
    DohostPostgres,
    /// A node of a three-node dohost cluster on PostgreSQL and etcd.
    DohostCluster,
    Workerd,
    Hello,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Dohost => "dohost",
            Kind::DohostPostgres => "dohost-postgres",
            Kind::DohostCluster => "dohost-cluster",
            Kind::Workerd => "workerd",
            Kind::Hello => "axum hello",
        }
    }

    /// The path that reaches `action` on the counter named `name`: dohost's default routes
    /// put the binding first, the workerd front worker routes `/{name}/{action}`.
    pub fn counter_path(self, name: &str, action: &str) -> String {
        match self {
            Kind::Dohost | Kind::DohostPostgres | Kind::DohostCluster => {
                format!("/counter/{name}/{action}")
            }
            Kind::Workerd | Kind::Hello => format!("/{name}/{action}"),
        }
    }

    /// The WebSocket path that joins the broadcast room `room` as `member`.
    pub fn room_path(self, room: &str, member: &str) -> String {
        match self {
            Kind::Dohost | Kind::DohostPostgres | Kind::DohostCluster => {
                format!("/chat-room/{room}/ws?name={member}")
            }
            Kind::Workerd | Kind::Hello => format!("/{room}/ws?name={member}"),
        }
    }
}

/// Where the pieces are, all under the repository root.
pub struct Paths {
    pub root: PathBuf,
    pub work: PathBuf,
}

impl Paths {
    pub fn dohost(&self) -> PathBuf {
        self.root.join("target/release/dohost")
    }
    pub fn hello(&self) -> PathBuf {
        self.root.join("target/release/bench-hello")
    }
    pub fn guest(&self, name: &str) -> PathBuf {
        self.root.join("target/guests").join(format!("{name}.wasm"))
    }
    /// The workerd binary itself, not npm's node launcher, so the pid we measure is workerd's.
    pub fn workerd(&self) -> PathBuf {
        self.root
            .join("bench/node_modules/@cloudflare/workerd-linux-64/bin/workerd")
    }
    pub fn workerd_dir(&self) -> PathBuf {
        self.root.join("bench/workerd")
    }
    pub fn data(&self, kind: Kind) -> PathBuf {
        self.work
            .join(format!("data-{}", kind.label().replace(' ', "-")))
    }
    pub fn log(&self, kind: Kind) -> PathBuf {
        self.work
            .join(format!("{}.log", kind.label().replace(' ', "-")))
    }
}

/// A running server process.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Child,
}

/// A port the kernel just handed out on loopback; servers here take a fixed `--listen`.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Server {
    /// Start `kind` on a fresh loopback port with its data in `paths.data(kind)` (kept, so a
    /// restart after a kill finds what was acknowledged), and wait until it answers.
    pub async fn start(kind: Kind, paths: &Paths, max_live: u32) -> Result<Server> {
        Self::start_with(kind, paths, max_live, None).await
    }

    /// Like `start`; dohost keeps its objects' data in the PostgreSQL at `storage`.
    pub async fn start_with(
        kind: Kind,
        paths: &Paths,
        max_live: u32,
        storage: Option<&str>,
    ) -> Result<Server> {
        Self::start_node(kind, paths, max_live, storage, None).await
    }

    /// Like `start_with`; with `cluster` (etcd's URL, the node's ID), a cluster node, with
    /// a data directory and log of its own.
    pub async fn start_node(
        kind: Kind,
        paths: &Paths,
        max_live: u32,
        storage: Option<&str>,
        cluster: Option<(&str, &str)>,
    ) -> Result<Server> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let (data, log_path) = match cluster {
            Some((_, node)) => (
                paths.data(kind).join(node),
                paths.work.join(format!("{}-{node}.log", kind.label())),
            ),
            None => (paths.data(kind), paths.log(kind)),
        };
        std::fs::create_dir_all(&data)?;
        let cmd = match kind {
            Kind::Dohost | Kind::DohostPostgres | Kind::DohostCluster => {
                let mut c = Command::new(paths.dohost());
                if let Some(url) = storage {
                    c.arg("run").arg("--storage").arg(url);
                } else {
                    c.arg("run");
                }
                if let Some((etcd, node)) = cluster {
                    c.args(["--cluster", etcd, "--node-id", node, "--cluster-secret"])
                        .arg("bench")
                        .arg("--advertise")
                        .arg(addr.to_string());
                }
                c.args(["--admin", "off", "--listen"])
                    .arg(addr.to_string())
                    .arg("--data")
                    .arg(&data)
                    .arg("--max-live-objects")
                    .arg(max_live.to_string())
                    .arg(paths.guest("counter"))
                    .arg(paths.guest("chat-room"));
                c
            }
            Kind::Workerd => {
                let mut c = Command::new(paths.workerd());
                c.current_dir(paths.workerd_dir())
                    .arg("serve")
                    .arg("config.capnp")
                    .arg("--socket-addr")
                    .arg(format!("http={addr}"))
                    .arg("--directory-path")
                    .arg(format!("do-storage={}", data.display()));
                c
            }
            Kind::Hello => {
                let mut c = Command::new(paths.hello());
                c.arg(addr.to_string());
                c
            }
        };
        Self::spawn(kind, cmd, addr, &log_path).await
    }

    /// dohost serving the counter and `guests` with extra `flags`, its data and log named
    /// after `name`: for the bounds and scale tables.
    pub async fn start_flagged(
        paths: &Paths,
        name: &str,
        flags: &[String],
        guests: &[&str],
    ) -> Result<Server> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let data = paths.work.join(format!("data-{name}"));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)?;
        let mut cmd = Command::new(paths.dohost());
        cmd.arg("run");
        // The admin API only where the flags ask for it.
        if !flags.iter().any(|f| f == "--admin") {
            cmd.args(["--admin", "off"]);
        }
        cmd.arg("--listen")
            .arg(addr.to_string())
            .arg("--data")
            .arg(&data)
            .args(flags)
            .arg(paths.guest("counter"))
            .args(guests.iter().map(|g| paths.guest(g)));
        let log_path = paths.work.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&log_path);
        Self::spawn(Kind::Dohost, cmd, addr, &log_path).await
    }

    /// Starts `cmd` with its output in `log_path` and waits until it answers.
    async fn spawn(
        kind: Kind,
        mut cmd: Command,
        addr: SocketAddr,
        log_path: &Path,
    ) -> Result<Server> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", kind.label()))?;
        let mut server = Server { kind, addr, child };
        server.wait_ready(log_path).await?;
        Ok(server)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Ready means it answered an HTTP request (a first dohost start compiles its guests).
    async fn wait_ready(&mut self, log: &Path) -> Result<()> {
        let client = reqwest::Client::new();
        let url = self.url(&self.kind.counter_path("ready-probe", "nothing"));
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before it was ready; see {}",
                    self.kind.label(),
                    log.display()
                );
            }
            if client.get(&url).send().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not answer within 300 s", self.kind.label());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resident memory of the server process, in KiB, from /proc.
    pub fn rss_kib(&self) -> Result<u64> {
        self.proc_kib("status", "VmRSS:")
    }

    /// Proportional memory of the server process, in KiB: resident pages with those
    /// mapped more than once (one module image shared by every instance) counted once.
    pub fn pss_kib(&self) -> Result<u64> {
        self.proc_kib("smaps_rollup", "Pss:")
    }

    /// The `field` line (`NAME:   N kB`) of `/proc/PID/{file}`, in KiB.
    fn proc_kib(&self, file: &str, field: &str) -> Result<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/{file}", self.pid()))?;
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc/PID/{file}"))
    }

    /// SIGKILL: no shutdown hook runs, so what survives is only what was on disk.
    pub async fn kill(mut self) -> Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}

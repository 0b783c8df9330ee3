//! Shared helpers for the end-to-end tests: build the guests once, start a real dohost on
//! 127.0.0.1:0 with a data directory, talk to it with reqwest.
#![allow(dead_code)]

pub mod cluster;
pub mod etcd;
pub mod history;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod sse;

use dohost::services::scheduler::Clock;
use dohost::{ClassConfig, Config, Limits};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use tokio::sync::oneshot;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The path of a built guest, building all of them (once per test binary) with the same
/// command as `make guests`.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = std::process::Command::new("make")
            .arg("-s")
            .arg("guests")
            .current_dir(repo_root())
            .status()
            .expect("run `make guests`");
        assert!(status.success(), "`make guests` failed");
    });
    let path = repo_root()
        .join("target/guests")
        .join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A loopback port the kernel just handed out (for servers that take a fixed port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The storage backend a test runs against: each storage-touching test body runs on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Redb,
    Postgres,
}

/// Which database stands behind a data directory, for the Postgres runs (a test's data
/// directory is its store: `config` and `storage_args` look it up here).
static DATABASES: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());

impl Backend {
    /// A fresh data directory; on Postgres, with a fresh database behind it.
    pub fn data_dir(self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if self == Backend::Postgres {
            let url = postgres::server().fresh_database();
            DATABASES
                .lock()
                .unwrap()
                .push((dir.path().to_path_buf(), url));
        }
        dir
    }
}

/// The database URL standing behind `data` (or a directory inside it), if any.
pub fn database_of(data: &Path) -> Option<String> {
    DATABASES
        .lock()
        .unwrap()
        .iter()
        .find(|(dir, _)| data.starts_with(dir))
        .map(|(_, url)| url.clone())
}

/// The `dohost run` flags that select the store behind `data`.
pub fn storage_args(data: &Path) -> Vec<String> {
    match database_of(data) {
        Some(url) => vec!["--storage".into(), url],
        None => Vec::new(),
    }
}

/// Held by the tests that push the host hardest (10,000 objects through the instance
/// pool): two of them at once in one process contend on its memory mappings far more
/// than twice, so they take turns.
pub async fn heavy_test() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// Runs each named `async fn(Backend)` as two tests, `on_redb::NAME` and `on_postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Redb).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A running dohost.
pub struct TestHost {
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub runtime: Option<Arc<dohost::Runtime>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Live-object slots of an in-process test host whose test does not ask for a number.
/// Left unset, a host sizes its pool from the memory mappings the process has left, and the
/// tests of one binary run side by side in one process: a fixed pool keeps each test's
/// share the same however many run at once. Sizing from the machine is tested on real
/// processes (`tests/config.rs`) and in `wasm::engine`'s unit tests.
const TEST_LIVE_OBJECTS: u32 = 1000;

pub fn config(guests: &[&str], data: &Path, limits: Limits) -> Config {
    let limits = Limits {
        max_live_objects: limits.max_live_objects.or(Some(TEST_LIVE_OBJECTS)),
        ..limits
    };
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data.to_path_buf(),
        storage: database_of(data),
        classes: guests
            .iter()
            .map(|g| ClassConfig {
                binding: g.to_string(),
                class_name: g.to_string(),
                component: guest(g),
            })
            .collect(),
        limits,
        script: "default".to_string(),
        migrations: None,
        vars: Vec::new(),
        worker: None,
        cluster: None,
    }
}

impl TestHost {
    pub async fn start(guests: &[&str], data: &Path) -> TestHost {
        Self::start_with(guests, data, Limits::default()).await
    }

    pub async fn start_with(guests: &[&str], data: &Path, limits: Limits) -> TestHost {
        Self::start_config(config(guests, data, limits)).await
    }

    pub async fn start_config(config: Config) -> TestHost {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let data = config.data_dir.clone();
        let task = tokio::spawn(dohost::run(config, listener, async {
            let _ = stopped.await;
        }));
        TestHost {
            addr,
            data,
            runtime: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Starts on the system clock, keeping a handle on the runtime for its counters.
    pub async fn start_observed(guests: &[&str], data: &Path, limits: Limits) -> TestHost {
        Self::start_clocked(
            config(guests, data, limits),
            Arc::new(dohost::services::scheduler::SystemClock),
        )
        .await
    }

    /// Starts with an injected clock, keeping a handle on the runtime for its counters.
    pub async fn start_clocked(config: Config, clock: Arc<dyn Clock>) -> TestHost {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let data = config.data_dir.clone();
        let runtime = dohost::Runtime::start_with_clock(&config, clock).expect("start");
        let task = tokio::spawn(dohost::serve(runtime.clone(), listener, async {
            let _ = stopped.await;
        }));
        TestHost {
            addr,
            data,
            runtime: Some(runtime),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn runtime(&self) -> &Arc<dohost::Runtime> {
        self.runtime.as_ref().expect("started with start_clocked")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the host and waits until its database is closed.
    pub async fn stop(mut self) {
        self.runtime = None;
        let _ = self.stop.take().unwrap().send(());
        self.task
            .take()
            .unwrap()
            .await
            .expect("host task")
            .expect("host ran cleanly");
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap()
}

/// GET, answering (status, body text).
pub async fn get(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c.get(url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// POST with a body, answering (status, body text).
pub async fn post(c: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let r = c.post(url).body(body).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// Polls `check` until it holds; fails the test after `what` has not happened in a minute.
/// For conditions that have no event to wait on (work done by background tasks).
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..6000 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A WebSocket client connection (tokio-tungstenite).
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `path` on the host, expecting 101.
pub async fn connect(host: &TestHost, path: &str) -> Ws {
    let url = format!("ws://{}{}", host.addr, path);
    let (ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    assert_eq!(response.status(), 101);
    ws
}

/// The next text message, within ten seconds.
pub async fn next_text(ws: &mut Ws) -> String {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a valid message");
        match m {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Holds the lock `name` and queues a second acquirer behind it; returns the waiter's
/// request once the lock counts it as waiting.
pub async fn lock_with_waiter(
    c: &reqwest::Client,
    host: &TestHost,
    name: &str,
) -> tokio::task::JoinHandle<(u16, String)> {
    let acquire = host.url(&format!("/lock/{name}/acquire"));
    assert_eq!(post(c, &acquire, "").await.1, "Locked");
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { post(&c, &acquire, "").await })
    };
    let status = host.url(&format!("/lock/{name}/status"));
    wait_until("the second acquire waits", || async {
        get(c, &status).await.1.contains("\"waiting\":1")
    })
    .await;
    waiter
}

/// Runs an awaited storage call to its end from a synchronous test, on a runtime of its own
/// as the host's calls run on one (PostgreSQL's exchanges are bounded by its timers).
pub fn now<F: std::future::Future>(f: F) -> F::Output {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
        })
        .block_on(f)
}

/// Runs a model test: `test` on cases of `strategy`, `default_cases` of them (or the number
/// in the environment variable `env`), from a fixed `seed`, so every run checks the same
/// cases and a failure reproduces; proptest shrinks a failing one.
pub fn run_seeded<S: proptest::strategy::Strategy>(
    env: &str,
    seed: u8,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
) {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let cases: u32 = std::env::var(env)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]);
    TestRunner::new_with_rng(config, rng)
        .run(&strategy, test)
        .unwrap();
}

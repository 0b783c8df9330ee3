//! The harness: one builder, and a running host on a manual clock with the operations a
//! test needs (requests, sockets, time, alarms, eviction, restart, a look at storage).

use crate::client::{Request, Response, WebSocket};
use crate::component::build_crate;
use dohost::services::scheduler::{Clock, ManualClock};
use dohost::{ClassConfig, Config, Limits, Runtime};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a call may wait on the host (a response, a WebSocket message, alarms to run)
/// before the test fails instead of hanging.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sets up a [`Harness`]: which objects to serve, variables, limits, the clock's start.
#[derive(Default)]
pub struct Builder {
    objects: Vec<(Option<String>, PathBuf)>,
    crates: Vec<PathBuf>,
    worker: Option<PathBuf>,
    vars: Vec<(String, String)>,
    limits: Option<Limits>,
    start_ms: Option<u64>,
    timeout: Option<Duration>,
}

impl Builder {
    /// Serves the component at `path` with the binding `dohost run` gives it: the file's
    /// stem (`counter.wasm` answers at `/counter/{name}/...`).
    pub fn object(mut self, path: impl AsRef<Path>) -> Builder {
        self.objects.push((None, path.as_ref().to_path_buf()));
        self
    }

    /// Serves the component at `path` as `binding`.
    pub fn object_as(mut self, binding: &str, path: impl AsRef<Path>) -> Builder {
        self.objects
            .push((Some(binding.to_string()), path.as_ref().to_path_buf()));
        self
    }

    /// Builds the object crate at `dir` (`cargo build --release --target wasm32-wasip2`)
    /// and serves what it builds, named by file stem: cargo writes `todo_list.wasm` for a
    /// crate named `todo-list`, served as `/todo_list/...`. From a crate's own tests:
    /// `.crate_dir(env!("CARGO_MANIFEST_DIR"))`.
    pub fn crate_dir(mut self, dir: impl AsRef<Path>) -> Builder {
        self.crates.push(dir.as_ref().to_path_buf());
        self
    }

    /// A stateless worker component that receives every public request.
    pub fn worker(mut self, path: impl AsRef<Path>) -> Builder {
        self.worker = Some(path.as_ref().to_path_buf());
        self
    }

    /// A variable for every object's `Env` (as `--var NAME=VALUE`).
    pub fn var(mut self, name: &str, value: &str) -> Builder {
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    /// The host's limits (default: `dohost run`'s defaults).
    pub fn limits(mut self, limits: Limits) -> Builder {
        self.limits = Some(limits);
        self
    }

    /// Where the clock starts, in milliseconds since the Unix epoch (default: the real
    /// time at start). It moves only with [`Harness::advance`].
    pub fn start_time_ms(mut self, ms: u64) -> Builder {
        self.start_ms = Some(ms);
        self
    }

    /// How long a call waits on the host before the test fails (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Builder {
        self.timeout = Some(timeout);
        self
    }

    /// Starts the host; panics with the reason when it cannot (a component that does not
    /// build or load, a bad binding name).
    pub fn start(self) -> Harness {
        self.try_start()
            .unwrap_or_else(|e| panic!("the harness could not start: {e:#}"))
    }

    /// [`Builder::start`], returning the error instead.
    pub fn try_start(self) -> anyhow::Result<Harness> {
        init_logging();
        let mut components = Vec::new();
        for dir in &self.crates {
            components.extend(build_crate(dir)?);
        }
        let named: Vec<PathBuf> = self
            .objects
            .iter()
            .filter(|(binding, _)| binding.is_none())
            .map(|(_, path)| path.clone())
            .chain(components)
            .collect();
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: PathBuf::new(),
            storage: None,
            classes: Vec::new(),
            limits: self.limits.unwrap_or_default(),
            script: dohost::config::DEFAULT_SCRIPT.to_string(),
            migrations: None,
            vars: self.vars,
            worker: self.worker,
            cluster: None,
        };
        if !named.is_empty() {
            config.classes = Config::from_components(&named)?.classes;
        }
        for (binding, path) in &self.objects {
            if let Some(binding) = binding {
                config.classes.push(ClassConfig {
                    binding: binding.clone(),
                    class_name: binding.clone(),
                    component: path.clone(),
                });
            }
        }
        anyhow::ensure!(
            !config.classes.is_empty() || config.worker.is_some(),
            "nothing to serve: give the builder an object, a crate or a worker"
        );
        let data = tempfile::tempdir()?;
        share_code_cache(data.path())?;
        config.data_dir = data.path().to_path_buf();
        let clock = ManualClock::new(
            self.start_ms
                .unwrap_or_else(|| dohost::services::scheduler::SystemClock.now_ms()),
        );
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let host = tokio.block_on(Host::start(&config, clock.clone()))?;
        Ok(Harness {
            tokio,
            clock,
            config,
            host: Some(host),
            http: reqwest::Client::new(),
            timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
            alarms_counted: AtomicU64::new(0),
            _data: data,
        })
    }
}

/// A host serving a test's objects on a loopback port, on a manual clock, with its
/// storage in a temporary directory (removed when the harness is dropped).
pub struct Harness {
    tokio: tokio::runtime::Runtime,
    clock: Arc<ManualClock>,
    config: Config,
    host: Option<Host>,
    http: reqwest::Client,
    timeout: Duration,
    /// The runtime's alarm runs already reported by `run_due_alarms`.
    alarms_counted: AtomicU64,
    _data: tempfile::TempDir,
}

/// One run of the host (a restart makes another on the same storage).
struct Host {
    runtime: Arc<Runtime>,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Host {
    async fn start(config: &Config, clock: Arc<ManualClock>) -> anyhow::Result<Host> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let runtime = Runtime::start_with_clock(config, clock)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(dohost::serve(runtime.clone(), listener, async {
            let _ = stopped.await;
        }));
        Ok(Host {
            runtime,
            addr,
            stop,
            served,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.served.await?
    }
}

impl Harness {
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn host(&self) -> &Host {
        self.host.as_ref().expect("the host runs between calls")
    }

    /// The running host's runtime, for what the harness does not wrap.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.host().runtime
    }

    /// `http://127.0.0.1:PORT{path}`: the host's address, for clients of your own.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host().addr)
    }

    /// Sends `request` and waits for the answer (which leaves the host only once the
    /// writes behind it are durable).
    pub fn fetch(&self, request: Request) -> Response {
        self.send(request).wait()
    }

    /// Sends `request` without waiting: for answers that come later (a deferred response,
    /// such as a lock's waiter), while the test goes on.
    pub fn send(&self, request: Request) -> Pending {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .unwrap_or_else(|_| panic!("{:?} is not an HTTP method", request.method));
        let mut builder = self
            .http
            .request(method, self.url(&request.path))
            .timeout(self.timeout)
            .body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let answer = self.tokio.spawn(async move {
            let answer = builder.send().await?;
            let status = answer.status().as_u16();
            let headers = answer
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = answer.bytes().await?.to_vec();
            Ok(Response {
                status,
                headers,
                body,
            })
        });
        Pending {
            path: request.path,
            answer,
            tokio: self.tokio.handle().clone(),
        }
    }

    pub fn get(&self, path: &str) -> Response {
        self.fetch(Request::get(path))
    }

    pub fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> Response {
        self.fetch(Request::post(path).body(body))
    }

    /// Opens a WebSocket to `path` (e.g. `/chat/lobby/ws`); panics when the object does not
    /// accept it.
    pub fn websocket(&self, path: &str) -> WebSocket {
        let url = format!("ws://{}{path}", self.host().addr);
        WebSocket::connect(&url, self.timeout)
            .unwrap_or_else(|e| panic!("{path}: no WebSocket: {e}"))
    }

    /// The clock's time, in milliseconds since the Unix epoch (what objects read too).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Moves the clock forward. Alarms that come due are started at once; call
    /// [`Harness::run_due_alarms`] to wait for them.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Waits until every alarm due at the clock's current time has run and its writes are
    /// durable, and returns how many handler runs there were since the last call (failed
    /// runs count; their retries are due later, after [`Harness::advance`]). Alarms start
    /// as soon as they come due; this waits for them and counts them. 0 when none was due.
    pub fn run_due_alarms(&self) -> u64 {
        let runtime = self.runtime().clone();
        let timeout = self.timeout;
        self.tokio.block_on(async {
            let waited = tokio::time::timeout(timeout, async {
                while !runtime.scheduler().settled() {
                    // The scheduler and the objects run on the harness's threads: look
                    // again once they have had a moment.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            if waited.is_err() {
                panic!("due alarms still running after {timeout:?}");
            }
        });
        let attempts = runtime.alarm_runs() + runtime.alarm_failures();
        attempts - self.alarms_counted.swap(attempts, Ordering::SeqCst)
    }

    /// Drops the object's live instance (as when it idles out), keeping its storage and
    /// sockets: the next event builds a new one. False when it was never started.
    pub fn evict(&self, binding: &str, name: &str) -> bool {
        self.runtime().evict(binding, name)
    }

    /// Stops the host cleanly and starts it again on the same storage and clock. Sockets
    /// are closed (as a real restart closes them).
    pub fn restart(&mut self) {
        let host = self.host.take().expect("the host runs between calls");
        let config = self.config.clone();
        let clock = self.clock.clone();
        let host = self.tokio.block_on(async move {
            host.stop().await.expect("the host stopped cleanly");
            Host::start(&config, clock).await
        });
        self.host = Some(host.unwrap_or_else(|e| panic!("the host did not start again: {e:#}")));
        // A new runtime counts from zero.
        self.alarms_counted.store(0, Ordering::SeqCst);
    }

    /// The object's stored entries (durable ones: what a restart would find).
    pub fn storage(&self, binding: &str, name: &str) -> Stored {
        let runtime = self.runtime().clone();
        let id = runtime
            .id_from_name(binding, name)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut entries = BTreeMap::new();
        let mut range = dohost::runtime::inspect::Range::default();
        loop {
            let page = self
                .tokio
                .block_on(runtime.entries(binding, &id, &range))
                .unwrap_or_else(|e| panic!("reading {binding}/{name}'s storage: {e}"));
            let Some((last, _)) = page.last() else { break };
            // The next page starts just after the last key.
            range.start = Some(format!("{last}\0"));
            entries.extend(page.into_iter().map(|(k, v)| (k, v.to_vec())));
        }
        Stored { entries }
    }

    /// The object's durable alarm, in milliseconds since the Unix epoch.
    pub fn alarm(&self, binding: &str, name: &str) -> Option<u64> {
        let runtime = self.runtime().clone();
        let id = runtime
            .id_from_name(binding, name)
            .unwrap_or_else(|e| panic!("{e}"));
        self.tokio
            .block_on(runtime.alarm_of(binding, &id))
            .unwrap_or_else(|e| panic!("reading {binding}/{name}'s alarm: {e}"))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(host) = self.host.take() {
            let _ = self.tokio.block_on(host.stop());
        }
    }
}

/// A request sent with [`Harness::send`], not yet answered.
pub struct Pending {
    path: String,
    answer: tokio::task::JoinHandle<Result<Response, reqwest::Error>>,
    tokio: tokio::runtime::Handle,
}

impl Pending {
    /// True once the answer has arrived (or the request failed).
    pub fn is_done(&self) -> bool {
        self.answer.is_finished()
    }

    /// Waits for the answer; panics when there is none within the harness's timeout.
    pub fn wait(self) -> Response {
        let path = self.path;
        self.tokio
            .block_on(self.answer)
            .expect("the request's task ran")
            .unwrap_or_else(|e| panic!("{path}: no answer from the host: {e}"))
    }
}

/// An object's stored entries, keys in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub entries: BTreeMap<String, Vec<u8>>,
}

impl Stored {
    /// The value at `key` read as JSON (as the SDKs store values); None when absent.
    /// Panics when the bytes are not that JSON.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.entries.get(key).map(|bytes| {
            serde_json::from_slice(bytes)
                .unwrap_or_else(|e| panic!("the value at {key:?} is not the JSON expected: {e}"))
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Compiled code is cached across harnesses (and test runs) in one directory under the
/// system's temp dir, so each test does not compile its components again.
fn share_code_cache(data: &Path) -> anyhow::Result<()> {
    let shared = std::env::temp_dir().join("dohost-testing-cache");
    std::fs::create_dir_all(&shared)?;
    std::os::unix::fs::symlink(&shared, data.join("cache"))?;
    Ok(())
}

/// Host warnings and the objects' own output (`println!` in a guest) on stderr, once per
/// test binary; `RUST_LOG` chooses otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,dohost::guest=info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

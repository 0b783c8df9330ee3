//! The `dohost` command: parses arguments, sets up logging and calls the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use dohost::{Config, Limits};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Durable Objects on your own machines: serve WebAssembly components with one live
/// instance per object ID, transactional storage and durable writes.
#[derive(Parser)]
#[command(name = "dohost", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve object classes over HTTP. Each COMPONENT.wasm is a class whose binding is the
    /// file's stem: `counter.wasm` answers at /counter/{name}/{path}.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The object components (.wasm) to serve.
    #[arg(required = true, value_name = "COMPONENT.wasm")]
    components: Vec<PathBuf>,

    /// Address of the public HTTP server.
    #[arg(long, default_value = "127.0.0.1:8787", env = "DOHOST_LISTEN")]
    listen: SocketAddr,

    /// Data directory: the database and the compiled-code cache.
    #[arg(long, default_value = "data", env = "DOHOST_DATA")]
    data: PathBuf,

    #[command(flatten)]
    limits: LimitArgs,
}

/// Every limit, with the defaults of the original platform where it has one.
#[derive(Args)]
struct LimitArgs {
    /// Longest storage key, in bytes.
    #[arg(long, default_value_t = Limits::default().max_key_bytes)]
    max_key_bytes: usize,
    /// Largest storage value, in bytes.
    #[arg(long, default_value_t = Limits::default().max_value_bytes)]
    max_value_bytes: usize,
    /// Most keys in one get-many, put-many or delete-many call.
    #[arg(long, default_value_t = Limits::default().max_keys_per_call)]
    max_keys_per_call: usize,
    /// Bytes one object may store (keys plus values).
    #[arg(long, default_value_t = Limits::default().max_object_bytes)]
    max_object_bytes: u64,
    /// Largest HTTP request body, in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// CPU time one event may use, in milliseconds.
    #[arg(long, default_value_t = Limits::default().cpu_per_event.as_millis() as u64)]
    cpu_ms: u64,
    /// Linear memory one instance may use, in bytes.
    #[arg(long, default_value_t = Limits::default().memory_per_instance)]
    memory_bytes: usize,
    /// Seconds without events before an object's instance is evicted.
    #[arg(long, default_value_t = Limits::default().idle_timeout.as_secs_f64())]
    idle_secs: f64,
    /// Instances alive at once.
    #[arg(long, default_value_t = Limits::default().max_live_objects)]
    max_live_objects: u32,
    /// Minimum alarm interval, in milliseconds: an alarm set sooner than this from now is
    /// moved to now plus this (the original platform's figure is 30 s; lower it for
    /// development).
    #[arg(long, default_value_t = Limits::default().min_alarm_interval.as_millis() as u64)]
    min_alarm_interval: u64,
}

impl LimitArgs {
    fn to_limits(&self) -> anyhow::Result<Limits> {
        let idle = Duration::try_from_secs_f64(self.idle_secs)
            .context("--idle-secs must be a non-negative number of seconds")?;
        Ok(Limits {
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            max_keys_per_call: self.max_keys_per_call,
            max_object_bytes: self.max_object_bytes,
            max_body_bytes: self.max_body_bytes,
            cpu_per_event: Duration::from_millis(self.cpu_ms),
            memory_per_instance: self.memory_bytes,
            idle_timeout: idle,
            max_live_objects: self.max_live_objects,
            min_alarm_interval: Duration::from_millis(self.min_alarm_interval),
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dohost: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = Config::from_components(&args.components)?;
    config.listen = args.listen;
    config.data_dir = args.data;
    config.limits = args.limits.to_limits()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let runtime = dohost::Runtime::start(&config)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        tracing::info!(
            address = %listener.local_addr()?,
            bindings = %runtime.bindings().join(", "),
            "dohost is serving"
        );
        dohost::serve(runtime, listener, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: finishing queued events and commits");
}

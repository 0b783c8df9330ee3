//! The `dohost` command: parses arguments, sets up logging and calls the library.

mod cli;

use anyhow::Context;
use cli::args::{ClusterCommand, Command, MigrateArgs, RunArgs, parse_cli};
use dohost::Config;
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: the request path allocates small, short-lived
/// buffers on two threads, where glibc spent about an eighth of the CPU in the profile.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = parse_cli();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Migrate(args) => migrate(args),
        Command::Cluster(ClusterCommand::Status { cluster }) => cluster_status(&cluster),
        Command::Inspect(args) => cli::inspect::inspect(args),
        Command::Backup {
            to,
            admin,
            admin_token_file,
        } => cli::operate::backup(&to, &admin, admin_token_file.as_deref()),
        Command::Deploy {
            binding,
            component,
            admin,
            admin_token_file,
        } => cli::operate::deploy(&binding, &component, &admin, admin_token_file.as_deref()),
        Command::New {
            name,
            path,
            dohost_path,
        } => cli::new::new(&name, path.as_deref(), dohost_path.as_deref()),
        Command::Restore { from, data } => dohost::backend::redb::restore(&from, &data).map(|()| {
            println!("restored {} into {}", from.display(), data.display());
        }),
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
    let mut config = match &args.config {
        Some(file) => dohost::config::file::load(file)?,
        None => Config::from_components(&args.components)?,
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    if args.storage.is_some() {
        config.storage = args.storage;
    }
    if let Some(worker) = args.worker {
        config.worker = Some(worker);
    }
    for var in &args.vars {
        let Some((name, value)) = var.split_once('=') else {
            anyhow::bail!("--var {var:?}: expected NAME=VALUE");
        };
        config.vars.retain(|(n, _)| n != name);
        config.vars.push((name.to_string(), value.to_string()));
    }
    if let Some(etcd) = args.cluster {
        let (Some(node_id), Some(advertise)) = (args.node_id, args.advertise) else {
            anyhow::bail!("--cluster needs --node-id and --advertise");
        };
        config.cluster = Some(dohost::config::ClusterConfig {
            etcd: etcd.split(',').map(str::to_string).collect(),
            node_id,
            advertise,
            secret: args.cluster_secret.unwrap_or_default(),
            lease_ttl: std::time::Duration::from_secs(3),
        });
    }
    args.limits.apply(&mut config.limits)?;
    cli::fds::raise_for(config.limits.max_connections);
    let admin_addr =
        dohost::admin::parse_addr(args.admin.as_deref().unwrap_or(dohost::admin::DEFAULT_ADDR))?;
    let admin_token = args
        .admin_token_file
        .as_deref()
        .map(dohost::admin::read_token)
        .transpose()?;
    let admin_hosts = args.admin_host;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = rt.block_on(async move {
        let runtime = dohost::Runtime::start_node(&config).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        // The admin listener ends with the process.
        if let Some(addr) = admin_addr {
            let admin = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} for the admin API (--admin ADDR, or --admin off)")
            })?;
            let at = admin.local_addr()?;
            if !at.ip().is_loopback() && admin_token.is_none() {
                tracing::warn!(admin = %at, "the admin API listens beyond loopback without a token (--admin-token-file)");
            }
            tracing::info!(admin = %at, "admin API (metrics at /metrics)");
            let access = dohost::admin::Access {
                token: admin_token,
                hosts: admin_hosts,
            };
            tokio::spawn(dohost::admin::serve(admin, runtime.clone(), access));
        }
        tokio::spawn(cli::operate::reload_on_sighup(runtime.clone()));
        tracing::info!(
            address = %listener.local_addr()?,
            bindings = %runtime.bindings().join(", "),
            // As sized at start when not given.
            max_live_objects = runtime.limits().max_live_objects.unwrap_or_default(),
            max_memory = config.limits.max_memory,
            max_long_events = config.limits.max_long_events,
            "dohost is serving"
        );
        dohost::serve(runtime, listener, shutdown_signal()).await
    });
    // `serve` is bounded; a background thread stuck past its deadline (a hung disk under
    // the committer) must not keep the process alive either. Nothing acknowledged waits.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let mut config = dohost::config::file::load(&args.config)?;
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    if args.storage.is_some() {
        config.storage = args.storage;
    }
    let db = dohost::backend::open::storage(
        config.storage.as_deref(),
        &config.data_dir,
        // Migrating takes no shards: a running node keeps serving.
        dohost::backend::Role::Tool,
        config.limits.storage_timeout,
    )?;
    let bound: Vec<(String, String)> = config
        .classes
        .iter()
        .map(|c| (c.binding.clone(), c.class_name.clone()))
        .collect();
    let migrations = config.migrations.unwrap_or_default();
    let report = db.migrate(&config.script, &migrations, &bound, args.dry_run)?;
    if args.dry_run {
        println!("dry run: nothing was changed");
    }
    print!("{report}");
    Ok(())
}

fn cluster_status(etcd: &str) -> anyhow::Result<()> {
    let endpoints: Vec<String> = etcd.split(',').map(str::to_string).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let keys = dohost::cluster::Keys::new(dohost::cluster::KEY_PREFIX);
    print!(
        "{}",
        rt.block_on(dohost::cluster::status::status(&endpoints, &keys))?
    );
    Ok(())
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

//! The other commands that talk to a running node: `dohost backup` and `dohost deploy`
//! through its admin API, and the SIGHUP reload `dohost run` listens for.

use anyhow::Context;

pub fn backup(
    to: &std::path::Path,
    admin: &str,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let token = token_file.map(dohost::admin::read_token).transpose()?;
    let bytes = dohost::admin::client::download_backup(admin, token.as_deref(), to)?;
    println!(
        "backup of {admin} written to {} ({bytes} bytes)",
        to.display()
    );
    Ok(())
}

pub fn deploy(
    binding: &str,
    component: &std::path::Path,
    admin: &str,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let token = token_file.map(dohost::admin::read_token).transpose()?;
    let bytes =
        std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
    let path = format!(
        "/classes/{}/deploy",
        dohost::admin::client::segment(binding)
    );
    let answer =
        dohost::admin::client::request(admin, token.as_deref(), hyper::Method::POST, &path, bytes)?;
    println!("{answer}");
    Ok(())
}

/// SIGHUP: every class whose component file changed gets the new code (see `deploy`).
pub async fn reload_on_sighup(runtime: std::sync::Arc<dohost::Runtime>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let done = runtime.reload().await;
            if done.is_empty() {
                tracing::info!("SIGHUP: no component file changed");
            }
            for (binding, outcome) in done {
                match outcome {
                    Ok(version) => tracing::info!(binding, version, "SIGHUP: new code deployed"),
                    Err(e) => {
                        tracing::error!(binding, error = %e, "SIGHUP: the new code was refused; the old serves on")
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = runtime;
}

//! The command-line client of the admin API: `dohost inspect` prints its JSON answers,
//! `dohost backup` saves its backup to a file.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Sends `method path` (with its query, and `body`) to the admin listener at `admin`; the
/// answer's JSON, indented. A refusal is an error carrying the answer's own message.
pub fn request(
    admin: &str,
    token: Option<&str>,
    method: hyper::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<String> {
    on_runtime(async {
        let answer = send(admin, token, method, path, body).await?;
        let text = answer.collect().await?.to_bytes();
        let value: serde_json::Value =
            serde_json::from_slice(&text).context("the admin API's answer is not JSON")?;
        Ok(serde_json::to_string_pretty(&value)?)
    })
}

/// Runs `work` on a runtime of its own (the CLI has none).
fn on_runtime<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(work)
}

/// Sends the request; the body of a successful answer, or an error carrying the refusal's
/// own message.
async fn send(
    admin: &str,
    token: Option<&str>,
    method: hyper::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<hyper::body::Incoming> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"));
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body)))?)
        .await
        .with_context(|| format!("cannot reach the admin API at {admin} (--admin)"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp.into_body());
    }
    let text = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&text);
    let why = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.into_owned());
    bail!("the admin API answered {status}: {}", why.trim_end())
}

/// `s` as one path segment, percent-encoded.
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `?k=v&…` for the pairs that have a value, each percent-encoded; empty when none has.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| Some(format!("{k}={}", segment(v.as_ref()?))))
        .collect();
    match q.is_empty() {
        true => String::new(),
        false => format!("?{}", q.join("&")),
    }
}

/// Saves the node's backup (`GET /backup`) to `to`, which must not exist: written beside
/// it first, readable by this user only (it holds every object's data), fsynced, then
/// renamed into place.
pub fn download_backup(admin: &str, token: Option<&str>, to: &std::path::Path) -> Result<u64> {
    use std::io::Write;
    anyhow::ensure!(!to.exists(), "{} exists already", to.display());
    let partial = to.with_extension("partial");
    let written = on_runtime(async {
        let mut body = send(admin, token, hyper::Method::GET, "/backup", Vec::new()).await?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                file.write_all(&data)?;
                written += data.len() as u64;
            }
        }
        file.sync_all()?;
        Ok(written)
    });
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, to)?;
    Ok(written)
}

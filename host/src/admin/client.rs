//! `dohost inspect`: a command-line client of the admin API, which prints its JSON answers.

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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
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
        let body = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            let why = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("the admin API answered {status}: {}", why.trim_end());
        }
        let value: serde_json::Value =
            serde_json::from_str(&text).context("the admin API's answer is not JSON")?;
        Ok(serde_json::to_string_pretty(&value)?)
    })
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

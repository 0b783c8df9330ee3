//! Keeps web pages out of the admin listener: a request must name the listener by an IP
//! address, `localhost` or a configured name (no DNS rebinding), and a change must come
//! from the listener's own page or a client that is not a browser (no cross-site writes).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The host names (besides IP addresses and `localhost`) the listener answers to:
/// `--admin-host`, lower-cased.
#[derive(Clone, Debug, Default)]
pub struct Hosts(pub Arc<[String]>);

/// The middleware: refuses (403, saying why and what to change) a request for another host
/// name, and a write that a page of another origin could have sent.
pub async fn same_site(State(hosts): State<Hosts>, req: Request, next: Next) -> Response {
    match check(&hosts, req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(why) => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{why}\n"),
        )
            .into_response(),
    }
}

fn check(hosts: &Hosts, method: &Method, headers: &HeaderMap) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or("the admin API needs a Host header")?;
    if !allowed_host(hosts, host) {
        return Err(format!(
            "the admin API answers requests for an IP address or localhost, not {host:?}: \
             a page on another site may have been pointed at it (DNS rebinding); to reach it \
             by this name, start dohost with --admin-host {}",
            name_of(host)
        ));
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    // Browsers send `Origin` with every cross-origin write, and `Sec-Fetch-Site` with every
    // request; command-line clients send neither.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let same = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Err(format!(
                "the admin API refuses changes from another site's page (Origin {origin:?})"
            ));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Err(format!(
            "the admin API refuses changes from another site's page (Sec-Fetch-Site {site:?})"
        ));
    }
    // The types a page may send anywhere without asking first (a form, or `text/plain`):
    // with no Origin (an old browser) they are the only sign left.
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or_default().to_ascii_lowercase();
        let essence = kind.split(';').next().unwrap_or_default().trim();
        if matches!(
            essence,
            "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
        ) {
            return Err(format!(
                "the admin API refuses changes sent as {essence} (a type any web page may \
                 send): send application/octet-stream, application/json or application/wasm, \
                 or no Content-Type"
            ));
        }
    }
    Ok(())
}

/// The host part of a Host header (`[::1]:8788` → `[::1]`, `a.example:80` → `a.example`).
fn name_of(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    }
}

/// An IP address cannot be rebound to another machine, and `localhost` resolves locally;
/// any other name must be one the operator configured.
fn allowed_host(hosts: &Hosts, host: &str) -> bool {
    let name = name_of(host);
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || hosts.0.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_addresses_localhost_and_configured_names_are_answered() {
        let hosts = Hosts(Arc::from(vec!["admin.internal".to_string()]));
        for ok in [
            "127.0.0.1:8788",
            "[::1]:8788",
            "10.1.2.3",
            "localhost:8788",
            "LOCALHOST",
            "admin.internal:8788",
        ] {
            assert!(allowed_host(&hosts, ok), "{ok}");
        }
        for refused in [
            "attacker.example",
            "attacker.example:8788",
            "127.0.0.1.nip.io:8788",
        ] {
            assert!(!allowed_host(&hosts, refused), "{refused}");
        }
        let get = check(
            &hosts,
            &Method::GET,
            &headers(&[("host", "attacker.example")]),
        );
        assert!(get.unwrap_err().contains("--admin-host attacker.example"));
        assert!(check(&hosts, &Method::GET, &HeaderMap::new()).is_err());
    }

    #[test]
    fn cross_site_writes_are_refused_and_the_pages_own_pass() {
        let hosts = Hosts::default();
        let host = ("host", "127.0.0.1:8788");
        let post = |extra: &[(&'static str, &'static str)]| {
            let mut all = vec![host];
            all.extend_from_slice(extra);
            check(&hosts, &Method::POST, &headers(&all))
        };
        assert!(post(&[]).is_ok(), "a command-line client");
        assert!(post(&[("content-type", "application/wasm")]).is_ok());
        assert!(
            post(&[
                ("origin", "http://127.0.0.1:8788"),
                ("sec-fetch-site", "same-origin")
            ])
            .is_ok()
        );
        assert!(post(&[("origin", "http://attacker.example")]).is_err());
        assert!(post(&[("origin", "null")]).is_err());
        assert!(post(&[("sec-fetch-site", "cross-site")]).is_err());
        assert!(post(&[("content-type", "text/plain")]).is_err());
        assert!(post(&[("content-type", "application/x-www-form-urlencoded")]).is_err());
        assert!(post(&[("content-type", "Multipart/Form-Data; boundary=x")]).is_err());
        // Reads carry no such check (the Host check keeps other sites from reading).
        let read = headers(&[host, ("origin", "http://attacker.example")]);
        assert!(check(&hosts, &Method::GET, &read).is_ok());
    }
}

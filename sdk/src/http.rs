//! The HTTP [`Request`] an object receives and the [`Response`] it returns.

use crate::__private::bindings::dohost::object::types as wit;
use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::str::FromStr;

/// An HTTP request delivered to an object.
///
/// With the default routes, a request to `/{binding}/{name}/increment?by=2` reaches the
/// object named `name` as `/increment?by=2`.
///
/// ```no_run
/// # use dohost_sdk::{Request, Response, Result};
/// # #[derive(serde::Deserialize)] struct Item { name: String }
/// # struct Shop;
/// # impl Shop {
/// fn fetch(&mut self, req: Request) -> Result<Response> {
///     let by: i64 = req.query_param("by").map(|s| s.parse()).transpose()?.unwrap_or(1);
///     match (req.method(), req.path()) {
///         ("POST", "/items") => { let item: Item = req.json()?; println!("{} x{by}", item.name); }
///         _ => {}
///     }
///     Ok(Response::text("ok"))
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    pub(crate) fn from_wit(req: wit::Request) -> Self {
        Request {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
        }
    }

    /// Builds a request by hand, e.g. for unit tests of an object's logic.
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub(crate) fn into_wit(self) -> wit::Request {
        wit::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
        }
    }

    /// The method, upper case.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The absolute URL, e.g. `http://127.0.0.1:8787/increment?by=2`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The path, e.g. `/increment` (always starts with `/`).
    pub fn path(&self) -> &str {
        let rest = after_authority(&self.url);
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        if rest.is_empty() || end == 0 {
            "/"
        } else {
            &rest[..end]
        }
    }

    /// The raw query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        let rest = after_authority(&self.url);
        let start = rest.find('?')? + 1;
        let end = rest.find('#').unwrap_or(rest.len()).max(start);
        Some(&rest[start..end])
    }

    /// The first value of a query parameter, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// A query parameter parsed as `T` (`?by=2` → `Some(2)`); `None` when absent. A value
    /// that does not parse is an error answered 400, naming the parameter.
    ///
    /// ```no_run
    /// # use dohost_sdk::{Request, Result};
    /// # fn f(req: &Request) -> Result<()> {
    /// let by: i64 = req.query_as("by")?.unwrap_or(1);
    /// # let _ = by; Ok(())
    /// # }
    /// ```
    pub fn query_as<T: FromStr>(&self, name: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.query_param(name)
            .map(|v| {
                v.parse().map_err(|e| {
                    Error::bad_request(format!("query parameter {name:?}: {e} (got {v:?})"))
                })
            })
            .transpose()
    }

    /// A query parameter that must be there, parsed as `T`: absent or unparsable is a 400.
    pub fn require_query<T: FromStr>(&self, name: &str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        self.query_as(name)?
            .ok_or_else(|| Error::bad_request(format!("missing query parameter {name:?}")))
    }

    /// Every query parameter, percent-decoded, in order.
    pub fn query_params(&self) -> Vec<(String, String)> {
        let Some(query) = self.query() else {
            return Vec::new();
        };
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k, true), percent_decode(v, true))
            })
            .collect()
    }

    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Last-Event-ID` a reconnecting server-sent events client sends: the ID of the
    /// last event it had (see [`SseEvent::id`](crate::SseEvent::id)).
    pub fn last_event_id(&self) -> Option<&str> {
        self.header("last-event-id")
    }

    /// Every header as (name, value).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Adds a header (for requests built by hand).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body (for requests built by hand).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The body as bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text (400 when it is not).
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body).map_err(|_| Error::bad_request("request body is not UTF-8"))
    }

    /// The body parsed as JSON (400 saying why when it is not the JSON expected).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::bad_request(format!("request body is not the expected JSON: {e}")))
    }
}

/// Skips `scheme://authority` so the rest starts at the path.
fn after_authority(url: &str) -> &str {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            match rest.find(['/', '?', '#']) {
                Some(j) => &rest[j..],
                None => "",
            }
        }
        None => url,
    }
}

/// `%XX` escapes decoded; `+` is a space in a query (`plus_is_space`), itself in a path.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An object's answer to a request.
///
/// ```no_run
/// # use dohost_sdk::Response;
/// Response::text("Not found").with_status(404);
/// Response::json(&serde_json::json!({ "ok": true }));
/// Response::bytes(vec![1, 2, 3]).with_header("content-type", "application/octet-stream");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// 200 with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<String>) -> Self {
        Response {
            status: 200,
            headers: vec![(
                "content-type".to_string(),
                "text/plain; charset=utf-8".to_string(),
            )],
            body: body.into().into_bytes(),
        }
    }

    /// 200 with a JSON body. A value serde cannot encode gives a 500 saying so.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response {
                status: 200,
                headers: vec![("content-type".to_string(), "application/json".to_string())],
                body,
            },
            Err(e) => Response::text(format!("could not encode the response as JSON: {e}"))
                .with_status(500),
        }
    }

    /// 200 with a body of raw bytes and no content type.
    pub fn bytes(body: impl Into<Vec<u8>>) -> Self {
        Response {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// An empty body with this status.
    pub fn empty(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Changes the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a header; a header of the same name set earlier is replaced.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The answer to a WebSocket upgrade accepted with
    /// [`State::accept_websocket`](crate::State::accept_websocket): status 101.
    pub fn websocket(ws: crate::WebSocket) -> Self {
        let _ = ws;
        Response::empty(101)
    }

    /// A placeholder to return from `fetch` after [`State::defer`](crate::State::defer): the
    /// host ignores it and answers the client when the deferred request is responded to.
    pub fn deferred() -> Self {
        Response::empty(202)
    }

    /// The answer to an error returned from `fetch`: its status and message when it
    /// carries a status; otherwise a bare 500, the message going to the host's log.
    pub fn from_error(err: &Error) -> Self {
        match err.status_code() {
            Some(status) if (400..=599).contains(&status) => {
                Response::text(err.to_string()).with_status(status)
            }
            _ => {
                eprintln!("error (answered 500): {err}");
                Response::text("Internal Server Error").with_status(500)
            }
        }
    }

    /// The body as UTF-8 text.
    pub fn text_body(&self) -> Result<&str> {
        std::str::from_utf8(&self.body).map_err(|_| Error::msg("response body is not UTF-8"))
    }

    pub(crate) fn from_wit(r: wit::Response) -> Self {
        Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }

    pub(crate) fn into_wit(self) -> wit::Response {
        wit::Response {
            status: self.status,
            headers: self.headers,
            body: self.body,
        }
    }
}

//! A small request router: method and path patterns with parameters (`/item/:id`,
//! `/files/*path`), 404 for unknown paths and 405 with `Allow` for known paths asked with
//! another method.

use crate::{Error, Request, Response, Result};
use std::str::FromStr;

type Handler<T> = Box<dyn Fn(&mut T, Request, Params) -> Result<Response>>;

/// Routes requests to handlers on `T` (usually the object itself).
///
/// A pattern is a path whose segments are literal (`items`), a parameter (`:id`, one
/// segment) or, last, a rest parameter (`*path`, the remaining segments, possibly none).
/// A trailing `/` in the request's path is ignored. `HEAD` is routed as `GET`. Routes are
/// tried in the order added.
///
/// ```no_run
/// # use dohost_sdk::{Params, Request, Response, Result, Router, State};
/// # struct Shop { state: State }
/// impl Shop {
///     fn fetch(&mut self, req: Request) -> Result<Response> {
///         Router::new()
///             .get("/items/:id", Self::get_item)
///             .post("/items", |shop: &mut Shop, req, _| shop.add_item(req))
///             .handle(self, req)
///     }
///
///     fn get_item(&mut self, _req: Request, params: Params) -> Result<Response> {
///         let id: u64 = params.parse("id")?; // "/items/x" answers 400
///         let item: Option<String> = self.state.storage().get(&format!("item:{id}"))?;
///         match item {
///             Some(item) => Ok(Response::json(&item)),
///             None => Err(dohost_sdk::Error::not_found(format!("no item {id}"))),
///         }
///     }
///
///     fn add_item(&mut self, req: Request) -> Result<Response> {
///         let name: String = req.json()?;
///         # let _ = name;
///         Ok(Response::empty(201))
///     }
/// }
/// ```
pub struct Router<T> {
    routes: Vec<Route<T>>,
}

struct Route<T> {
    /// Upper case; `None` matches any method.
    method: Option<String>,
    pattern: Vec<Segment>,
    handler: Handler<T>,
}

enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

/// The parameters a route's pattern captured, percent-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The parameter's value, if the pattern has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The parameter parsed as `V`: a value that does not parse is a 400 naming it.
    pub fn parse<V: FromStr>(&self, name: &str) -> Result<V>
    where
        V::Err: std::fmt::Display,
    {
        let value = self
            .get(name)
            .ok_or_else(|| Error::msg(format!("the route's pattern has no parameter {name:?}")))?;
        value.parse().map_err(|e| {
            Error::bad_request(format!("path parameter {name:?}: {e} (got {value:?})"))
        })
    }
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<T> Router<T> {
    /// A router with no routes (every request is a 404).
    pub fn new() -> Self {
        Router::default()
    }

    /// Routes `method` requests matching `pattern` to `handler`. Panics on a pattern that
    /// does not start with `/` or has a rest parameter before its end (a bug in the
    /// object, found by its first request).
    pub fn on(
        mut self,
        method: &str,
        pattern: &str,
        handler: impl Fn(&mut T, Request, Params) -> Result<Response> + 'static,
    ) -> Self {
        self.routes.push(Route {
            method: Some(method.to_ascii_uppercase()),
            pattern: parse_pattern(pattern),
            handler: Box::new(handler),
        });
        self
    }

    /// Routes requests of any method matching `pattern` to `handler`.
    pub fn any(
        mut self,
        pattern: &str,
        handler: impl Fn(&mut T, Request, Params) -> Result<Response> + 'static,
    ) -> Self {
        self.routes.push(Route {
            method: None,
            pattern: parse_pattern(pattern),
            handler: Box::new(handler),
        });
        self
    }

    /// `on("GET", pattern, handler)`.
    pub fn get(
        self,
        pattern: &str,
        handler: impl Fn(&mut T, Request, Params) -> Result<Response> + 'static,
    ) -> Self {
        self.on("GET", pattern, handler)
    }

    /// `on("POST", pattern, handler)`.
    pub fn post(
        self,
        pattern: &str,
        handler: impl Fn(&mut T, Request, Params) -> Result<Response> + 'static,
    ) -> Self {
        self.on("POST", pattern, handler)
    }

    /// `on("PUT", pattern, handler)`.
    pub fn put(
        self,
        pattern: &str,
        handler: impl Fn(&mut T, Request, Params) -> Result<Response> + 'static,
    ) -> Self {
        self.on("PUT", pattern, handler)
    }

    /// `on("PATCH", pattern, handler)`.
    pub fn patch(
        self,
        pattern: &str,
        handler: impl Fn(&mut T, Request, Params) -> Result<Response> + 'static,
    ) -> Self {
        self.on("PATCH", pattern, handler)
    }

    /// `on("DELETE", pattern, handler)`.
    pub fn delete(
        self,
        pattern: &str,
        handler: impl Fn(&mut T, Request, Params) -> Result<Response> + 'static,
    ) -> Self {
        self.on("DELETE", pattern, handler)
    }

    /// Runs the first route matching the request's method and path. A path no route
    /// matches is a 404; a path matched only for other methods is a 405 whose `Allow`
    /// lists them.
    pub fn handle(&self, target: &mut T, req: Request) -> Result<Response> {
        let method = match req.method() {
            "HEAD" => "GET".to_string(),
            m => m.to_ascii_uppercase(),
        };
        let segments: Vec<&str> = req
            .path()
            .split('/')
            .skip(1)
            .filter(|s| !s.is_empty())
            .collect();
        let mut allowed: Vec<&str> = Vec::new();
        for route in &self.routes {
            let Some(params) = matches(&route.pattern, &segments) else {
                continue;
            };
            match &route.method {
                Some(m) if *m != method => allowed.push(m),
                _ => return (route.handler)(target, req, params),
            }
        }
        if allowed.is_empty() {
            return Ok(Response::text("Not Found").with_status(404));
        }
        if allowed.contains(&"GET") {
            allowed.push("HEAD");
        }
        allowed.sort_unstable();
        allowed.dedup();
        Ok(Response::text("Method Not Allowed")
            .with_status(405)
            .with_header("allow", &allowed.join(", ")))
    }
}

fn parse_pattern(pattern: &str) -> Vec<Segment> {
    assert!(
        pattern.starts_with('/'),
        "route pattern {pattern:?} must start with '/'"
    );
    let parts: Vec<&str> = pattern
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            if let Some(name) = part.strip_prefix(':') {
                Segment::Param(name.to_string())
            } else if let Some(name) = part.strip_prefix('*') {
                assert!(
                    i + 1 == parts.len(),
                    "route pattern {pattern:?}: *{name} must be the last segment"
                );
                Segment::Rest(name.to_string())
            } else {
                Segment::Literal(part.to_string())
            }
        })
        .collect()
}

fn matches(pattern: &[Segment], segments: &[&str]) -> Option<Params> {
    let mut params = Params::default();
    for (i, part) in pattern.iter().enumerate() {
        match part {
            Segment::Literal(l) => {
                if segments
                    .get(i)
                    .map(|s| crate::http::percent_decode(s, false))
                    != Some(l.clone())
                {
                    return None;
                }
            }
            Segment::Param(name) => {
                let value = segments.get(i)?;
                params
                    .pairs
                    .push((name.clone(), crate::http::percent_decode(value, false)));
            }
            Segment::Rest(name) => {
                let rest: Vec<String> = segments[i.min(segments.len())..]
                    .iter()
                    .map(|s| crate::http::percent_decode(s, false))
                    .collect();
                params.pairs.push((name.clone(), rest.join("/")));
                return Some(params);
            }
        }
    }
    (pattern.len() == segments.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shop {
        seen: Vec<String>,
    }

    fn router() -> Router<Shop> {
        Router::new()
            .get("/items/:id", |s: &mut Shop, _, p| {
                s.seen.push(format!("get {}", p.get("id").unwrap()));
                Ok(Response::text(p.get("id").unwrap()))
            })
            .post("/items", |s: &mut Shop, _, _| {
                s.seen.push("post".into());
                Ok(Response::empty(201))
            })
            .get("/files/*path", |_: &mut Shop, _, p| {
                Ok(Response::text(p.get("path").unwrap()))
            })
    }

    fn run(method: &str, path: &str) -> (Response, Vec<String>) {
        let mut shop = Shop { seen: Vec::new() };
        let url = format!("http://x{path}");
        let response = router()
            .handle(&mut shop, Request::new(method, &url))
            .unwrap();
        (response, shop.seen)
    }

    #[test]
    fn parameters_are_captured_and_decoded() {
        let (r, seen) = run("GET", "/items/a%20b+c");
        assert_eq!(r.body(), b"a b+c");
        assert_eq!(seen, ["get a b+c"]);
        assert_eq!(run("HEAD", "/items/7/").0.body(), b"7");
        assert_eq!(run("GET", "/files/a/b/c?x=1").0.body(), b"a/b/c");
        assert_eq!(run("GET", "/files").0.body(), b"");
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405() {
        assert_eq!(run("GET", "/items").0.status(), 405);
        let (r, seen) = run("DELETE", "/items/1");
        assert_eq!(r.status(), 405);
        assert!(seen.is_empty());
        let allow = r.headers().iter().find(|(n, _)| n == "allow").unwrap();
        assert_eq!(allow.1, "GET, HEAD");
        assert_eq!(run("GET", "/nothing").0.status(), 404);
        assert_eq!(run("GET", "/items/1/more").0.status(), 404);
    }

    #[test]
    fn params_parse_to_400() {
        let params = Params {
            pairs: vec![("id".into(), "x".into())],
        };
        let err = params.parse::<u64>("id").unwrap_err();
        assert_eq!(err.status_code(), Some(400));
        assert!(
            params
                .parse::<u64>("other")
                .unwrap_err()
                .status_code()
                .is_none()
        );
    }
}

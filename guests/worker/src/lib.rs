//! The seed's Worker Integration: a stateless worker that routes requests to objects.
//!
//! | request | goes to |
//! | --- | --- |
//! | `/by-name/{name}/{action}` | the counter `id_from_name(name)`, as `/{action}` |
//! | `/new-id` | answers a fresh unique counter ID |
//! | `/by-id/{id}/{action}` | the counter with that ID (400 if the ID is not a counter's) |
//! | `/rpc/{name}/increment?by=N` | calls `increment(N)` on counter `name` through its stub (typed RPC); answers the count as JSON |
//! | `/objects/{binding}/{name}/{path}` | object `name` of any binding, as `/{path}` (the default routes, through a worker): a WebSocket upgrade passes through to it |
//! | anything else | the seed's `env.COUNTER.idFromName('global')`, request forwarded as is |
//!
//! Forwarded requests keep their method, headers, query and body.

use counter_api::Counting;
use dohost_sdk::{Env, Request, Response, Result, Worker, worker};

#[worker]
pub struct Router;

/// `req` for the object at `http://{host}/{action}`: method, headers, query and body kept.
fn forward(req: &Request, host: &str, action: &str) -> Request {
    let mut url = format!("http://{host}/{action}");
    if let Some(q) = req.query() {
        url.push('?');
        url.push_str(q);
    }
    let mut out = Request::new(req.method(), &url).with_body(req.body().to_vec());
    for (name, value) in req.headers() {
        out = out.with_header(name, value);
    }
    out
}

impl Worker for Router {
    fn fetch(req: Request, env: Env) -> Result<Response> {
        let counter = env.namespace("counter");
        let path = req.path().trim_start_matches('/').to_string();
        let parts: Vec<&str> = path.splitn(3, '/').collect();
        match parts.as_slice() {
            ["by-name", name, action] => {
                let id = counter.id_from_name(name)?;
                counter.get(&id).fetch(forward(&req, "counter", action))
            }
            ["rpc", name, "increment"] => {
                let by: i64 = req.query_as("by")?.unwrap_or(1);
                let mut stub = counter.get(&counter.id_from_name(name)?);
                Ok(Response::json(&stub.increment(by)?))
            }
            ["new-id"] => Ok(Response::text(counter.new_unique_id()?.to_string())),
            ["by-id", id, action] => match counter.id_from_string(id) {
                Ok(id) => counter.get(&id).fetch(forward(&req, "counter", action)),
                Err(e) => Ok(Response::text(e.to_string()).with_status(400)),
            },
            ["objects", binding, rest] => {
                let (name, action) = rest.split_once('/').unwrap_or((rest, ""));
                let ns = env.namespace(binding);
                let id = ns.id_from_name(name)?;
                ns.get(&id).fetch(forward(&req, binding, action))
            }
            _ => {
                // Exactly the seed: one global counter, the request forwarded as is.
                let id = counter.id_from_name("global")?;
                counter.get(&id).fetch(req)
            }
        }
    }
}

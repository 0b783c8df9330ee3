//! The seed's Worker Integration: a stateless worker that routes requests to the counter.
//!
//! | request | goes to |
//! | --- | --- |
//! | `/by-name/{name}/{action}` | the counter `id_from_name(name)`, as `/{action}` |
//! | `/new-id` | answers a fresh unique counter ID |
//! | `/by-id/{id}/{action}` | the counter with that ID (400 if the ID is not a counter's) |
//! | anything else | the seed's `env.COUNTER.idFromName('global')`, request forwarded as is |

use dohost_sdk::{Env, Request, Response, Result, Worker, worker};

#[worker]
pub struct Router;

fn forward(req: &Request, action: &str) -> Request {
    let mut url = format!("http://counter/{action}");
    if let Some(q) = req.query() {
        url.push('?');
        url.push_str(q);
    }
    Request::new(req.method(), &url).with_body(req.body().to_vec())
}

impl Worker for Router {
    fn fetch(req: Request, env: Env) -> Result<Response> {
        let counter = env.namespace("counter");
        let path = req.path().trim_start_matches('/').to_string();
        let parts: Vec<&str> = path.splitn(3, '/').collect();
        match parts.as_slice() {
            ["by-name", name, action] => {
                let id = counter.id_from_name(name)?;
                counter.get(&id).fetch(forward(&req, action))
            }
            ["new-id"] => Ok(Response::text(counter.new_unique_id()?.to_string())),
            ["by-id", id, action] => match counter.id_from_string(id) {
                Ok(id) => counter.get(&id).fetch(forward(&req, action)),
                Err(e) => Ok(Response::text(e.to_string()).with_status(400)),
            },
            _ => {
                // Exactly the seed: one global counter, the request forwarded as is.
                let id = counter.id_from_name("global")?;
                counter.get(&id).fetch(req)
            }
        }
    }
}

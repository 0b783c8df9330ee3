//! The seed's DistributedLock: `/acquire` waits until the lock is free, first come first
//! served; `/release` hands it to the next waiter. Waiting requests are deferred responses,
//! so the object keeps answering other requests (`/status`) meanwhile.

use dohost_sdk::{Deferred, DurableObject, Env, Request, Response, Result, State, durable_object};
use serde_json::json;
use std::collections::VecDeque;

#[durable_object]
pub struct DistributedLock {
    state: State,
    locked: bool,
    queue: VecDeque<Deferred>,
}

impl DurableObject for DistributedLock {
    fn new(state: State, _env: Env) -> Self {
        DistributedLock {
            state,
            locked: false,
            queue: VecDeque::new(),
        }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match req.path() {
            "/acquire" => {
                if !self.locked {
                    self.locked = true;
                    return Ok(Response::text("Locked"));
                }
                // Wait in queue: answered by a later /release.
                let waiting = self
                    .state
                    .defer()
                    .ok_or_else(|| dohost_sdk::Error::msg("cannot defer outside a fetch"))?;
                self.queue.push_back(waiting);
                Ok(Response::deferred())
            }
            "/release" => {
                // Hand the lock to the next waiter still there (one may have timed out).
                loop {
                    match self.queue.pop_front() {
                        Some(next) => {
                            if next.respond(Response::text("Locked")) {
                                break;
                            }
                        }
                        None => {
                            self.locked = false;
                            break;
                        }
                    }
                }
                Ok(Response::text("Unlocked"))
            }
            "/status" => Ok(Response::json(&json!({
                "locked": self.locked,
                "waiting": self.queue.len(),
            }))),
            _ => Ok(Response::text("Unknown").with_status(400)),
        }
    }
}

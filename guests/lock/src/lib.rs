//! The seed's DistributedLock: `/acquire` waits until the lock is free, first come first
//! served; `/release` hands it to the next waiter. Waiting requests are deferred responses,
//! so the object keeps answering other requests (`/status`) meanwhile.
//!
//! Unlike the seed's in-memory flag, `locked` lives in storage: a held lock stays held when
//! its idle instance is evicted, across a restart and after a crash. Waiters are clients
//! on open connections, so they live in memory (an object with waiters is never evicted);
//! a waiter whose client gave up or timed out is skipped.

use dohost_sdk::{Deferred, DurableObject, Env, Request, Response, Result, State, durable_object};
use serde_json::json;
use std::collections::VecDeque;

const LOCKED: &str = "locked";

#[durable_object]
pub struct DistributedLock {
    state: State,
    locked: bool,
    queue: VecDeque<Deferred>,
}

impl DurableObject for DistributedLock {
    fn new(state: State, _env: Env) -> Self {
        // A failed read here would make a held lock look free: refuse to start instead (the
        // host answers 500 and tries again on the next request).
        let locked = state
            .storage()
            .get::<bool>(LOCKED)
            .expect("cannot read the lock's state")
            .unwrap_or(false);
        DistributedLock {
            state,
            locked,
            queue: VecDeque::new(),
        }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        // Clients that went away no longer wait.
        self.queue.retain(Deferred::is_open);
        match req.path() {
            "/acquire" => {
                if !self.locked {
                    self.set_locked(true)?;
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
                // Hand the lock to the next waiter still there; it stays locked for them.
                while let Some(next) = self.queue.pop_front() {
                    if next.respond(Response::text("Locked")) {
                        return Ok(Response::text("Unlocked"));
                    }
                }
                self.set_locked(false)?;
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

impl DistributedLock {
    fn set_locked(&mut self, locked: bool) -> Result<()> {
        self.state.storage().put(LOCKED, &locked)?;
        self.locked = locked;
        Ok(())
    }
}

//! The seed's RateLimiter: 100 requests a minute per object, then 429 `Rate limit exceeded`.
//! Unlike the seed, which keeps its window in memory, the window is kept in storage, so an
//! evicted (or restarted) limiter still counts the requests of the last minute. Each
//! allowed request is a write (the rejected ones are not).

use dohost_sdk::{DurableObject, Env, Request, Response, Result, State, durable_object};
use std::time::{SystemTime, UNIX_EPOCH};

const WINDOW_MS: u64 = 60_000;
const LIMIT: usize = 100;
/// Storage key of the window: the times (ms) of the allowed requests of the last minute.
const WINDOW: &str = "window";

#[durable_object]
pub struct RateLimiter {
    state: State,
    requests: Vec<u64>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        // A failed read would reset the window: refuse to start instead (500, retried on
        // the next request).
        let requests = state
            .storage()
            .get(WINDOW)
            .expect("cannot read the rate limiter's window")
            .unwrap_or_default();
        RateLimiter { state, requests }
    }

    fn fetch(&mut self, _req: Request) -> Result<Response> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // Remove old requests.
        self.requests.retain(|t| *t + WINDOW_MS > now);
        if self.requests.len() >= LIMIT {
            return Ok(Response::text("Rate limit exceeded").with_status(429));
        }
        self.requests.push(now);
        self.state.storage().put(WINDOW, &self.requests)?;
        Ok(Response::text("OK"))
    }
}

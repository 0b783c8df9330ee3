//! The seed's RateLimiter: 100 requests a minute per object, then 429 `Rate limit exceeded`.
//! Like the seed, it keeps its window in memory (an evicted limiter starts afresh).

use dohost_sdk::{DurableObject, Env, Request, Response, Result, State, durable_object};
use std::time::{SystemTime, UNIX_EPOCH};

const WINDOW_MS: u64 = 60_000;
const LIMIT: usize = 100;

#[durable_object]
pub struct RateLimiter {
    requests: Vec<u64>,
}

impl DurableObject for RateLimiter {
    fn new(_state: State, _env: Env) -> Self {
        RateLimiter {
            requests: Vec::new(),
        }
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
        Ok(Response::text("OK"))
    }
}

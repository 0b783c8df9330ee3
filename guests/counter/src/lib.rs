//! The seed's Counter: `/increment`, `/decrement` and `/get` answer the value as text. It
//! also serves the typed methods of `counter_api::Counting` (`increment(by)`, `get()`) to
//! callers holding a stub, such as the worker.

use counter_api::Counting;
use dohost_sdk::{DurableObject, Env, Request, Response, Result, State, durable_object};

#[durable_object(rpc(Counting))]
pub struct Counter {
    state: State,
    value: i64,
}

impl DurableObject for Counter {
    fn new(state: State, _env: Env) -> Self {
        // Restore the value before any request runs (the seed's blockConcurrencyWhile). A
        // storage error here panics, which fails the event and retries construction later.
        let value = state
            .storage()
            .get("value")
            .expect("read the counter")
            .unwrap_or(0);
        Counter { state, value }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match req.path() {
            "/increment" => Ok(Response::text(self.increment(1)?.to_string())),
            "/decrement" => Ok(Response::text(self.increment(-1)?.to_string())),
            "/get" => Ok(Response::text(self.value.to_string())),
            _ => Ok(Response::text("Not found").with_status(404)),
        }
    }
}

impl Counting for Counter {
    fn increment(&mut self, by: i64) -> Result<i64> {
        self.value += by;
        self.state.storage().put("value", &self.value)?;
        Ok(self.value)
    }

    fn get(&self) -> Result<i64> {
        Ok(self.value)
    }
}

//! The seed's Counter: `/increment`, `/decrement` and `/get` answer the value as text.

use dohost_sdk::{DurableObject, Env, Request, Response, Result, State, durable_object};

#[durable_object]
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
            "/increment" => {
                self.value += 1;
                self.state.storage().put("value", &self.value)?;
                Ok(Response::text(self.value.to_string()))
            }
            "/decrement" => {
                self.value -= 1;
                self.state.storage().put("value", &self.value)?;
                Ok(Response::text(self.value.to_string()))
            }
            "/get" => Ok(Response::text(self.value.to_string())),
            _ => Ok(Response::text("Not found").with_status(404)),
        }
    }
}

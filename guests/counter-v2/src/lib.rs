//! The Counter's next version, for the deploy tests: the same stored `value`, but
//! `/increment` adds ten, and `/version` answers 2. Not an example.

use dohost_sdk::{DurableObject, Env, Request, Response, Result, State, durable_object};

#[durable_object]
pub struct Counter {
    state: State,
    value: i64,
}

impl DurableObject for Counter {
    fn new(state: State, _env: Env) -> Self {
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
                self.value += 10;
                self.state.storage().put("value", &self.value)?;
                Ok(Response::text(self.value.to_string()))
            }
            "/get" => Ok(Response::text(self.value.to_string())),
            "/version" => Ok(Response::text("2")),
            _ => Ok(Response::text("Not found").with_status(404)),
        }
    }
}

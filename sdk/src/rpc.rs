//! Typed calls between objects (RPC): methods declared once in a trait marked
//! [`#[rpc]`](macro@crate::rpc), implemented by the object, called on a [`Stub`].
//!
//! ```no_run,standalone_crate
//! use dohost_sdk::{durable_object, rpc, DurableObject, Env, Request, Response, Result, State};
//!
//! /// The declaration both sides share (the callee's crate, and a copy or a shared crate
//! /// for callers).
//! #[rpc]
//! pub trait Counting {
//!     fn increment(&mut self, by: i64) -> Result<i64>;
//! }
//!
//! #[durable_object(rpc(Counting))]
//! pub struct Counter { state: State, value: i64 }
//!
//! impl Counting for Counter {
//!     fn increment(&mut self, by: i64) -> Result<i64> {
//!         self.value += by;
//!         self.state.storage().put("value", &self.value)?;
//!         Ok(self.value)
//!     }
//! }
//! # impl DurableObject for Counter {
//! #     fn new(state: State, _env: Env) -> Self { Counter { state, value: 0 } }
//! #     fn fetch(&mut self, _req: Request) -> Result<Response> { Ok(Response::text("")) }
//! # }
//! # fn caller(env: &Env) -> Result<()> {
//! // A caller (another object, or the worker):
//! let ns = env.namespace("counter");
//! let mut counter = ns.get(&ns.id_from_name("global")?);
//! let value: i64 = counter.increment(5)?;
//! # let _ = value; Ok(())
//! # }
//! ```
//!
//! A call is one event of the callee, serialized with its other events like a `fetch`, and
//! answered once its writes are durable. On the wire it is a `POST` whose header
//! `x-dohost-rpc` names the method (`Counting.increment`) and whose body is the arguments
//! as a JSON array; the answer is the result as JSON, or the error's message with its
//! status. Objects in other languages can serve or make calls by that contract. The host
//! strips the header from public requests: only objects and the worker call methods.

use crate::{Error, Request, Response, Result, Stub};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The request header naming the method called, and in the answer, how the call ended.
pub const HEADER: &str = "x-dohost-rpc";

/// The answer header's values.
const OK: &str = "ok";
const FAILED: &str = "error";
const NO_METHOD: &str = "no-method";

impl Stub {
    /// Calls `method` (`Trait.method`) on the object with `args` (a tuple of the
    /// arguments); what the `#[rpc]` trait's methods on a stub do.
    pub fn call<A: Serialize, R: DeserializeOwned>(&self, method: &str, args: &A) -> Result<R> {
        let body = serde_json::to_vec(args)
            .map_err(|e| Error::msg(format!("{method}: cannot encode the arguments: {e}")))?;
        let request = Request::new("POST", &format!("http://rpc/{method}"))
            .with_header(HEADER, method)
            .with_header("content-type", "application/json")
            .with_body(body);
        let response = self.fetch(request)?;
        let message = || String::from_utf8_lossy(response.body()).into_owned();
        let outcome = response
            .headers()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(HEADER))
            .map(|(_, v)| v.as_str());
        match outcome {
            Some(OK) => serde_json::from_slice(response.body()).map_err(|e| {
                Error::msg(format!(
                    "{method}: the result is not the type expected: {e}"
                ))
            }),
            Some(FAILED) if response.status() != 500 => {
                Err(Error::status(response.status(), message()))
            }
            Some(FAILED) => Err(Error::msg(format!("{method} failed: {}", message()))),
            Some(NO_METHOD) => Err(Error::msg(message())),
            _ => Err(Error::msg(format!(
                "{method}: the object does not serve RPC calls (it answered {}: {})",
                response.status(),
                message()
            ))),
        }
    }
}

/// The method an RPC request calls, if it is one.
pub(crate) fn method_of(request: &Request) -> Option<&str> {
    request.header(HEADER)
}

/// The answer to a call of `method`: `None` when no trait of the object has it.
pub(crate) fn answer(method: &str, result: Option<Result<Vec<u8>>>) -> Response {
    match result {
        Some(Ok(body)) => Response::bytes(body)
            .with_header("content-type", "application/json")
            .with_header(HEADER, OK),
        // The caller is another object: it gets the message, whatever the status.
        Some(Err(e)) => Response::text(e.to_string())
            .with_status(
                e.status_code()
                    .filter(|s| (400..=599).contains(s))
                    .unwrap_or(500),
            )
            .with_header(HEADER, FAILED),
        None => Response::text(format!(
            "the object has no RPC method {method:?} (list its trait in \
             #[durable_object(rpc(...))])"
        ))
        .with_status(404)
        .with_header(HEADER, NO_METHOD),
    }
}

/// Decodes a call's arguments (used by the `#[rpc]` expansion): a bad encoding is the
/// caller's fault, 400.
#[doc(hidden)]
pub fn decode_args<A: DeserializeOwned>(method: &str, args: &[u8]) -> Result<A> {
    serde_json::from_slice(args)
        .map_err(|e| Error::bad_request(format!("{method}: the arguments do not decode: {e}")))
}

/// Encodes a call's result (used by the `#[rpc]` expansion).
#[doc(hidden)]
pub fn encode_result<R: Serialize>(method: &str, result: &R) -> Result<Vec<u8>> {
    serde_json::to_vec(result)
        .map_err(|e| Error::msg(format!("{method}: cannot encode the result: {e}")))
}

/// The methods of the `#[rpc]` traits an object lists in `#[durable_object(rpc(...))]`;
/// implemented by that attribute.
#[doc(hidden)]
pub trait Methods {
    fn call(&mut self, method: &str, args: &[u8]) -> Option<Result<Vec<u8>>>;
}

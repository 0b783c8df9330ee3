//! Other objects: IDs and stubs through a binding (the JavaScript API's namespace and stub),
//! and deferred responses.

use crate::__private::bindings::dohost::object::objects as wit;
use crate::__private::bindings::dohost::object::requests as wit_requests;
use crate::{Error, Request, Response, Result};
use std::fmt;

/// The objects reached through one binding: `env.namespace("COUNTER")`.
///
/// ```no_run
/// # use dohost_sdk::{Env, Request, Result};
/// # fn f(env: &Env) -> Result<()> {
/// let counter = env.namespace("counter");
/// let stub = counter.get(&counter.id_from_name("global")?);
/// let response = stub.fetch(Request::new("GET", "http://counter/increment"))?;
/// # let _ = response;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Namespace {
    binding: String,
}

/// An object ID of one binding: 64 lowercase hex characters.
///
/// ```no_run
/// # fn f(ns: &dohost_sdk::Namespace) -> dohost_sdk::Result<()> {
/// let id = ns.id_from_name("user-123")?;
/// assert_eq!(id, ns.id_from_name("user-123")?);
/// let again = ns.id_from_string(&id.to_string())?;
/// # let _ = again;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    binding: String,
    id: String,
    name: Option<String>,
}

/// A handle to call one object.
///
/// ```no_run
/// # use dohost_sdk::{Request, Result, Stub};
/// # fn f(stub: &Stub) -> Result<()> {
/// let text = stub.fetch(Request::new("GET", "http://x/get"))?.text_body()?.to_string();
/// # let _ = text;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Stub {
    id: ObjectId,
}

fn call_err(e: wit::Error) -> Error {
    Error::call(e.code, e.message)
}

impl Namespace {
    pub(crate) fn new(binding: &str) -> Self {
        Namespace {
            binding: binding.to_string(),
        }
    }

    /// The binding's name.
    pub fn binding(&self) -> &str {
        &self.binding
    }

    /// The ID `name` maps to; the same name always gives the same ID.
    pub fn id_from_name(&self, name: &str) -> Result<ObjectId> {
        let id = wit::id_from_name(&self.binding, name).map_err(call_err)?;
        Ok(ObjectId {
            binding: self.binding.clone(),
            id,
            name: Some(name.to_string()),
        })
    }

    /// A fresh random ID.
    pub fn new_unique_id(&self) -> Result<ObjectId> {
        let id = wit::new_unique_id(&self.binding).map_err(call_err)?;
        Ok(ObjectId {
            binding: self.binding.clone(),
            id,
            name: None,
        })
    }

    /// Parses an ID made by this binding; a malformed one, or one of another binding, is
    /// an error.
    pub fn id_from_string(&self, id: &str) -> Result<ObjectId> {
        let id = wit::id_from_string(&self.binding, id).map_err(call_err)?;
        Ok(ObjectId {
            binding: self.binding.clone(),
            id,
            name: None,
        })
    }

    /// A stub for the object `id`.
    pub fn get(&self, id: &ObjectId) -> Stub {
        Stub { id: id.clone() }
    }
}

impl ObjectId {
    /// The name the ID came from, if it came from `id_from_name`.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl Stub {
    /// The object's ID.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// Sends `request` to the object and returns its response, once the object's writes
    /// are durable. Fails when the object trapped, or when the call would deadlock (the
    /// object is waiting, directly or through others, on the caller).
    pub fn fetch(&self, request: Request) -> Result<Response> {
        let r = wit::fetch(
            &self.id.binding,
            &self.id.id,
            self.id.name.as_deref(),
            &request.into_wit(),
        )
        .map_err(call_err)?;
        Ok(Response::from_wit(r))
    }
}

/// A request whose answer was deferred: answer it from a later event with
/// [`Deferred::respond`]. Get one with [`State::defer`](crate::State::defer).
///
/// ```no_run
/// # use dohost_sdk::{Deferred, Response, Result, State};
/// # use std::collections::VecDeque;
/// # struct Lock { state: State, queue: VecDeque<Deferred> }
/// # impl Lock {
/// # fn in_fetch(&mut self) -> Result<Response> {
/// // in fetch:
/// let waiting = self.state.defer().expect("in a fetch");
/// self.queue.push_back(waiting);
/// return Ok(Response::deferred());
/// # }
/// # fn later(&mut self) {
/// // later, in another event:
/// if let Some(next) = self.queue.pop_front() { next.respond(Response::text("Locked")); }
/// # }
/// # }
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct Deferred {
    handle: u64,
}

impl Deferred {
    pub(crate) fn defer() -> Option<Deferred> {
        wit_requests::defer().map(|handle| Deferred { handle })
    }

    /// Answers the waiting client (once the current event's writes are durable). False when
    /// the client is gone: it timed out, closed its connection, or the object was reset.
    pub fn respond(self, response: Response) -> bool {
        wit_requests::respond(self.handle, &response.into_wit())
    }

    /// True while the client still waits for this answer: false once it timed out, went
    /// away (closed its connection) or was answered. A queue of waiters should skip (or
    /// drop) the ones that are not open.
    pub fn is_open(&self) -> bool {
        wit_requests::is_open(self.handle)
    }

    /// The host's handle for this request.
    pub fn handle(&self) -> u64 {
        self.handle
    }
}

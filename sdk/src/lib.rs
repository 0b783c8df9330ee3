//! Write Durable Objects for dohost (Durable Objects on your own machines) in Rust.
//!
//! A Durable Object is a type that implements [`DurableObject`] and carries the
//! [`durable_object`] attribute. Compiled for `wasm32-wasip2`, the crate becomes a
//! WebAssembly component that `dohost run` serves: one live instance per object ID, its
//! events (HTTP requests, alarms, WebSocket messages) delivered one at a time, with private
//! transactional [`Storage`].
//!
//! ```no_run,standalone_crate
//! use dohost_sdk::{durable_object, DurableObject, Env, Request, Response, Result, State};
//!
//! #[durable_object]
//! pub struct Counter {
//!     state: State,
//!     value: i64,
//! }
//!
//! impl DurableObject for Counter {
//!     fn new(state: State, _env: Env) -> Self {
//!         // The constructor runs before any event and may read storage
//!         // (the `blockConcurrencyWhile` of the JavaScript API).
//!         let value = state.storage().get("value").ok().flatten().unwrap_or(0);
//!         Counter { state, value }
//!     }
//!
//!     fn fetch(&mut self, req: Request) -> Result<Response> {
//!         match req.path() {
//!             "/increment" => {
//!                 self.value += 1;
//!                 self.state.storage().put("value", &self.value)?;
//!                 Ok(Response::text(self.value.to_string()))
//!             }
//!             "/get" => Ok(Response::text(self.value.to_string())),
//!             _ => Ok(Response::text("Not found").with_status(404)),
//!         }
//!     }
//! }
//! ```
//!
//! ## Layout
//! - [`http`]: the [`Request`] an object receives and the [`Response`] it returns.
//! - [`storage`]: typed key-value [`Storage`], [`ListOptions`] and [`Transaction`]s.
//! - [`objects`]: other objects through a binding ([`Namespace`], [`ObjectId`], [`Stub`])
//!   and [`Deferred`] responses.
//! - [`Worker`] and [`worker`]: the stateless entry point.
//! - [`streams`]: streamed responses ([`Stream`]) and server-sent events ([`SseEvent`]).
//! - [`sql`]: the object's SQLite database ([`Sql`], from [`Storage::sql`]): [`Rows`],
//!   [`Cursor`]s and the [`params!`] macro.
//! - [`error`]: the crate's [`Error`], [`StorageError`] and [`SqlError`].
#![deny(missing_docs)]

// The generated bindings name paths through `::dohost_sdk`, as user crates see them.
extern crate self as dohost_sdk;

pub mod error;
pub mod http;
pub mod objects;
pub mod router;
pub mod rpc;
pub mod sql;
pub mod storage;
pub mod streams;

pub use dohost_sdk_macros::{durable_object, rpc, worker};
pub use error::{
    CallErrorCode, Error, Result, SqlError, SqlErrorCode, StorageError, StorageErrorCode,
};
pub use http::{Request, Response};
pub use objects::{Deferred, Namespace, ObjectId, Stub};
pub use router::{Params, Router};
pub use sql::{Cursor, IntoParams, Row, Rows, Sql};
pub use storage::{AlarmTime, Collection, ListOptions, Storage, StorageLimits, Transaction};
pub use streams::{SseEvent, Stream};

use std::collections::HashMap;

/// A Durable Object class.
///
/// Implement `new` and `fetch`; the other handlers default to doing nothing. The host calls
/// them one at a time, never concurrently, and each runs to the end before the next event
/// starts. Writes made during a handler commit together when it returns; if the handler
/// panics (or exceeds its CPU or memory limit) they are discarded, the caller gets an error
/// and the next event gets a fresh instance built by `new`.
///
/// ```no_run,standalone_crate
/// # use dohost_sdk::{durable_object, AlarmInfo, DurableObject, Env, Request, Response, Result, State, WebSocket};
/// # #[durable_object]
/// # pub struct Hello { state: State }
/// impl DurableObject for Hello {
///     fn new(state: State, env: Env) -> Self { Hello { state } }
///     fn fetch(&mut self, req: Request) -> Result<Response> {
///         Ok(Response::text(format!("hello from {}", self.state.id())))
///     }
/// }
/// ```
pub trait DurableObject: Sized + 'static {
    /// Builds the instance before its first event. May read (and write) storage.
    fn new(state: State, env: Env) -> Self;

    /// Handles an HTTP request. An `Err` carrying a status ([`Error::status`]) is answered
    /// with it and its message; any other `Err` is a bare 500, its message logged by the
    /// host. Either way writes made before it still commit (use [`Storage::transaction`]
    /// to make them conditional).
    fn fetch(&mut self, req: Request) -> Result<Response>;

    /// Handles the object's alarm. On `Ok` the alarm is cleared unless the handler set a new
    /// one. An `Err` (or a panic) discards the handler's writes and makes the host retry:
    /// after 2 s, 4 s, 8 s, ... up to 6 retries, with [`AlarmInfo::retry_count`] counting them.
    fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let _ = info;
        Ok(())
    }

    /// A message arrived on one of this object's WebSockets.
    fn websocket_message(&mut self, ws: WebSocket, message: WebSocketMessage) {
        let _ = (ws, message);
    }

    /// One of this object's WebSockets closed.
    fn websocket_close(&mut self, ws: WebSocket, code: u16, reason: String, was_clean: bool) {
        let _ = (ws, code, reason, was_clean);
    }

    /// One of this object's WebSockets failed.
    fn websocket_error(&mut self, ws: WebSocket, error: String) {
        let _ = (ws, error);
    }
}

/// What an object knows about itself, and the door to its storage.
///
/// ```no_run,standalone_crate
/// # use dohost_sdk::{durable_object, AlarmInfo, DurableObject, Env, Request, Response, Result, State, WebSocket};
/// # #[durable_object]
/// # pub struct Hello { state: State }
/// # impl DurableObject for Hello {
/// fn new(state: State, _env: Env) -> Self {
///     println!("starting {} ({:?})", state.id(), state.name());
///     Self { state }
/// }
/// # fn fetch(&mut self, _req: Request) -> Result<Response> { Ok(Response::text("")) }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct State {
    id: String,
    name: Option<String>,
    binding: String,
    class_name: String,
    storage: Storage,
}

impl State {
    /// The object's ID: 64 lowercase hex characters.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name the ID was derived from, when it came from `id-from-name`.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The binding the object was reached through, e.g. `"counter"`.
    pub fn binding(&self) -> &str {
        &self.binding
    }

    /// The object's class name.
    pub fn class_name(&self) -> &str {
        &self.class_name
    }

    /// The object's private storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Defers the answer to the request the current `fetch` handles: return
    /// [`Response::deferred`] and answer later with [`Deferred::respond`]. None outside a
    /// `fetch`. The client gets 503 if the object resets or the host's deferral timeout
    /// passes first; an object with deferred requests is not evicted.
    pub fn defer(&self) -> Option<Deferred> {
        Deferred::defer()
    }
}

/// Plain variables from the configuration (`vars`).
///
/// ```no_run
/// # fn f(env: &dohost_sdk::Env) {
/// let greeting = env.var("GREETING").unwrap_or("hello");
/// # let _ = greeting;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The variable's value, if set.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Every variable.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    /// The objects of a binding (`env.COUNTER` in JavaScript).
    pub fn namespace(&self, binding: &str) -> Namespace {
        Namespace::new(binding)
    }
}

/// The stateless worker: receives every public request when dohost runs with `--worker`,
/// and routes it to objects (the seed's Worker Integration). Instances are not tied to an
/// object and may run concurrently; keep no state in them.
///
/// ```no_run,standalone_crate
/// # use dohost_sdk::{worker, Env, Request, Response, Result, Worker};
/// #[worker]
/// struct Router;
///
/// impl Worker for Router {
///     fn fetch(req: Request, env: Env) -> Result<Response> {
///         let ns = env.namespace("counter");
///         ns.get(&ns.id_from_name("global")?).fetch(req)
///     }
/// }
/// ```
pub trait Worker: 'static {
    /// Handles one public request.
    fn fetch(req: Request, env: Env) -> Result<Response>;
}

/// Passed to [`DurableObject::alarm`].
///
/// ```no_run,standalone_crate
/// # use dohost_sdk::{durable_object, AlarmInfo, DurableObject, Env, Request, Response, Result, State, WebSocket};
/// # #[durable_object]
/// # pub struct Hello { state: State }
/// # impl DurableObject for Hello {
/// # fn new(state: State, _env: Env) -> Self { Hello { state } }
/// # fn fetch(&mut self, _req: Request) -> Result<Response> { Ok(Response::text("")) }
/// fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
///     if info.is_retry { println!("retry number {}", info.retry_count); }
///     Ok(())
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmInfo {
    /// How many times this alarm already failed and was retried (0 on the first run).
    pub retry_count: u32,
    /// True when this run is a retry.
    pub is_retry: bool,
}

/// One of the object's WebSockets, stable across hibernation.
///
/// ```no_run,standalone_crate
/// # use dohost_sdk::{durable_object, AlarmInfo, DurableObject, Env, Request, Response, Result, State, WebSocket};
/// # #[durable_object]
/// # pub struct Hello { state: State }
/// # impl DurableObject for Hello {
/// # fn new(state: State, _env: Env) -> Self { Hello { state } }
/// # fn fetch(&mut self, _req: Request) -> Result<Response> { Ok(Response::text("")) }
/// fn websocket_close(&mut self, ws: WebSocket, code: u16, _r: String, _c: bool) {
///     println!("socket {} closed with {code}", ws.id());
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WebSocket {
    id: u64,
}

impl WebSocket {
    /// The socket's host-wide identifier.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends a text message; it leaves once the current event's writes are durable.
    pub fn send_text(&self, text: &str) -> Result<()> {
        ws::send(self.id, &wit::WebsocketMessage::Text(text.to_string())).map_err(Error::msg)
    }

    /// Sends a binary message.
    pub fn send_binary(&self, bytes: &[u8]) -> Result<()> {
        ws::send(self.id, &wit::WebsocketMessage::Binary(bytes.to_vec())).map_err(Error::msg)
    }

    /// Sends `value` encoded as JSON, as a text message.
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.send_text(&serde_json::to_string(value)?)
    }

    /// Sends `message` as it arrived (text or binary).
    pub fn send(&self, message: &WebSocketMessage) -> Result<()> {
        match message {
            WebSocketMessage::Text(t) => self.send_text(t),
            WebSocketMessage::Binary(b) => self.send_binary(b),
        }
    }

    /// Closes the socket (code 1000 or 3000-4999, reason at most 123 bytes).
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        ws::close(self.id, code, reason).map_err(Error::msg)
    }

    /// The tags the socket was accepted with.
    pub fn tags(&self) -> Vec<String> {
        ws::get_tags(self.id)
    }

    /// Keeps a value with the socket (as JSON, at most 2 KiB); it survives hibernation.
    pub fn serialize_attachment<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value)?;
        ws::serialize_attachment(self.id, &bytes).map_err(Error::msg)
    }

    /// The value kept with the socket, if any.
    pub fn deserialize_attachment<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>> {
        match ws::deserialize_attachment(self.id) {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// When the host last answered this socket with the auto-response (ms since the epoch).
    pub fn auto_response_timestamp(&self) -> Option<u64> {
        ws::get_auto_response_timestamp(self.id)
    }
}

impl State {
    /// Accepts the WebSocket upgrade of the request being handled, with tags; answer the
    /// fetch with [`Response::websocket`]. The host holds the connection: it stays open when
    /// the object is evicted, and a message brings the object back.
    ///
    /// ```no_run
    /// # use dohost_sdk::{Request, Response, Result, State};
    /// # struct Room { state: State }
    /// # impl Room { fn fetch(&mut self, req: Request) -> Result<Response> {
    /// if req.header("upgrade") == Some("websocket") {
    ///     let ws = self.state.accept_websocket(&req, &["room:lobby"])?;
    ///     return Ok(Response::websocket(ws));
    /// }
    /// # Ok(Response::text("")) } }
    /// ```
    pub fn accept_websocket(&self, req: &Request, tags: &[&str]) -> Result<WebSocket> {
        let _ = req;
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        ws::accept(&tags)
            .map(|id| WebSocket { id })
            .map_err(Error::msg)
    }

    /// The object's open WebSockets, or those carrying `tag`.
    pub fn get_websockets(&self, tag: Option<&str>) -> Vec<WebSocket> {
        ws::get_websockets(tag)
            .into_iter()
            .map(|id| WebSocket { id })
            .collect()
    }

    /// Sends `message` to every open socket of this object carrying `tag` (all of them
    /// with `None`), except `except` (usually the sender); returns how many it was sent to.
    /// The host keeps one copy of the message for all of them.
    ///
    /// ```no_run
    /// # use dohost_sdk::{Result, State, WebSocket, WebSocketMessage};
    /// # fn f(state: &State, ws: WebSocket, message: WebSocketMessage) -> Result<()> {
    /// state.broadcast(&message, Some("room:lobby"), Some(ws))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn broadcast(
        &self,
        message: &WebSocketMessage,
        tag: Option<&str>,
        except: Option<WebSocket>,
    ) -> Result<u32> {
        let message = match message {
            WebSocketMessage::Text(t) => wit::WebsocketMessage::Text(t.clone()),
            WebSocketMessage::Binary(b) => wit::WebsocketMessage::Binary(b.clone()),
        };
        ws::broadcast(&message, tag, except.map(|w| w.id)).map_err(Error::msg)
    }

    /// A (request, response) pair the host answers on this object's sockets without waking
    /// it, e.g. `Some(("ping", "pong"))`; `None` to stop.
    pub fn set_websocket_auto_response(&self, pair: Option<(&str, &str)>) {
        ws::set_auto_response(pair);
    }
}

/// A WebSocket message as it arrived.
///
/// ```no_run
/// # use dohost_sdk::WebSocketMessage;
/// # fn f(message: WebSocketMessage) {
/// match message {
///     WebSocketMessage::Text(t) => println!("{t}"),
///     WebSocketMessage::Binary(b) => println!("{} bytes", b.len()),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebSocketMessage {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
}

use __private::bindings::dohost::object::types as wit;
use __private::bindings::dohost::object::websockets as ws;

/// Glue used by the `#[durable_object]` expansion; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use std::cell::RefCell;

    #[allow(missing_docs)]
    pub mod bindings {
        wit_bindgen::generate!({
            world: "object",
            path: "../wit",
            pub_export_macro: true,
            export_macro_name: "__export_object",
            default_bindings_module: "::dohost_sdk::__private::bindings",
            runtime_path: "::dohost_sdk::__private::wit_bindgen::rt",
        });
    }

    use bindings::dohost::object::types as wit;
    #[allow(missing_docs)]
    pub mod worker_bindings {
        wit_bindgen::generate!({
            world: "worker",
            path: "../wit",
            pub_export_macro: true,
            export_macro_name: "__export_worker",
            default_bindings_module: "::dohost_sdk::__private::worker_bindings",
            runtime_path: "::dohost_sdk::__private::wit_bindgen::rt",
            type_section_suffix: "worker",
            with: {
                "dohost:object/types@0.1.0": crate::__private::bindings::dohost::object::types,
                "dohost:object/objects@0.1.0": crate::__private::bindings::dohost::object::objects,
            },
        });
    }

    pub use bindings::exports::dohost::object::handler::Guest;
    pub use worker_bindings::exports::dohost::object::worker_handler::Guest as WorkerGuest;

    pub use wit::{Request as WitRequest, Response as WitResponse};

    /// Runs a `Worker` for the generated export trait.
    pub fn run_worker<T: Worker>(
        request: wit::Request,
        env: Vec<(String, String)>,
    ) -> wit::Response {
        panic_hook::install();
        let env = Env {
            vars: env.into_iter().collect(),
        };
        let response = match T::fetch(Request::from_wit(request), env) {
            Ok(response) => response,
            Err(err) => Response::from_error(&err),
        };
        response.into_wit()
    }
    pub use crate::rpc::Methods;
    use bindings::exports::dohost::object::handler::GuestDurableObject;

    mod panic_hook {
        use std::sync::Once;

        /// A guest's panic message without the standard hook's advice to set
        /// `RUST_BACKTRACE` (a guest cannot): the host logs it with the object's name and
        /// the wasm backtrace, and answers the event's caller with an error.
        pub fn install() {
            static ONCE: Once = Once::new();
            ONCE.call_once(|| {
                std::panic::set_hook(Box::new(|info| {
                    let message = info
                        .payload()
                        .downcast_ref::<&str>()
                        .copied()
                        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                        .unwrap_or("(a panic without a message)");
                    let at = info
                        .location()
                        .map(|l| format!(" at {}:{}", l.file(), l.line()))
                        .unwrap_or_default();
                    eprintln!(
                        "panicked{at}: {message} (this event's writes are discarded and the \
                         instance is rebuilt for the next event; the backtrace follows in \
                         the host's log)"
                    );
                }));
            });
        }
    }
    pub use wit_bindgen;

    /// The exported resource: the user's object behind a `RefCell`, because the component
    /// model hands methods `&self` while events are strictly one at a time.
    pub struct Instance<T> {
        inner: RefCell<T>,
    }

    impl<T: DurableObject + crate::rpc::Methods> GuestDurableObject for Instance<T> {
        fn new(ctx: wit::ObjectContext) -> Self {
            panic_hook::install();
            let state = State {
                id: ctx.id,
                name: ctx.name,
                binding: ctx.binding,
                class_name: ctx.class_name,
                storage: Storage::new(),
            };
            let env = Env {
                vars: ctx.env.into_iter().collect(),
            };
            Instance {
                inner: RefCell::new(T::new(state, env)),
            }
        }

        fn fetch(&self, request: wit::Request) -> wit::Response {
            let request = Request::from_wit(request);
            if let Some(method) = crate::rpc::method_of(&request) {
                let method = method.to_string();
                let result = crate::rpc::Methods::call(
                    &mut *self.inner.borrow_mut(),
                    &method,
                    request.body(),
                );
                return crate::rpc::answer(&method, result).into_wit();
            }
            let response = match self.inner.borrow_mut().fetch(request) {
                Ok(response) => response,
                Err(err) => Response::from_error(&err),
            };
            response.into_wit()
        }

        fn alarm(&self, info: wit::AlarmInfo) -> std::result::Result<(), String> {
            let info = AlarmInfo {
                retry_count: info.retry_count,
                is_retry: info.is_retry,
            };
            self.inner
                .borrow_mut()
                .alarm(info)
                .map_err(|e| e.to_string())
        }

        fn websocket_message(&self, ws: u64, message: wit::WebsocketMessage) {
            let message = match message {
                wit::WebsocketMessage::Text(t) => WebSocketMessage::Text(t),
                wit::WebsocketMessage::Binary(b) => WebSocketMessage::Binary(b),
            };
            self.inner
                .borrow_mut()
                .websocket_message(WebSocket { id: ws }, message)
        }

        fn websocket_close(&self, ws: u64, code: u16, reason: String, was_clean: bool) {
            self.inner
                .borrow_mut()
                .websocket_close(WebSocket { id: ws }, code, reason, was_clean)
        }

        fn websocket_error(&self, ws: u64, error: String) {
            self.inner
                .borrow_mut()
                .websocket_error(WebSocket { id: ws }, error)
        }
    }
}

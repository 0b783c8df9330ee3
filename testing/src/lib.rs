//! Test Durable Objects for dohost: the real host in-process, on a clock the test moves.
//!
//! A [`Harness`] serves object components (built `.wasm` files, or the crate the test
//! belongs to, built for you) on a loopback port with real storage in a temporary
//! directory. Talk to it over HTTP and WebSockets, move its clock with
//! [`Harness::advance`] and run the alarms that came due with [`Harness::run_due_alarms`]
//! — which returns once they have run, so "the alarm has not fired" needs no sleep.
//!
//! ```no_run
//! use dohost_testing::Harness;
//! use std::time::Duration;
//!
//! let host = Harness::builder().crate_dir(env!("CARGO_MANIFEST_DIR")).start();
//! assert_eq!(host.post("/counter/a/increment", "").text(), "1");
//! host.advance(Duration::from_secs(60));
//! assert_eq!(host.run_due_alarms(), 0);
//! ```
//!
//! Every call blocks (the host runs on the harness's own threads): write plain `#[test]`
//! functions, not `#[tokio::test]`.

#[cfg(target_family = "wasm")]
compile_error!(
    "dohost-testing runs the host on this machine, not inside wasm: run an object's tests \
     with `cargo test --target host-tuple` (the crate's .cargo/config.toml builds for \
     wasm32-wasip2 by default)"
);

#[cfg(not(target_family = "wasm"))]
mod client;
#[cfg(not(target_family = "wasm"))]
mod component;
#[cfg(not(target_family = "wasm"))]
mod harness;

#[cfg(not(target_family = "wasm"))]
pub use client::{Message, Request, Response, WebSocket};
#[cfg(not(target_family = "wasm"))]
pub use dohost::Limits;
#[cfg(not(target_family = "wasm"))]
pub use harness::{Builder, Harness, Pending, Stored};

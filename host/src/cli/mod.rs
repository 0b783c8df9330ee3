//! The `dohost` command's own modules: its arguments, the subcommands besides `run`
//! (clients of a running node, and `new`), and `run`'s raising of the open-file limit;
//! `main.rs` dispatches.

pub mod args;
pub mod fds;
pub mod inspect;
pub mod new;
pub mod operate;

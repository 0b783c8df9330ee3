//! The `dohost` command's subcommands besides `run`: clients of a running node, and
//! `new`; and `run`'s raising of the open-file limit (the binary's own modules; `main.rs`
//! parses and dispatches).

pub mod fds;
pub mod inspect;
pub mod new;
pub mod operate;

//! The `dohost` command's subcommands besides `run`: clients of a running node, and
//! `new` (the binary's own modules; `main.rs` parses and dispatches).

pub mod inspect;
pub mod new;
pub mod operate;

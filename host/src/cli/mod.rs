//! The `dohost` command's subcommands that are clients of a running node (the binary's
//! own modules; `main.rs` parses and dispatches).

pub mod inspect;
pub mod operate;

//! Why a guest call failed, in a sentence for the caller (details go to the log), and
//! in a word for the metrics.

use crate::wasm::state::{CpuLimitExceeded, MemoryBudgetExhausted, MemoryLimitExceeded};

/// A short account of why an event failed, for the caller; the full error goes to the log.
pub fn describe_failure(err: &wasmtime::Error, memory_hit: Option<usize>) -> String {
    if let Some(e) = err.downcast_ref::<CpuLimitExceeded>() {
        return e.to_string();
    }
    if let Some(e) = err.downcast_ref::<MemoryLimitExceeded>() {
        return e.to_string();
    }
    if let Some(e) = err.downcast_ref::<MemoryBudgetExhausted>() {
        return e.to_string();
    }
    if let Some(asked) = memory_hit {
        return format!("memory limit exceeded (asked for {asked} bytes)");
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return format!("the object called exit (status {})", exit.0);
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => "stack overflow".to_string(),
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "the object panicked or aborted (see the host log)".to_string()
        }
        Some(trap) => format!("trap: {trap}"),
        // Anything else carries the guest's backtrace and host internals: those stay in
        // the log, which the caller's line points to.
        None => "the object failed (see the host log)".to_string(),
    }
}

/// The failure's cause in one word, for the metrics' `cause` label: `cpu`, `memory`,
/// `exit`, `stack`, `panic`, `trap` or `error`.
pub fn failure_cause(err: &wasmtime::Error, memory_hit: Option<usize>) -> &'static str {
    if err.downcast_ref::<CpuLimitExceeded>().is_some() {
        return "cpu";
    }
    if err.downcast_ref::<MemoryLimitExceeded>().is_some()
        || err.downcast_ref::<MemoryBudgetExhausted>().is_some()
        || memory_hit.is_some()
    {
        return "memory";
    }
    if err.downcast_ref::<wasmtime_wasi::I32Exit>().is_some() {
        return "exit";
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => "stack",
        Some(wasmtime::Trap::UnreachableCodeReached) => "panic",
        Some(_) => "trap",
        None => "error",
    }
}

//! The counter's typed methods: the counter implements them, callers call them on a stub.

use dohost_sdk::{Result, rpc};

#[rpc]
pub trait Counting {
    /// Adds `by` to the count and returns the new count.
    fn increment(&mut self, by: i64) -> Result<i64>;
    /// The count.
    fn get(&self) -> Result<i64>;
}

//! An answer's body held against the host's memory budget (`max_memory`) until its memory
//! is freed, so answers that clients do not read count like everything else the host holds
//! for them (and a full budget refuses new requests instead of the kernel killing the host).

use crate::services::memory::{Held, MemoryBudget};
use axum::body::Body;
use bytes::Bytes;
use std::sync::Arc;

/// An answer's bytes and their share of the budget: hyper writes pieces of the one
/// allocation, which is freed (and the share given back) when the last piece is dropped.
struct Counted {
    bytes: Vec<u8>,
    _held: Held,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The body for an answer of `bytes`, held against `budget` even past its limit: the
/// event behind it has run and its writes are durable, so the answer must leave; the
/// budget being over its limit refuses new requests and events until answers drain.
pub fn held(bytes: Vec<u8>, budget: Arc<MemoryBudget>) -> Body {
    if bytes.is_empty() {
        return Body::empty();
    }
    let held = Held::forced(budget, bytes.len());
    Body::from(Bytes::from_owner(Counted { bytes, _held: held }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::body::Body as _;

    /// The budget holds the answer until the last piece of it is gone, even past the limit.
    #[tokio::test]
    async fn an_answer_is_held_until_its_last_piece_is_dropped() {
        let budget = MemoryBudget::new(100 * 1024);
        let mut body = held(vec![1u8; 150 * 1024], budget.clone());
        assert_eq!(budget.used(), 150 * 1024, "held even past the limit");
        assert_eq!(body.size_hint().exact(), Some(150 * 1024));
        let piece = body.frame().await.unwrap().unwrap().into_data().unwrap();
        drop(body);
        assert_eq!(
            budget.used(),
            150 * 1024,
            "a piece still being written holds it"
        );
        drop(piece);
        assert_eq!(budget.used(), 0);
    }
}

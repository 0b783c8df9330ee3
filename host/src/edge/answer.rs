//! An answer's body held against the host's memory budget (`max_memory`) until it has been
//! handed to the connection, so answers that clients do not read count like everything else
//! the host holds for them (and a full budget refuses new requests instead of the kernel
//! killing the host).

use crate::services::memory::{Held, MemoryBudget};
use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The most of an answer handed to the connection at once: hyper asks for the next piece
/// only once its write buffer has room, so the budget is given back as the client reads.
const PIECE_BYTES: usize = 64 * 1024;

/// A whole answer, handed out a piece at a time; what has not been handed out is held.
pub struct HeldAnswer {
    rest: Bytes,
    held: Held,
}

impl HeldAnswer {
    /// Holds `bytes` against `budget` even past its limit: the event behind the answer has
    /// run and its writes are durable, so the answer must leave; the budget being over its
    /// limit refuses new requests until answers drain.
    pub fn body(bytes: Bytes, budget: Arc<MemoryBudget>) -> Body {
        let held = Held::forced(budget, bytes.len());
        Body::new(HeldAnswer { rest: bytes, held })
    }
}

impl hyper::body::Body for HeldAnswer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.rest.is_empty() {
            return Poll::Ready(None);
        }
        let piece = this.rest.split_to(this.rest.len().min(PIECE_BYTES));
        this.held.shrink(piece.len());
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::body::Body as _;

    /// The budget holds what is not yet handed out, and nothing once it all is.
    #[tokio::test]
    async fn an_answer_is_held_until_handed_out() {
        let budget = MemoryBudget::new(100 * 1024);
        let mut body = HeldAnswer::body(Bytes::from(vec![1u8; 150 * 1024]), budget.clone());
        assert_eq!(budget.used(), 150 * 1024, "held even past the limit");
        assert_eq!(body.size_hint().exact(), Some(150 * 1024));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), PIECE_BYTES);
        assert_eq!(budget.used(), 150 * 1024 - PIECE_BYTES);
        drop(body);
        assert_eq!(
            budget.used(),
            0,
            "an answer dropped unread gives its bytes back"
        );
    }
}

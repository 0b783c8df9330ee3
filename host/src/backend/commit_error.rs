//! What a failed commit tells the waiting requests: the backend's failure as a commit
//! error of a kind the edge answers by (507, 503 with Retry-After, or 500), and the
//! refusal given to batches while storage fails.

use super::{Failure, FailureKind};
use std::sync::Arc;

/// Why a commit did not become durable.
#[derive(Debug, Clone)]
pub struct CommitError {
    pub kind: CommitErrorKind,
    pub message: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitErrorKind {
    /// The disk (or quota) is full: nothing was written; it will work once space is freed.
    DiskFull,
    /// The disk failed otherwise, or the database refused the write.
    Failed,
    /// The database could not be reached: nothing was written; it will work once the
    /// host has reconnected.
    Unavailable,
    /// The connection was lost while the database committed: the write may or may not
    /// be durable (the object is rebuilt from what is).
    Unknown,
    /// Another dohost took over this object's storage: nothing was written, and this host
    /// stops.
    Fenced,
    /// An earlier write of the same object failed, so this one belongs to a discarded
    /// history.
    Stale,
    /// The host is stopping.
    Stopped,
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl CommitError {
    pub fn new(kind: CommitErrorKind, message: impl Into<Arc<str>>) -> Self {
        CommitError {
            kind,
            message: message.into(),
        }
    }
}

/// The commit error a backend failure is reported as.
pub fn of(failure: &Failure) -> CommitError {
    match failure.kind {
        FailureKind::DiskFull => CommitError::new(
            CommitErrorKind::DiskFull,
            "the disk is full; nothing was written (free space: writes are \
             accepted again without a restart)",
        ),
        FailureKind::Unreachable => CommitError::new(
            CommitErrorKind::Unavailable,
            format!(
                "the database is unreachable; nothing was written (try again: \
                 the host reconnects): {:#}",
                failure.error
            ),
        ),
        FailureKind::Unknown => CommitError::new(
            CommitErrorKind::Unknown,
            format!(
                "the connection to the database was lost during COMMIT: this \
                 write may or may not be durable: {:#}",
                failure.error
            ),
        ),
        FailureKind::Fenced => CommitError::new(
            CommitErrorKind::Fenced,
            format!(
                "another dohost took over this storage; nothing was written: {:#}",
                failure.error
            ),
        ),
        FailureKind::ShardMoved => CommitError::new(
            CommitErrorKind::Unavailable,
            format!(
                "this object's shard is not held by this node (it moved); \
                 nothing was written: {:#}",
                failure.error
            ),
        ),
        FailureKind::Io | FailureKind::Other => CommitError::new(
            CommitErrorKind::Failed,
            format!("storage commit failed: {:#}", failure.error),
        ),
    }
}

/// Why a batch is refused untried while storage fails: the failure's own error when it
/// says nothing was written (a full disk, fenced), else "unavailable" — unlike the failure
/// that started it (an outcome may have been unknown), this batch was never sent.
pub fn refusal(failure: &CommitError) -> CommitError {
    match failure.kind {
        CommitErrorKind::DiskFull | CommitErrorKind::Fenced | CommitErrorKind::Unavailable => {
            failure.clone()
        }
        _ => CommitError::new(
            CommitErrorKind::Unavailable,
            format!(
                "storage is failing, so nothing was written (try again shortly): {}",
                failure.message
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards against a batch refused untried (while storage fails) being reported as the
    /// failure that started it: after an unknown outcome, a refused write was never sent,
    /// so it is "unavailable" (503), not "may or may not be durable" (500).
    #[test]
    fn a_batch_refused_untried_says_nothing_was_written() {
        let unknown = CommitError::new(CommitErrorKind::Unknown, "lost during COMMIT");
        assert_eq!(refusal(&unknown).kind, CommitErrorKind::Unavailable);
        let failed = CommitError::new(CommitErrorKind::Failed, "I/O error");
        assert_eq!(refusal(&failed).kind, CommitErrorKind::Unavailable);
        let full = CommitError::new(CommitErrorKind::DiskFull, "full");
        assert_eq!(refusal(&full).kind, CommitErrorKind::DiskFull);
    }
}

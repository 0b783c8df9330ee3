//! What the edge answers when it cannot deliver a request, or the object failed: a status
//! and a sentence for the caller; internals stay in the log.

use crate::backend::committer::{CommitError, CommitErrorKind};
use crate::object::EventError;
use crate::runtime::FetchError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What the edge answers when it cannot deliver a request, or the object failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the limit of {0} bytes (max_body_bytes)")]
    BodyTooLarge(usize),
    #[error("object error: {0}")]
    ObjectFailed(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("the write could not be made durable: {0}")]
    CommitFailed(String),
    /// The disk is full: writes are refused until space is freed (reads still work).
    #[error("the write could not be made durable: {0}")]
    InsufficientStorage(String),
    /// A request forwarded by another node to one that does not serve the object (the
    /// sender's view was out of date; it tries again). Nothing ran.
    #[error("{0}")]
    Misdirected(String),
    /// The node a request was forwarded to took it and then failed to answer: the request
    /// may or may not have run there.
    #[error("{0}")]
    Unanswered(String),
    /// The request's body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// A forwarded request without the cluster's secret.
    #[error("{0}")]
    Forbidden(String),
}

/// What `Retry-After` tells a client refused for lack of capacity (a slot, a worker): the
/// condition is usually gone within a second.
pub const RETRY_AFTER_SECS: u32 = 1;

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::ObjectFailed(_) | HttpError::CommitFailed(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            HttpError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::Unanswered(_) => StatusCode::BAD_GATEWAY,
            HttpError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        };
        let mut body = self.to_string();
        body.push('\n');
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// A refused request: an event's failure, or a write refused (507 when the disk is full:
/// it will pass once space is freed; 503 when nothing was written and a retry may pass;
/// 500 otherwise, an unknown outcome included).
pub fn fetch_error(e: FetchError) -> HttpError {
    match e {
        FetchError::Event(EventError::Failed(m)) => HttpError::ObjectFailed(m),
        FetchError::Event(EventError::Unavailable(m)) => HttpError::Unavailable(m),
        FetchError::Commit(e) => commit_error(e),
    }
}

fn commit_error(e: CommitError) -> HttpError {
    match e.kind {
        CommitErrorKind::DiskFull => HttpError::InsufficientStorage(e.to_string()),
        // Nothing was written and a retry can succeed (here once reconnected, or on the
        // node that took over).
        CommitErrorKind::Unavailable | CommitErrorKind::Fenced => {
            HttpError::Unavailable(e.to_string())
        }
        CommitErrorKind::Failed
        | CommitErrorKind::Unknown
        | CommitErrorKind::Stale
        | CommitErrorKind::Stopped => HttpError::CommitFailed(e.to_string()),
    }
}

//! `GET /backup`: a consistent copy of the node's storage, written to a private file beside
//! the data while writes go on and streamed to the client (a redb database file; `dohost
//! restore` puts it into an empty data directory), one at a time.

use super::{AdminState, MAX_CONCURRENT_BACKUPS};
use crate::runtime::inspect::InspectError;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

pub async fn backup(State(s): State<AdminState>) -> Result<Response, InspectError> {
    // Refused rather than queued: a backup may take minutes, and the caller can say
    // when to try again better than a connection left waiting.
    let Ok(running) = s.backups.clone().try_acquire_owned() else {
        return Ok(super::busy(format!(
            "a backup is running already (at most {MAX_CONCURRENT_BACKUPS} at once: each \
             holds a copy of the database on disk until its download ends); try again when \
             it is done"
        )));
    };
    let runtime = s.runtime.clone();
    let copy = tokio::task::spawn_blocking(move || runtime.backup())
        .await
        .map_err(|e| InspectError::Unavailable(format!("the backup stopped: {e}")))??;
    let stream =
        tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(copy)).map(move |chunk| {
            // Held by the stream: the next backup may start once this download is done
            // (and the copy, closed, gives its space back).
            let _ = &running;
            chunk
        });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response())
}

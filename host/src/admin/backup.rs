//! `GET /backup`: a consistent copy of the node's storage, written to a temporary file
//! while writes go on and streamed to the client (a redb database file; `dohost restore`
//! puts it into an empty data directory).

use super::AdminState;
use crate::runtime::inspect::InspectError;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// The temporary copy, removed once the answer is sent (or abandoned).
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub async fn backup(State(s): State<AdminState>) -> Result<Response, InspectError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "dohost-backup-{}-{}.redb",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let copy = Removed(path.clone());
    let runtime = s.runtime.clone();
    let to = path.clone();
    tokio::task::spawn_blocking(move || runtime.backup_to(&to))
        .await
        .map_err(|e| InspectError::Unavailable(format!("the backup stopped: {e}")))??;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| InspectError::Unavailable(format!("cannot read the backup: {e}")))?;
    let stream = tokio_util::io::ReaderStream::new(file).map(move |chunk| {
        // Held by the stream: the file goes when the answer is done.
        let _ = &copy;
        chunk
    });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response())
}

//! The admin API's read-only view of objects: the classes, a class's objects with their
//! names (paginated by ID), an object's entries (values as JSON when they parse, else
//! base64) and its alarm.

use super::AdminState;
use crate::runtime::inspect::{InspectError, MAX_PAGE, Range};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

impl IntoResponse for InspectError {
    fn into_response(self) -> Response {
        let status = match &self {
            InspectError::NotFound(_) => StatusCode::NOT_FOUND,
            InspectError::BadRequest(_) => StatusCode::BAD_REQUEST,
            InspectError::Storage(_) | InspectError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// `GET /classes`
pub async fn classes(State(s): State<AdminState>) -> Json<Value> {
    let classes: Vec<Value> = s
        .runtime
        .classes()
        .into_iter()
        .map(|c| json!({"binding": c.binding, "class": c.class_name, "namespace": c.namespace}))
        .collect();
    Json(json!({ "classes": classes }))
}

#[derive(Deserialize)]
pub struct Page {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /classes/{binding}/objects?after=ID&limit=N`: `next` is the ID to pass as `after`
/// for the following page (null on the last).
pub async fn objects(
    State(s): State<AdminState>,
    Path(binding): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, InspectError> {
    let limit = page.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let found = s
        .runtime
        .list_objects(&binding, page.after.as_deref(), limit)
        .await?;
    let next = (found.len() == limit).then(|| found.last().map(|(id, _)| id.to_string()));
    let objects: Vec<Value> = found
        .into_iter()
        .map(|(id, name)| json!({"id": id.to_string(), "name": name}))
        .collect();
    Ok(Json(json!({ "objects": objects, "next": next.flatten() })))
}

#[derive(Deserialize)]
pub struct Entries {
    prefix: Option<String>,
    start: Option<String>,
    end: Option<String>,
    #[serde(default)]
    reverse: bool,
    limit: Option<usize>,
}

/// `GET /objects/{binding}/{id}/entries?prefix=&start=&end=&reverse=&limit=`
pub async fn entries(
    State(s): State<AdminState>,
    Path((binding, id)): Path<(String, String)>,
    Query(q): Query<Entries>,
) -> Result<Json<Value>, InspectError> {
    let range = Range {
        prefix: q.prefix,
        start: q.start,
        end: q.end,
        reverse: q.reverse,
        limit: q.limit,
    };
    let found = s.runtime.entries(&binding, &id, &range).await?;
    let entries: Vec<Value> = found
        .into_iter()
        .map(
            |(key, value)| match serde_json::from_slice::<Value>(&value) {
                Ok(v) => json!({"key": key, "json": v}),
                Err(_) => json!({
                    "key": key,
                    "base64": base64::engine::general_purpose::STANDARD.encode(&value),
                }),
            },
        )
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

/// `GET /objects/{binding}/{id}/alarm`: milliseconds since the Unix epoch, or null.
pub async fn alarm(
    State(s): State<AdminState>,
    Path((binding, id)): Path<(String, String)>,
) -> Result<Json<Value>, InspectError> {
    let at = s.runtime.alarm_of(&binding, &id).await?;
    Ok(Json(json!({ "alarm": at })))
}

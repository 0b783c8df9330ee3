//! The admin API's changes: to objects — put or delete an entry, delete them all, set,
//! delete or run the alarm (each an event of the object, answered once durable), evict the
//! instance, list its sockets and streams — and to a class's code (a deploy).

use super::{AdminState, MAX_CONCURRENT_DEPLOYS};
use crate::object::EditOp;
use crate::runtime::inspect::InspectError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Value, json};

type Answer = Result<Json<Value>, InspectError>;

async fn apply(s: &AdminState, binding: &str, id: &str, op: EditOp) -> Answer {
    s.runtime.edit(binding, id, op).await?;
    Ok(Json(json!({ "ok": true })))
}

/// `PUT /objects/{binding}/{id}/entries/{key}`: the body is the stored value, as is (the
/// SDK stores JSON: `5`, `"text"`, `{"a": 1}`).
pub async fn put(
    State(s): State<AdminState>,
    Path((binding, id, key)): Path<(String, String, String)>,
    body: Bytes,
) -> Answer {
    apply(&s, &binding, &id, EditOp::Put { key, value: body }).await
}

/// `DELETE /objects/{binding}/{id}/entries/{key}`
pub async fn delete(
    State(s): State<AdminState>,
    Path((binding, id, key)): Path<(String, String, String)>,
) -> Answer {
    apply(&s, &binding, &id, EditOp::Delete { key }).await
}

/// `DELETE /objects/{binding}/{id}/entries`: every entry.
pub async fn delete_all(
    State(s): State<AdminState>,
    Path((binding, id)): Path<(String, String)>,
) -> Answer {
    apply(&s, &binding, &id, EditOp::DeleteAll).await
}

/// `PUT /objects/{binding}/{id}/alarm`: the body is the time, in milliseconds since the
/// Unix epoch.
pub async fn set_alarm(
    State(s): State<AdminState>,
    Path((binding, id)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let at: u64 = std::str::from_utf8(&body)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| {
            InspectError::BadRequest(
                "the body must be the alarm's time in milliseconds since the Unix epoch".into(),
            )
        })?;
    apply(&s, &binding, &id, EditOp::SetAlarm(at)).await
}

/// `DELETE /objects/{binding}/{id}/alarm`
pub async fn delete_alarm(
    State(s): State<AdminState>,
    Path((binding, id)): Path<(String, String)>,
) -> Answer {
    apply(&s, &binding, &id, EditOp::DeleteAlarm).await
}

/// `POST /objects/{binding}/{id}/sql`: the body is a read-only SQL query, run as one of the
/// object's events; answers its columns and rows (blobs in base64).
pub async fn sql(
    State(s): State<AdminState>,
    Path((binding, id)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let query = String::from_utf8(body.to_vec())
        .map_err(|_| InspectError::BadRequest("the query must be UTF-8".into()))?;
    let found = s.runtime.sql(&binding, &id, query).await?;
    let rows: Vec<Vec<Value>> = found
        .rows
        .into_iter()
        .map(|row| row.into_iter().map(sql_json).collect())
        .collect();
    Ok(Json(json!({ "columns": found.columns, "rows": rows })))
}

/// A SQL value as JSON: blobs as `{"base64": ...}`.
fn sql_json(v: rusqlite::types::Value) -> Value {
    use base64::Engine;
    use rusqlite::types::Value as V;
    match v {
        V::Null => Value::Null,
        V::Integer(i) => json!(i),
        V::Real(f) => json!(f),
        V::Text(t) => json!(t),
        V::Blob(b) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) }),
    }
}

/// `POST /objects/{binding}/{id}/alarm/run`: the alarm, due now.
pub async fn run_alarm(
    State(s): State<AdminState>,
    Path((binding, id)): Path<(String, String)>,
) -> Answer {
    let now = s.runtime.clock().now_ms();
    apply(&s, &binding, &id, EditOp::SetAlarm(now)).await
}

/// `POST /objects/{binding}/{id}/evict`: drops the instance if it is idle.
pub async fn evict(
    State(s): State<AdminState>,
    Path((binding, id)): Path<(String, String)>,
) -> Answer {
    let evicted = s.runtime.evict_id(&binding, &id)?;
    Ok(Json(json!({ "evicted": evicted })))
}

/// `GET /objects/{binding}/{id}/sockets`: the object's open WebSockets and streamed
/// responses here, with their tags.
pub async fn sockets(
    State(s): State<AdminState>,
    Path((binding, id)): Path<(String, String)>,
) -> Answer {
    let listed = |all: Vec<(u64, Vec<String>)>| -> Vec<Value> {
        all.into_iter()
            .map(|(id, tags)| json!({"id": id, "tags": tags}))
            .collect()
    };
    let open = s.runtime.connections_of(&binding, &id)?;
    Ok(Json(
        json!({ "sockets": listed(open.sockets), "streams": listed(open.streams) }),
    ))
}

/// `POST /classes/{binding}/deploy`: the body is the class's new component (.wasm).
pub async fn deploy(
    State(s): State<AdminState>,
    Path(binding): Path<String>,
    body: Bytes,
) -> Answer {
    // `Vec::from` takes the buffer over when nothing else holds it (no second copy).
    let version = s.runtime.deploy(&binding, Vec::from(body)).await?;
    Ok(Json(json!({ "version": version })))
}

/// At most `MAX_CONCURRENT_DEPLOYS` deploys run at once (their bodies and compilations
/// held in memory); one more is refused before its body is read.
pub async fn bounded_deploys(
    State(s): State<AdminState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Ok(_running) = s.deploys.clone().try_acquire_owned() else {
        return super::busy(format!(
            "{MAX_CONCURRENT_DEPLOYS} deploys are running already (at most \
             {MAX_CONCURRENT_DEPLOYS} at once); try again when one is done"
        ));
    };
    next.run(req).await
}

//! `impl sql::Host for ObjectState`: converts between WIT types and the object's database,
//! bounds each call by the event's CPU time left and the instance's memory limit, and
//! charges the time SQLite ran to the event.

use super::Cursor;
use crate::services::objstore::sql::{SqlError, SqlErrorCode, SqlRows, value_bytes};
use crate::wasm::bindings::sql::{self as wit, Error, ErrorCode};
use crate::wasm::state::{EPOCH_TICK, ObjectState};
use rusqlite::types::Value;
use std::time::Instant;
use wasmtime::component::Resource;

type Res<T> = wasmtime::Result<Result<T, Error>>;

fn to_wit(e: SqlError) -> Error {
    let code = match e.code {
        SqlErrorCode::Syntax => ErrorCode::Syntax,
        SqlErrorCode::Constraint => ErrorCode::Constraint,
        SqlErrorCode::Mismatch => ErrorCode::Mismatch,
        SqlErrorCode::NotAuthorized => ErrorCode::NotAuthorized,
        SqlErrorCode::TooLarge => ErrorCode::TooLarge,
        SqlErrorCode::StorageFull => ErrorCode::StorageFull,
        SqlErrorCode::Interrupted => ErrorCode::Interrupted,
        SqlErrorCode::SqlDisabled => ErrorCode::SqlDisabled,
        SqlErrorCode::Internal | SqlErrorCode::TransactionLost => ErrorCode::Internal,
    };
    Error {
        code,
        message: e.message,
    }
}

fn from_wit(v: wit::Value) -> Value {
    match v {
        wit::Value::Null => Value::Null,
        wit::Value::Integer(i) => Value::Integer(i),
        wit::Value::Real(f) => Value::Real(f),
        wit::Value::Text(s) => Value::Text(s),
        wit::Value::Blob(b) => Value::Blob(b),
    }
}

fn value_to_wit(v: Value) -> wit::Value {
    match v {
        Value::Null => wit::Value::Null,
        Value::Integer(i) => wit::Value::Integer(i),
        Value::Real(f) => wit::Value::Real(f),
        Value::Text(s) => wit::Value::Text(s),
        Value::Blob(b) => wit::Value::Blob(b),
    }
}

fn row_to_wit(row: Vec<Value>) -> Vec<wit::Value> {
    row.into_iter().map(value_to_wit).collect()
}

fn row_bytes(row: &[Value]) -> usize {
    row.iter().map(value_bytes).sum()
}

impl ObjectState {
    /// Runs a call's statements within the event's CPU time left; the time they took is
    /// the event's, and a statement stopped at the limit leaves the event at its limit (it
    /// traps as soon as the guest runs again). A transaction SQLite rolled back itself
    /// fails the event here (the outer error: a trap).
    async fn run_sql(
        &mut self,
        query: &str,
        params: Vec<wit::Value>,
    ) -> wasmtime::Result<Result<SqlRows, SqlError>> {
        let params: Vec<Value> = params.into_iter().map(from_wit).collect();
        let left = self.cpu.max_ticks.saturating_sub(self.cpu.used_ticks) as u32;
        let started = Instant::now();
        let deadline = started + EPOCH_TICK * left;
        let max_bytes = self.limiter.max_memory();
        let result = self
            .storage
            .store
            .sql_exec(query, &params, Some(deadline), max_bytes)
            .await;
        let spent = (started.elapsed().as_nanos() / EPOCH_TICK.as_nanos()) as u64;
        self.cpu.used_ticks = self.cpu.used_ticks.saturating_add(spent);
        match &result {
            Err(e) if e.code == SqlErrorCode::Interrupted => {
                self.cpu.used_ticks = self.cpu.max_ticks;
            }
            Err(e) if e.code == SqlErrorCode::TransactionLost => {
                return Err(wasmtime::Error::msg(e.message.clone()));
            }
            _ => {}
        }
        Ok(result)
    }
}

impl wit::Host for ObjectState {
    async fn exec(&mut self, query: String, params: Vec<wit::Value>) -> Res<wit::Rows> {
        Ok(self
            .run_sql(&query, params)
            .await?
            .map(|r| wit::Rows {
                columns: r.columns,
                rows: r.rows.into_iter().map(row_to_wit).collect(),
                rows_read: r.rows_read,
                rows_written: r.rows_written,
                last_insert_rowid: r.last_insert_rowid,
            })
            .map_err(to_wit))
    }

    async fn query(&mut self, query: String, params: Vec<wit::Value>) -> Res<Resource<Cursor>> {
        let rows = match self.run_sql(&query, params).await? {
            Ok(rows) => rows,
            Err(e) => return Ok(Err(to_wit(e))),
        };
        let bytes: usize = rows.rows.iter().map(|r| row_bytes(r)).sum();
        // Cursors left open hold their rows in the host: together they may hold what one
        // call may answer (the instance's memory limit).
        let max = self.limiter.max_memory();
        if self.sql_cursor_bytes + bytes > max {
            return Ok(Err(Error {
                code: ErrorCode::TooLarge,
                message: format!(
                    "the open cursors would hold {} bytes of results, over {max} bytes (memory_bytes): read and drop the cursors already open first",
                    self.sql_cursor_bytes + bytes
                ),
            }));
        }
        self.sql_cursor_bytes += bytes;
        let cursor = Cursor {
            columns: rows.columns,
            rows: rows.rows.into(),
            rows_read: rows.rows_read,
            rows_written: rows.rows_written,
            bytes,
        };
        Ok(Ok(self.table().push(cursor)?))
    }

    async fn database_size(&mut self) -> wasmtime::Result<u64> {
        Ok(self.storage.store.sql_database_size().await.unwrap_or(0))
    }
}

impl wit::HostCursor for ObjectState {
    fn column_names(&mut self, cursor: Resource<Cursor>) -> wasmtime::Result<Vec<String>> {
        Ok(self.table().get(&cursor)?.columns.clone())
    }

    fn next(&mut self, cursor: Resource<Cursor>, max_rows: u32) -> Res<Vec<Vec<wit::Value>>> {
        let c = self.table().get_mut(&cursor)?;
        let n = (max_rows as usize).min(c.rows.len());
        let rows: Vec<Vec<Value>> = c.rows.drain(..n).collect();
        let freed: usize = rows.iter().map(|r| row_bytes(r)).sum();
        c.bytes = c.bytes.saturating_sub(freed);
        self.sql_cursor_bytes = self.sql_cursor_bytes.saturating_sub(freed);
        Ok(Ok(rows.into_iter().map(row_to_wit).collect()))
    }

    fn rows_read(&mut self, cursor: Resource<Cursor>) -> wasmtime::Result<u64> {
        Ok(self.table().get(&cursor)?.rows_read)
    }

    fn rows_written(&mut self, cursor: Resource<Cursor>) -> wasmtime::Result<u64> {
        Ok(self.table().get(&cursor)?.rows_written)
    }

    fn drop(&mut self, cursor: Resource<Cursor>) -> wasmtime::Result<()> {
        let c = self.table().delete(cursor)?;
        self.sql_cursor_bytes = self.sql_cursor_bytes.saturating_sub(c.bytes);
        Ok(())
    }
}

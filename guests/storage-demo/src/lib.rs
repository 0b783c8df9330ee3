//! The seed's MyDurableObject storage API, driven over HTTP and answering JSON.
//!
//! | request | does |
//! | --- | --- |
//! | `POST /put?key=K` (body: JSON) | `put(K, body)` |
//! | `POST /put-many` (body: `{"k": v, ...}`) | `put_many` |
//! | `GET /get?key=K` | `get(K)`: the value, or `null` |
//! | `POST /get-many` (body: `["k", ...]`) | `get_many`: `{"k": v}` for the keys that exist |
//! | `POST /delete?key=K` | `delete(K)`: `{"existed": bool}` |
//! | `POST /delete-many` (body: `["k", ...]`) | `delete_many`: `{"deleted": n}` |
//! | `GET /list?prefix=&start=&end=&reverse=&limit=` | `list`: `[[key, value], ...]` in order |
//! | `POST /delete-all` | `delete_all` |
//! | `POST /seed` | the seed's example sequence, answering what each step returned |
//! | `POST /incr?key=K` | reads K from storage, adds one, writes it back; answers the new value |
//! | `POST /batch` (body: `[op, ...]`) | runs the ops in one event, answering each one's result |
//!
//! A batch op is `{"op": "put", "key", "value"}`, `{"op": "delete", "key"}`,
//! `{"op": "get", "key"}`, `{"op": "list", "prefix"?, "start"?, "end"?, "reverse"?,
//! "limit"?}`, `{"op": "delete-all"}`, `{"op": "begin"}`, `{"op": "commit"}` or
//! `{"op": "rollback"}` (raw transaction control, for testing how layers merge).
//!
//! A storage error answers 400 with `{"error": code, "message": text}`.

use dohost_sdk::{
    DurableObject, Env, Error, ListOptions, Request, Response, Result, State, durable_object,
};
use serde_json::{Map, Value, json};

#[durable_object]
pub struct StorageDemo {
    state: State,
}

impl DurableObject for StorageDemo {
    fn new(state: State, _env: Env) -> Self {
        StorageDemo { state }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match self.route(&req) {
            Ok(r) => Ok(r),
            Err(e) => match e.storage_code() {
                Some(code) => Ok(Response::json(&json!({
                    "error": format!("{code:?}"),
                    "message": e.to_string(),
                }))
                .with_status(400)),
                None => Ok(Response::text(e.to_string()).with_status(400)),
            },
        }
    }
}

fn key(req: &Request) -> Result<String> {
    req.query_param("key")
        .ok_or_else(|| Error::msg("missing ?key="))
}

impl StorageDemo {
    fn route(&self, req: &Request) -> Result<Response> {
        let storage = self.state.storage();
        match (req.method(), req.path()) {
            ("POST", "/put") => {
                let value: Value = req.json()?;
                storage.put(&key(req)?, &value)?;
                Ok(Response::json(&json!({ "ok": true })))
            }
            ("POST", "/put-many") => {
                let entries: Map<String, Value> = req.json()?;
                storage.put_many(entries)?;
                Ok(Response::json(&json!({ "ok": true })))
            }
            ("GET", "/get") => {
                let value: Option<Value> = storage.get(&key(req)?)?;
                Ok(Response::json(&value))
            }
            ("POST", "/get-many") => {
                let keys: Vec<String> = req.json()?;
                let found = storage.get_many::<Value, _>(keys)?;
                Ok(Response::json(&found))
            }
            ("POST", "/delete") => {
                let existed = storage.delete(&key(req)?)?;
                Ok(Response::json(&json!({ "existed": existed })))
            }
            ("POST", "/delete-many") => {
                let keys: Vec<String> = req.json()?;
                let deleted = storage.delete_many(keys)?;
                Ok(Response::json(&json!({ "deleted": deleted })))
            }
            ("GET", "/list") => {
                let mut options = ListOptions::new();
                if let Some(p) = req.query_param("prefix") {
                    options = options.prefix(p);
                }
                if let Some(s) = req.query_param("start") {
                    options = options.start(s);
                }
                if let Some(e) = req.query_param("end") {
                    options = options.end(e);
                }
                if let Some(r) = req.query_param("reverse") {
                    options = options.reverse(r == "true" || r == "1");
                }
                if let Some(l) = req.query_param("limit") {
                    options = options.limit(l.parse()?);
                }
                let entries: Vec<(String, Value)> = storage.list(options)?;
                Ok(Response::json(&entries))
            }
            ("POST", "/delete-all") => {
                storage.delete_all()?;
                Ok(Response::json(&json!({ "ok": true })))
            }
            ("POST", "/seed") => self.seed(),
            ("POST", "/incr") => {
                let k = key(req)?;
                let n: i64 = storage.get(&k)?.unwrap_or(0) + 1;
                storage.put(&k, &n)?;
                Ok(Response::text(n.to_string()))
            }
            ("POST", "/batch") => {
                let ops: Vec<Value> = req.json()?;
                let mut results = Vec::new();
                for op in ops {
                    results.push(self.batch_op(&op)?);
                }
                Ok(Response::json(&results))
            }
            _ => Ok(Response::text("Not found").with_status(404)),
        }
    }

    fn batch_op(&self, op: &Value) -> Result<Value> {
        let storage = self.state.storage();
        let s = |name: &str| op.get(name).and_then(Value::as_str).map(str::to_string);
        let k = || s("key").ok_or_else(|| Error::msg("batch op without key"));
        Ok(
            match op.get("op").and_then(Value::as_str).unwrap_or_default() {
                "put" => {
                    storage.put(&k()?, op.get("value").unwrap_or(&Value::Null))?;
                    Value::Null
                }
                "delete" => json!(storage.delete(&k()?)?),
                "get" => storage.get::<Value>(&k()?)?.unwrap_or(Value::Null),
                "list" => {
                    let mut o = ListOptions::new();
                    if let Some(p) = s("prefix") {
                        o = o.prefix(p);
                    }
                    if let Some(v) = s("start") {
                        o = o.start(v);
                    }
                    if let Some(v) = s("end") {
                        o = o.end(v);
                    }
                    o = o.reverse(op.get("reverse").and_then(Value::as_bool).unwrap_or(false));
                    if let Some(l) = op.get("limit").and_then(Value::as_u64) {
                        o = o.limit(l as u32);
                    }
                    json!(storage.list::<Value>(o)?)
                }
                "delete-all" => {
                    storage.delete_all()?;
                    Value::Null
                }
                "begin" | "commit" | "rollback" => {
                    raw_transaction(op["op"].as_str().unwrap_or_default())?;
                    Value::Null
                }
                other => return Err(Error::msg(format!("unknown batch op {other:?}"))),
            },
        )
    }

    /// The seed's storage example, step by step, in one transaction: a step that fails
    /// leaves nothing of the earlier steps behind. Values are listed as whatever JSON they
    /// hold (the object may hold other keys, such as the README's `user:1` map).
    fn seed(&self) -> Result<Response> {
        self.state.storage().transaction(|storage| {
            storage.put("key", "value")?;
            storage.put_many([("key1", "value1"), ("key2", "value2"), ("key3", "value3")])?;
            let value: Option<String> = storage.get("key")?;
            let values = storage.get_many::<String, _>(["key1", "key2"])?;
            let deleted = storage.delete("key")?;
            let deleted_many = storage.delete_many(["key1", "key2"])?;
            let all: Vec<(String, Value)> = storage.list(ListOptions::new())?;
            let filtered: Vec<(String, Value)> =
                storage.list(ListOptions::new().prefix("user:").limit(100).reverse(false))?;
            Ok(Response::json(&json!({
                "get": value,
                "get_many": values,
                "delete": deleted,
                "delete_many": deleted_many,
                "list": all,
                "list_filtered": filtered,
            })))
        })
    }
}

/// Raw transaction control through the WIT import, which `Storage::transaction` wraps in a
/// closure; the batch endpoint needs begin and commit in separate ops.
fn raw_transaction(op: &str) -> Result<()> {
    use dohost_sdk::__private::bindings::dohost::object::storage as wit;
    let r = match op {
        "begin" => wit::transaction_begin(),
        "commit" => wit::transaction_commit(),
        _ => wit::transaction_rollback(),
    };
    r.map_err(|e| Error::msg(e.message))
}

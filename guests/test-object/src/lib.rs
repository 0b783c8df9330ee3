//! An object for dohost's own tests: misbehaviour on demand (panic, endless loop, memory
//! bomb, stack overflow) and probes of the instance and raw storage. Not an example.
//!
//! | request | does |
//! | --- | --- |
//! | `GET /instance` | `{"instance": random per instance, "events": events this instance handled}` |
//! | `POST /put?key=K` (body raw) | raw `put_bytes` |
//! | `GET /get?key=K` | raw `get_bytes` (404 when absent) |
//! | `POST /write-then-panic?key=K` | puts K then panics |
//! | `GET /panic`, `/loop`, `/membomb`, `/stack` | panics, spins forever, allocates without end, recurses without end |
//! | `GET /big?mib=N` | answers N MiB of `x` (for clients that never read their answer) |
//! | `GET /hold?mib=N` | grows the instance's memory by N MiB and keeps it while the instance lives |
//! | `GET /wait`, `/waiting`, `/wake` | defers its answer; how many wait; answers every waiter `woken` (answers how many) |
//! | `GET /spin?ms=N` | spins N ms of wall-clock time (the host's clock), then answers `spun` |
//! | `GET /leftovers` | what a fresh instance must not see of an earlier one in its slot: answers `"{data} {bss} {grown}"` (a static set to 7 in the data image, one zero-initialised, and the sum of the first 4 KiB of a wasm page it grows), then sets both statics to 99 and fills those 4 KiB with 0xAB |
//! | `POST /nested` | nested transactions: inner rolled back, outer kept |
//! | `POST /txn-rollback?key=K` | writes K in a transaction that fails |
//! | `GET /echo` | the request as the object saw it, as JSON |
//! | `GET /log` | prints a line to stdout and stderr |
//! | `GET /status?code=N` | answers status N |
//! | `GET /env` | the context the constructor saw |
//! | `GET /call?binding=B&name=N&path=P` | calls object N of B at P: `"{status} {body}"`, or 502 with the error |
//! | `GET /ids?binding=B&id=I` | `id_from_string(I)` in B, or 400 with the error |
//! | `GET /call-forged?binding=B&name=N&claim=M` | calls object N of B at `/env` claiming its name is M: `"{status} {body}"`, or 502 |
//! | `GET /relay?binding=B&name=N&path=P` | forwards this request (headers, body, a WebSocket upgrade) to object N of B at P |
//! | `POST /set-alarm` | sets the alarm (the host moves it to its minimum interval); the alarm stores `name()` under `alarm-name` |
//! | `GET /exit` | calls `exit(3)` |
//! | `POST /append?op=X` | appends X to the object's list; answers its index (0, 1, …) |
//! | `POST /append-by-alarm?op=X` | sets the alarm, which appends X (and every other op armed before it runs) |
//! | `GET /items` | `{"len": N, "items": [...], "indices": [...]}`: the list's length, its stored items and their indices |
//! | `GET /fail?status=N` | an `Err` carrying status N (`bail_status!`) |
//! | `GET /fail-internal` | an `Err` without a status, whose message must not reach the client |
//! | `GET /typed?n=N` | `N` parsed as u32 (`require_query`): 400 when absent or not a number |
//! | `POST /raw-put-many?n=N` | the WIT `put-many` of N keys as is (no SDK batching): 400 with the host's error |
//! | `POST /many?n=N` | `put_many`, `get_many` and `delete_many` of N keys (batched by the SDK): `{"stored", "found", "deleted", "limit"}` |
//! | `/r/...` | a `Router`: `GET /r/todo/:id`, `POST /r/todo` (body: text), `DELETE /r/todo/:id`, `GET /r/todos` (a `Collection`) |
//! | `GET /stream-flood?n=N` | opens its response as a stream and writes N chunks of 64 KiB to it in this event; stores under `stream-flood` how many were queued before a write failed (and why) |
//! | `GET /ws` (upgrade) | accepts a WebSocket: `panic` panics, `json` answers `{"json": true}`, `flood:N` sends itself N binary messages of 64 KiB in one event and stores under `flood` how many were queued before a send failed (and why), anything else is broadcast to the other sockets |

use dohost_sdk::{
    AlarmInfo, DurableObject, Env, Error, Params, Request, Response, Result, Router, State,
    WebSocket, WebSocketMessage, bail_status, durable_object,
};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};

/// Statics for `/leftovers`: one in the data image, one zero-initialised.
static IN_DATA: AtomicU64 = AtomicU64::new(7);
static IN_BSS: AtomicU64 = AtomicU64::new(0);

#[durable_object]
pub struct TestObject {
    state: State,
    instance: u64,
    events: u64,
    env: Vec<(String, String)>,
    /// Memory grown on purpose (`/hold`), kept while the instance lives.
    held: Vec<Vec<u8>>,
    /// Requests deferred by `/wait`, answered by `/wake`.
    waiting: Vec<dohost_sdk::Deferred>,
}

fn item_key(index: u64) -> String {
    format!("item/{index:010}")
}

fn key(req: &Request) -> Result<String> {
    req.query_param("key")
        .ok_or_else(|| Error::bad_request("missing ?key="))
}

/// Small frames, so the engine's native stack limit is reached before the shadow stack in
/// linear memory; black_box keeps the recursion from becoming a loop.
#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    std::hint::black_box(recurse(std::hint::black_box(n + 1))) + 1
}

impl DurableObject for TestObject {
    fn new(state: State, env: Env) -> Self {
        // Reads storage as the counter's constructor does, panicking when it cannot: the
        // host must answer that 503 (retry), not 500, when its database was unreachable.
        state
            .storage()
            .get_bytes("constructor")
            .expect("the constructor's read");
        let mut bytes = [0u8; 8];
        getrandom_fill(&mut bytes);
        let env = env
            .vars()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        TestObject {
            state,
            instance: u64::from_le_bytes(bytes),
            events: 0,
            env,
            held: Vec::new(),
            waiting: Vec::new(),
        }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        self.events += 1;
        let storage = self.state.storage();
        if req.path().starts_with("/r/") {
            return Router::new()
                .get("/r/todo/:id", Self::get_todo)
                .post("/r/todo", |o: &mut Self, req, _| {
                    let id = o.todos().insert(&req.text()?.to_string())?;
                    Ok(Response::json(&id).with_status(201))
                })
                .delete("/r/todo/:id", |o: &mut Self, _, params| {
                    let id: u64 = params.parse("id")?;
                    Ok(Response::json(&o.todos().delete(id)?))
                })
                .get("/r/todos", |o: &mut Self, _, _| {
                    Ok(Response::json(&o.todos().list()?))
                })
                .handle(self, req);
        }
        match req.path() {
            "/fail" => {
                let status: u16 = req.require_query("status")?;
                bail_status!(status, "failed with {status} on purpose")
            }
            "/fail-internal" => Err(Error::msg("secret internal detail")),
            "/typed" => {
                let n: u32 = req.require_query("n")?;
                Ok(Response::json(&n))
            }
            "/raw-put-many" => {
                use dohost_sdk::__private::bindings::dohost::object::storage as raw;
                let n: usize = req.require_query("n")?;
                let entries: Vec<(String, Vec<u8>)> = (0..n)
                    .map(|i| (format!("raw/{i}"), b"1".to_vec()))
                    .collect();
                match raw::put_many(&entries) {
                    Ok(()) => Ok(Response::text("stored")),
                    Err(e) => Err(Error::bad_request(format!("{:?}: {}", e.code, e.message))),
                }
            }
            "/many" => {
                let n: usize = req.require_query("n")?;
                let keys: Vec<String> = (0..n).map(|i| format!("many/{i:06}")).collect();
                storage.put_many(keys.iter().map(|k| (k.as_str(), 1u8)))?;
                let found = storage.get_many::<u8, _>(&keys)?.len();
                let deleted = storage.delete_many(&keys)?;
                Ok(Response::json(&json!({
                    "stored": n,
                    "found": found,
                    "deleted": deleted,
                    "limit": storage.limits().max_keys_per_call,
                })))
            }
            "/ws" => {
                let ws = self.state.accept_websocket(&req, &[])?;
                Ok(Response::websocket(ws))
            }
            "/instance" => Ok(Response::json(&json!({
                "instance": self.instance.to_string(),
                "events": self.events,
            }))),
            "/put" => {
                storage.put_bytes(&key(&req)?, req.body())?;
                Ok(Response::text("ok"))
            }
            "/get" => match storage.get_bytes(&key(&req)?)? {
                Some(v) => Ok(Response::bytes(v)),
                None => Ok(Response::text("absent").with_status(404)),
            },
            // A read whose failure the object handles itself: its answer stands, whatever
            // the failure was.
            "/get-handled" => match storage.get_bytes(&key(&req)?) {
                Ok(Some(v)) => Ok(Response::bytes(v)),
                Ok(None) => Ok(Response::text("absent").with_status(404)),
                Err(e) => Ok(Response::text(format!(
                    "handled ({}): {e}",
                    e.storage_code()
                        .map(|c| format!("{c:?}"))
                        .unwrap_or_default()
                ))
                .with_status(424)),
            },
            "/write-then-panic" => {
                storage.put_bytes(&key(&req)?, b"written before the panic")?;
                panic!("deliberate panic after a write");
            }
            "/panic" => panic!("deliberate panic"),
            "/loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "/wait" => {
                let waiting = self
                    .state
                    .defer()
                    .ok_or_else(|| Error::msg("cannot defer outside a fetch"))?;
                self.waiting.push(waiting);
                Ok(Response::deferred())
            }
            "/waiting" => Ok(Response::text(self.waiting.len().to_string())),
            "/wake" => {
                let answered = self
                    .waiting
                    .drain(..)
                    .map(|w| w.respond(Response::text("woken")))
                    .filter(|answered| *answered)
                    .count();
                Ok(Response::text(answered.to_string()))
            }
            "/spin" => {
                let ms: u64 = req.require_query("ms")?;
                let until = std::time::SystemTime::now() + std::time::Duration::from_millis(ms);
                while std::time::SystemTime::now() < until {
                    std::hint::black_box(0);
                }
                Ok(Response::text("spun"))
            }
            "/leftovers" => {
                let (data, bss) = (
                    IN_DATA.load(Ordering::Relaxed),
                    IN_BSS.load(Ordering::Relaxed),
                );
                // A page past everything the allocator has: fresh memory must read as zeros.
                let page = core::arch::wasm32::memory_grow(0, 1);
                if page == usize::MAX {
                    return Err(Error::msg("memory.grow failed"));
                }
                let base = (page << 16) as *mut u8;
                // SAFETY: the page was just grown and nothing else knows it exists.
                let grown: u64 = (0..4096)
                    .map(|i| u64::from(unsafe { base.add(i).read_volatile() }))
                    .sum();
                for i in 0..4096 {
                    // SAFETY: as above.
                    unsafe { base.add(i).write_volatile(0xAB) };
                }
                IN_DATA.store(99, Ordering::Relaxed);
                IN_BSS.store(99, Ordering::Relaxed);
                Ok(Response::text(format!("{data} {bss} {grown}")))
            }
            "/hold" => {
                let mib: usize = req.require_query("mib")?;
                self.held.push(vec![1u8; mib << 20]);
                Ok(Response::text(format!(
                    "holding {} MiB",
                    self.held.iter().map(Vec::len).sum::<usize>() >> 20
                )))
            }
            // An answer of `mib` MiB, for clients that do not read it.
            "/big" => {
                let mib: usize = req.require_query("mib")?;
                Ok(Response::bytes(vec![b'x'; mib << 20]))
            }
            "/membomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/stack" => Ok(Response::text(recurse(0).to_string())),
            "/nested" => {
                storage.transaction(|outer| {
                    outer.put("outer", &1)?;
                    let inner: Result<()> = outer.transaction(|inner| {
                        inner.put("inner", &2)?;
                        Err(Error::msg("roll the inner one back"))
                    });
                    assert!(inner.is_err());
                    Ok(())
                })?;
                let outer: Option<i64> = storage.get("outer")?;
                let inner: Option<i64> = storage.get("inner")?;
                Ok(Response::json(&json!({ "outer": outer, "inner": inner })))
            }
            // The body is run as SQL; rows come back as JSON, a SQL error as 400 with its code.
            "/sql" => {
                let query = String::from_utf8_lossy(req.body()).into_owned();
                Ok(sql_answer(storage.sql().exec(&query, ())))
            }
            "/sql-then-panic" => {
                let query = String::from_utf8_lossy(req.body()).into_owned();
                storage.sql().exec(&query, ())?;
                panic!("deliberate panic after SQL");
            }
            // One transaction over a SQL insert and a key-value put; `rollback=1` undoes both.
            "/sql-and-kv" => {
                let k = key(&req)?;
                let rollback = req.query_param("rollback").is_some();
                storage.transaction(|txn| {
                    storage.sql().exec(
                        "CREATE TABLE IF NOT EXISTS pairs (k TEXT); INSERT INTO pairs VALUES (?)",
                        [k.as_str()],
                    )?;
                    txn.put(&k, &"with its row")?;
                    if rollback {
                        txn.rollback();
                    }
                    Ok(())
                })?;
                let rows: i64 = storage
                    .sql()
                    .exec("SELECT count(*) FROM pairs WHERE k = ?", [k.as_str()])?
                    .one()?;
                let value: Option<String> = storage.get(&k)?;
                Ok(Response::json(&json!({ "rows": rows, "value": value })))
            }
            "/txn-rollback" => {
                let k = key(&req)?;
                let r: Result<()> = storage.transaction(|txn| {
                    txn.put(&k, &"inside a failed transaction")?;
                    Err(Error::msg("fail on purpose"))
                });
                let seen: Option<String> = storage.get(&k)?;
                Ok(Response::json(
                    &json!({ "failed": r.is_err(), "seen_after": seen }),
                ))
            }
            "/echo" => Ok(Response::json(&json!({
                "method": req.method(),
                "url": req.url(),
                "path": req.path(),
                "query": req.query(),
                "headers": req.headers(),
                "body_len": req.body().len(),
            }))),
            "/log" => {
                println!("hello on stdout from {}", self.state.id());
                eprintln!("hello on stderr");
                Ok(Response::text("logged"))
            }
            "/status" => {
                let code: u16 = req.query_param("code").unwrap_or_default().parse()?;
                Ok(Response::text("custom status").with_status(code))
            }
            "/call" => {
                // Calls another object: ?binding=B&name=N&path=P (P percent-encoded).
                let binding = req.query_param("binding").unwrap_or_default();
                let name = req.query_param("name").unwrap_or_default();
                let path = req.query_param("path").unwrap_or_else(|| "/".into());
                let ns = self.env_ns(&binding);
                let result = ns.id_from_name(&name).and_then(|id| {
                    ns.get(&id)
                        .fetch(Request::new("GET", &format!("http://o{path}")))
                });
                Ok(match result {
                    Ok(r) => Response::text(format!(
                        "{} {}",
                        r.status(),
                        String::from_utf8_lossy(r.body())
                    )),
                    Err(e) => Response::text(format!(
                        "call failed ({}): {e}",
                        e.call_code().map(|c| format!("{c:?}")).unwrap_or_default()
                    ))
                    .with_status(502),
                })
            }
            "/call-forged" => {
                // Through the raw import: the SDK never sends a name other than the one
                // the ID came from.
                use dohost_sdk::__private::bindings::dohost::object::objects as wit;
                let binding = req.query_param("binding").unwrap_or_default();
                let name = req.query_param("name").unwrap_or_default();
                let claim = req.query_param("claim");
                let id = self.env_ns(&binding).id_from_name(&name)?.to_string();
                let request = dohost_sdk::__private::bindings::dohost::object::types::Request {
                    method: "GET".into(),
                    url: "http://o/env".into(),
                    headers: Vec::new(),
                    body: Vec::new(),
                };
                Ok(
                    match wit::fetch(&binding, &id, claim.as_deref(), &request) {
                        Ok(r) => Response::text(format!(
                            "{} {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        )),
                        Err(e) => {
                            Response::text(format!("call failed: {:?}: {}", e.code, e.message))
                                .with_status(502)
                        }
                    },
                )
            }
            "/stream-flood" => {
                let n: usize = req.require_query("n")?;
                let stream = self.state.open_stream(&[])?;
                let chunk = vec![7u8; 64 * 1024];
                let mut outcome = format!("all {n} written");
                for i in 0..n {
                    if let Err(e) = stream.write(&chunk) {
                        outcome = format!("{i} written, then: {e}");
                        break;
                    }
                }
                self.state.storage().put("stream-flood", &outcome)?;
                Ok(Response::text(""))
            }
            "/relay" => {
                let binding = req.query_param("binding").unwrap_or_default();
                let name = req.query_param("name").unwrap_or_default();
                let path = req.query_param("path").unwrap_or_else(|| "/".into());
                let ns = self.env_ns(&binding);
                let mut out = Request::new(req.method(), &format!("http://o{path}"))
                    .with_body(req.body().to_vec());
                for (k, v) in req.headers() {
                    out = out.with_header(k, v);
                }
                ns.get(&ns.id_from_name(&name)?).fetch(out)
            }
            "/set-alarm" => {
                storage.set_alarm(0u64)?;
                Ok(Response::text("set"))
            }
            "/exit" => std::process::exit(3),
            "/append" => {
                let index = self.append(&req.query_param("op").unwrap_or_default())?;
                Ok(Response::text(index.to_string()))
            }
            "/append-by-alarm" => {
                let op = req.query_param("op").unwrap_or_default();
                storage.put(&format!("armed/{op}"), &op)?;
                storage.set_alarm(0u64)?;
                Ok(Response::text("armed"))
            }
            "/items" => {
                // Every stored item, in order: a gap or an extra would show as a list whose
                // length is not `len`.
                let len: u64 = storage.get("len")?.unwrap_or(0);
                let items: Vec<(String, String)> =
                    storage.list(dohost_sdk::ListOptions::new().prefix("item/"))?;
                let indices: Vec<u64> = items
                    .iter()
                    .filter_map(|(k, _)| k.trim_start_matches("item/").parse().ok())
                    .collect();
                let items: Vec<String> = items.into_iter().map(|(_, op)| op).collect();
                Ok(Response::json(
                    &json!({ "len": len, "items": items, "indices": indices }),
                ))
            }
            "/ids" => {
                // id_from_string round trip and rejections, for ?binding=B&id=I
                let ns = self.env_ns(&req.query_param("binding").unwrap_or_default());
                let id = req.query_param("id").unwrap_or_default();
                Ok(match ns.id_from_string(&id) {
                    Ok(id) => Response::text(id.to_string()),
                    Err(e) => Response::text(e.to_string()).with_status(400),
                })
            }
            "/env" => Ok(Response::json(&json!({
                "id": self.state.id(),
                "name": self.state.name(),
                "binding": self.state.binding(),
                "class": self.state.class_name(),
                "env": self.env,
            }))),
            _ => Ok(Response::text("Not found").with_status(404)),
        }
    }

    fn alarm(&mut self, _info: AlarmInfo) -> Result<()> {
        self.record_alarm()
    }

    fn websocket_message(&mut self, ws: WebSocket, message: WebSocketMessage) {
        match &message {
            WebSocketMessage::Text(t) if t == "panic" => {
                panic!("deliberate panic in a socket handler")
            }
            WebSocketMessage::Text(t) if t == "json" => {
                let _ = ws.send_json(&json!({ "json": true }));
            }
            WebSocketMessage::Text(t) if t.starts_with("flood:") => {
                let n: usize = t["flood:".len()..].parse().unwrap_or(0);
                let chunk = vec![7u8; 64 * 1024];
                let mut outcome = format!("all {n} sent");
                for i in 0..n {
                    if let Err(e) = ws.send_binary(&chunk) {
                        outcome = format!("{i} sent, then: {e}");
                        break;
                    }
                }
                let _ = self.state.storage().put("flood", &outcome);
            }
            _ => {
                let _ = self.state.broadcast(&message, None, Some(ws));
            }
        }
    }
}

impl TestObject {
    fn todos(&self) -> dohost_sdk::Collection<String> {
        self.state.storage().collection("todo:")
    }

    fn get_todo(&mut self, _req: Request, params: Params) -> Result<Response> {
        let id: u64 = params.parse("id")?;
        match self.todos().get(id)? {
            Some(todo) => Ok(Response::json(&todo)),
            None => Err(Error::not_found(format!("no todo {id}"))),
        }
    }

    fn record_alarm(&self) -> Result<()> {
        let storage = self.state.storage();
        let armed: Vec<(String, String)> =
            storage.list(dohost_sdk::ListOptions::new().prefix("armed/"))?;
        for (key, op) in armed {
            storage.delete(&key)?;
            self.append(&op)?;
        }
        storage.put("alarm-name", &self.state.name())
    }

    /// Appends `op` to the list kept as `len` and `item/{index}`; answers its index.
    fn append(&self, op: &str) -> Result<u64> {
        let storage = self.state.storage();
        let len: u64 = storage.get("len")?.unwrap_or(0);
        storage.put(&item_key(len), op)?;
        storage.put("len", &(len + 1))?;
        Ok(len)
    }

    fn env_ns(&self, binding: &str) -> dohost_sdk::Namespace {
        dohost_sdk::Env::default().namespace(binding)
    }
}

/// Per-instance randomness through WASI, via std's hasher seeds.
fn getrandom_fill(out: &mut [u8; 8]) {
    use std::hash::{BuildHasher, RandomState};
    let v = RandomState::new().hash_one(0u8);
    *out = v.to_le_bytes();
}

/// A SQL call's answer: its rows as JSON arrays (blobs as arrays of bytes), or 400 with the
/// error's code and message.
fn sql_answer(result: Result<dohost_sdk::sql::Rows>) -> Response {
    use dohost_sdk::sql::Value;
    match result {
        Ok(rows) => {
            let data: Vec<Vec<serde_json::Value>> = rows
                .raw()
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|v| match v {
                            Value::Null => serde_json::Value::Null,
                            Value::Integer(i) => json!(i),
                            Value::Real(f) => json!(f),
                            Value::Text(t) => json!(t),
                            Value::Blob(b) => json!(b),
                        })
                        .collect()
                })
                .collect();
            Response::json(&json!({
                "columns": rows.columns(),
                "rows": data,
                "written": rows.rows_written(),
            }))
        }
        Err(e) => Response::json(&json!({
            "code": e.sql_code().map(|c| format!("{c:?}")),
            "message": e.to_string(),
        }))
        .with_status(400),
    }
}

//! A to-do list on the object's SQL database: each object (say one per user) is a list.
//!
//! | request | does |
//! | --- | --- |
//! | `POST /todos` (body: the title) | adds a to-do: 201 with `{"id":N,"title":...,"done":false}` |
//! | `GET /todos/{id}` | that to-do as JSON (404 if there is none) |
//! | `GET /todos` | every to-do, newest first, as a JSON array |
//! | `PATCH /todos/{id}` (body `{"done":true}`, and/or a `"title"`) | changes it; answers the updated to-do |
//! | `DELETE /todos/{id}` | removes it: 204 (404 if there is none) |
//! | `GET /count` | how many to-dos there are, as text |
//!
//! Adding one also records its id under the key-value key `last_created`, in one storage
//! transaction with the insert: both are stored or neither.

use dohost_sdk::{
    DurableObject, Env, Error, Params, Request, Response, Result, Router, State, durable_object,
    params,
};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

#[durable_object]
pub struct Todos {
    state: State,
}

/// A row as the routes answer it; `done` is stored as 0 or 1 (SQLite has no booleans) and
/// read back as a bool.
#[derive(Debug, Serialize, Deserialize)]
struct Todo {
    id: i64,
    title: String,
    done: bool,
}

/// What `PATCH` may change.
#[derive(Deserialize)]
struct Patch {
    done: Option<bool>,
    title: Option<String>,
}

const COLUMNS: &str = "id, title, done";

impl DurableObject for Todos {
    fn new(state: State, _env: Env) -> Self {
        // Before any event: every route can count on the table. An error here panics,
        // which fails the event and retries construction at the next one.
        state
            .storage()
            .sql()
            .exec(
                "CREATE TABLE IF NOT EXISTS todos(
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    title TEXT NOT NULL,
                    done INTEGER NOT NULL DEFAULT 0,
                    created INTEGER NOT NULL
                );
                CREATE INDEX IF NOT EXISTS todos_by_created ON todos(created)",
                (),
            )
            .expect("create the todos table");
        Todos { state }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        Router::new()
            .post("/todos", |t: &mut Todos, req, _| t.create(req))
            .get("/todos", |t: &mut Todos, _, _| t.list())
            .get("/todos/:id", |t: &mut Todos, _, p| t.get(id(&p)?))
            .patch("/todos/:id", |t: &mut Todos, req, p| t.update(id(&p)?, req))
            .delete("/todos/:id", |t: &mut Todos, _, p| t.delete(id(&p)?))
            .get("/count", |t: &mut Todos, _, _| t.count())
            .handle(self, req)
    }
}

fn id(params: &Params) -> Result<i64> {
    params.parse("id")
}

fn not_found(id: i64) -> Error {
    Error::not_found(format!("no todo {id}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Todos {
    fn create(&mut self, req: Request) -> Result<Response> {
        let title = req.text()?.trim().to_string();
        if title.is_empty() {
            return Err(Error::bad_request("the body is the title, and it is empty"));
        }
        // The row and `last_created` in one transaction: a failure keeps neither.
        let id = self.state.storage().transaction(|txn| {
            let id = txn
                .sql()
                .exec(
                    "INSERT INTO todos(title, created) VALUES (?, ?)",
                    params![title.as_str(), now_ms()],
                )?
                .last_insert_rowid();
            txn.put("last_created", &id)?;
            Ok(id)
        })?;
        let todo = Todo {
            id,
            title,
            done: false,
        };
        Ok(Response::json(&todo).with_status(201))
    }

    fn find(&self, id: i64) -> Result<Option<Todo>> {
        self.state
            .storage()
            .sql()
            .exec(&format!("SELECT {COLUMNS} FROM todos WHERE id = ?"), [id])?
            .first()
    }

    fn get(&mut self, id: i64) -> Result<Response> {
        let todo = self.find(id)?.ok_or_else(|| not_found(id))?;
        Ok(Response::json(&todo))
    }

    fn list(&mut self) -> Result<Response> {
        // A cursor, so a long list is fetched from the host a chunk at a time rather than
        // in one answer the host might refuse as too large.
        let todos = self
            .state
            .storage()
            .sql()
            .query(
                &format!("SELECT {COLUMNS} FROM todos ORDER BY created DESC, id DESC"),
                (),
            )?
            .decoded::<Todo>()
            .collect::<Result<Vec<_>>>()?;
        Ok(Response::json(&todos))
    }

    fn update(&mut self, id: i64, req: Request) -> Result<Response> {
        let patch: Patch = req.json()?;
        let changed = self.state.storage().sql().exec(
            "UPDATE todos SET done = coalesce(?, done), title = coalesce(?, title) WHERE id = ?",
            params![patch.done, patch.title, id],
        )?;
        if changed.rows_written() == 0 {
            return Err(not_found(id));
        }
        self.get(id)
    }

    fn delete(&mut self, id: i64) -> Result<Response> {
        let deleted = self
            .state
            .storage()
            .sql()
            .exec("DELETE FROM todos WHERE id = ?", [id])?;
        if deleted.rows_written() == 0 {
            return Err(not_found(id));
        }
        Ok(Response::empty(204))
    }

    fn count(&mut self) -> Result<Response> {
        let n: i64 = self
            .state
            .storage()
            .sql()
            .exec("SELECT count(*) FROM todos", ())?
            .one()?;
        Ok(Response::text(n.to_string()))
    }
}

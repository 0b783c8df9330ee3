//! The benchmark's SQL object (`make bench`'s SQL table; not an example): one table of
//! items, the same routes as the workerd peer in `bench/workerd/sql.js`.
//!
//! | request | does |
//! | --- | --- |
//! | `POST /sql/insert` (body: the value) | `INSERT INTO items (v) VALUES (?)`; answers the new id |
//! | `GET /sql/get?id=N` | the item's value by primary key (404 if there is none) |
//! | `GET /sql/count` | how many items there are |
//! | `GET /nosql` | touches no storage; answers `sql` or `nosql` (whether the table was made) |
//!
//! The constructor creates the table, except for objects whose name starts with `nosql-`:
//! those never open their database, the baseline of the bench's memory row (the same
//! module, with and without SQL).

use dohost_sdk::{DurableObject, Env, Error, Request, Response, Result, State, durable_object};

#[durable_object]
pub struct SqlBench {
    state: State,
    sql: bool,
}

impl DurableObject for SqlBench {
    fn new(state: State, _env: Env) -> Self {
        let sql = !state.name().is_some_and(|n| n.starts_with("nosql-"));
        if sql {
            state
                .storage()
                .sql()
                .exec(
                    "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
                    (),
                )
                .expect("create the items table");
        }
        SqlBench { state, sql }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.method(), req.path()) {
            ("POST", "/sql/insert") => {
                let id = self
                    .state
                    .storage()
                    .sql()
                    .exec("INSERT INTO items (v) VALUES (?)", [req.text()?])?
                    .last_insert_rowid();
                Ok(Response::text(id.to_string()))
            }
            ("GET", "/sql/get") => {
                let id: i64 = req.require_query("id")?;
                let v: Option<String> = self
                    .state
                    .storage()
                    .sql()
                    .exec("SELECT v FROM items WHERE id = ?", [id])?
                    .first()?;
                let v = v.ok_or_else(|| Error::not_found(format!("no item {id}")))?;
                Ok(Response::text(v))
            }
            ("GET", "/sql/count") => {
                let n: i64 = self
                    .state
                    .storage()
                    .sql()
                    .exec("SELECT count(*) FROM items", ())?
                    .one()?;
                Ok(Response::text(n.to_string()))
            }
            ("GET", "/nosql") => Ok(Response::text(if self.sql { "sql" } else { "nosql" })),
            _ => Ok(Response::text("Not found").with_status(404)),
        }
    }
}

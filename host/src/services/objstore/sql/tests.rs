//! The database's rules at their edges: each limit passes at its value and refuses one past
//! it, the authorizer's refusals and what it lets through, the CPU deadline, the size limit,
//! and the features the platform has (FTS5, JSON, foreign keys).

use super::rules::SqlLimits;
use super::*;

fn db() -> SqlDatabase {
    SqlDatabase::open(Vec::new(), &SqlLimits::default()).unwrap()
}

fn budget() -> ExecBudget {
    ExecBudget {
        deadline: None,
        max_result_bytes: 1 << 20,
        max_pages: 1 << 20,
    }
}

fn exec(db: &mut SqlDatabase, sql: &str, params: &[Value]) -> SqlResult<SqlRows> {
    db.exec(sql, params, 0, &budget())
}

fn code(r: SqlResult<SqlRows>) -> SqlErrorCode {
    r.expect_err("refused").code
}

#[test]
fn statement_length_is_limited_at_its_edge() {
    let mut db = db();
    let limit = SqlLimits::default().max_statement_bytes;
    let head = "SELECT 1 -- ";
    let at = format!("{head}{}", "x".repeat(limit - head.len()));
    assert_eq!(at.len(), limit);
    exec(&mut db, &at, &[]).unwrap();
    let over = format!("{at}x");
    let e = exec(&mut db, &over, &[]).unwrap_err();
    assert_eq!(e.code, SqlErrorCode::TooLarge);
    assert!(
        e.message.contains("max_sql_statement_bytes"),
        "{}",
        e.message
    );
}

#[test]
fn bound_parameters_are_limited_at_their_edge() {
    let mut db = db();
    let n = SqlLimits::default().max_params;
    let sql = |n: usize| format!("SELECT {}", vec!["?"; n].join(", "));
    let params = |n: usize| vec![Value::Integer(1); n];
    let rows = exec(&mut db, &sql(n), &params(n)).unwrap();
    assert_eq!(rows.rows[0].len(), n);
    let e = exec(&mut db, &sql(n + 1), &params(n + 1)).unwrap_err();
    assert_eq!(e.code, SqlErrorCode::TooLarge);
    assert!(e.message.contains("max_sql_params"), "{}", e.message);
    // A wrong count of bindings is a mismatch, never a trap.
    assert_eq!(code(exec(&mut db, "SELECT ?", &[])), SqlErrorCode::Mismatch);
    assert_eq!(
        code(exec(&mut db, "SELECT 1", &[Value::Integer(1)])),
        SqlErrorCode::Mismatch
    );
}

#[test]
fn columns_are_limited_at_their_edge() {
    let mut db = db();
    let n = SqlLimits::default().max_columns;
    let cols = |n: usize| {
        (0..n)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    exec(&mut db, &format!("CREATE TABLE ok ({})", cols(n)), &[]).unwrap();
    let e = exec(
        &mut db,
        &format!("CREATE TABLE over ({})", cols(n + 1)),
        &[],
    )
    .unwrap_err();
    assert_eq!(e.code, SqlErrorCode::TooLarge, "{}", e.message);
    assert!(e.message.contains("max_sql_columns"), "{}", e.message);
}

#[test]
fn values_and_rows_are_limited_at_their_edge() {
    let mut db = db();
    let n = SqlLimits::default().max_value_bytes;
    // A value of the limit binds; one byte more does not.
    let at = exec(&mut db, "SELECT length(?)", &[Value::Blob(vec![7; n])]).unwrap();
    assert_eq!(at.rows, vec![vec![Value::Integer(n as i64)]]);
    let e = exec(&mut db, "SELECT length(?)", &[Value::Blob(vec![7; n + 1])]).unwrap_err();
    assert_eq!(e.code, SqlErrorCode::TooLarge, "{}", e.message);
    assert!(e.message.contains("max_sql_value_bytes"), "{}", e.message);
    // A row is limited by the same size, its header included.
    exec(&mut db, "CREATE TABLE b (v BLOB)", &[]).unwrap();
    exec(
        &mut db,
        "INSERT INTO b VALUES (?)",
        &[Value::Blob(vec![7; n - 16])],
    )
    .unwrap();
    let e = exec(
        &mut db,
        "INSERT INTO b VALUES (?)",
        &[Value::Blob(vec![7; n])],
    )
    .unwrap_err();
    assert_eq!(e.code, SqlErrorCode::TooLarge, "{}", e.message);
}

#[test]
fn the_database_cannot_grow_past_its_pages() {
    let mut db = db();
    exec(&mut db, "CREATE TABLE b (v BLOB)", &[]).unwrap();
    let small = ExecBudget {
        max_pages: 16,
        ..budget()
    };
    db.exec("INSERT INTO b VALUES (zeroblob(8000))", &[], 0, &small)
        .unwrap();
    let e = db
        .exec("INSERT INTO b VALUES (zeroblob(80000))", &[], 0, &small)
        .unwrap_err();
    assert_eq!(e.code, SqlErrorCode::StorageFull, "{}", e.message);
    assert!(
        e.message.contains("max_sql_database_bytes"),
        "{}",
        e.message
    );
    // The refused statement changed nothing; the event's earlier statements stand.
    let rows = db.exec("SELECT count(*) FROM b", &[], 0, &small).unwrap();
    assert_eq!(rows.rows, vec![vec![Value::Integer(1)]]);
    // One statement growing the database far past its limit is stopped by SQLite mid-way.
    let e = db
        .exec(
            "INSERT INTO b VALUES (zeroblob(1500000)), (zeroblob(1500000)), (zeroblob(1500000))",
            &[],
            0,
            &small,
        )
        .unwrap_err();
    assert_eq!(e.code, SqlErrorCode::StorageFull, "{}", e.message);
    let rows = db.exec("SELECT count(*) FROM b", &[], 0, &small).unwrap();
    assert_eq!(rows.rows, vec![vec![Value::Integer(1)]]);
}

#[test]
fn an_interrupted_write_loses_the_transaction_and_says_so() {
    let mut db = db();
    exec(&mut db, "CREATE TABLE n (x)", &[]).unwrap();
    let soon = ExecBudget {
        deadline: Some(Instant::now() + std::time::Duration::from_millis(50)),
        ..budget()
    };
    // SQLite rolls back the whole transaction of an interrupted INSERT: the event cannot
    // go on as if its earlier statements were there.
    let e = db
        .exec(
            "INSERT INTO n WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
             SELECT x FROM c",
            &[],
            0,
            &soon,
        )
        .unwrap_err();
    assert_eq!(e.code, SqlErrorCode::TransactionLost, "{}", e.message);
    assert!(
        db.finish_event().unwrap().is_none(),
        "nothing of the event is kept"
    );
}

#[test]
fn a_long_query_is_stopped_at_the_deadline() {
    let mut db = db();
    let soon = ExecBudget {
        deadline: Some(Instant::now() + std::time::Duration::from_millis(50)),
        ..budget()
    };
    let started = Instant::now();
    let e = db
        .exec(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
            &[],
            0,
            &soon,
        )
        .unwrap_err();
    assert_eq!(e.code, SqlErrorCode::Interrupted, "{}", e.message);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn results_larger_than_one_call_may_answer_are_refused() {
    let mut db = db();
    let tight = ExecBudget {
        max_result_bytes: 1000,
        ..budget()
    };
    let e = db
        .exec("SELECT printf('%.*c', 2000, 'x')", &[], 0, &tight)
        .unwrap_err();
    assert_eq!(e.code, SqlErrorCode::TooLarge, "{}", e.message);
}

#[test]
fn objects_may_not_run_transactions_attach_or_most_pragmas() {
    let mut db = db();
    for sql in [
        "BEGIN",
        "COMMIT",
        "SAVEPOINT s",
        "RELEASE s",
        "ATTACH DATABASE 'x' AS x",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA page_size = 8192",
        "PRAGMA defer_foreign_keys = ON",
        "PRAGMA writable_schema = ON",
        "CREATE TABLE _cf_KV (k)",
        "CREATE TABLE _dohost_x (k)",
        "CREATE TEMP TABLE t (k)",
        // The host's own statements, cached as authorized by the calls above: a user's
        // statement of the same text is still refused.
        "SAVEPOINT _dohost_exec",
        "RELEASE _dohost_exec",
        "ROLLBACK TO _dohost_exec",
    ] {
        let e = exec(&mut db, sql, &[]).unwrap_err();
        assert_eq!(e.code, SqlErrorCode::NotAuthorized, "{sql}: {}", e.message);
        assert!(
            e.message.starts_with("not authorized: "),
            "{sql}: {}",
            e.message
        );
    }
    assert!(
        exec(&mut db, "BEGIN", &[])
            .unwrap_err()
            .message
            .contains("transaction"),
    );
}

#[test]
fn read_only_pragmas_fts5_json_and_foreign_keys_work() {
    let mut db = db();
    exec(
        &mut db,
        "CREATE TABLE p (id INTEGER PRIMARY KEY); \
         CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p (id))",
        &[],
    )
    .unwrap();
    let info = exec(&mut db, "PRAGMA table_info(c)", &[]).unwrap();
    assert_eq!(info.rows.len(), 2);
    let ok = exec(&mut db, "PRAGMA quick_check", &[]).unwrap();
    assert_eq!(ok.rows, vec![vec![Value::Text("ok".into())]]);
    // Foreign keys are enforced.
    assert_eq!(
        code(exec(&mut db, "INSERT INTO c VALUES (1, 42)", &[])),
        SqlErrorCode::Constraint
    );
    exec(&mut db, "CREATE VIRTUAL TABLE docs USING fts5(body)", &[]).unwrap();
    exec(
        &mut db,
        "INSERT INTO docs VALUES ('durable objects on your own machines')",
        &[],
    )
    .unwrap();
    let hit = exec(
        &mut db,
        "SELECT count(*) FROM docs WHERE docs MATCH 'machines'",
        &[],
    )
    .unwrap();
    assert_eq!(hit.rows, vec![vec![Value::Integer(1)]]);
    let json = exec(
        &mut db,
        "SELECT json_extract('{\"a\":[1,2]}', '$.a[1]')",
        &[],
    )
    .unwrap();
    assert_eq!(json.rows, vec![vec![Value::Integer(2)]]);
}

#[test]
fn a_failed_call_of_several_statements_changes_nothing() {
    let mut db = db();
    exec(&mut db, "CREATE TABLE t (id INTEGER PRIMARY KEY)", &[]).unwrap();
    let e = exec(
        &mut db,
        "INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)",
        &[],
    )
    .unwrap_err();
    assert_eq!(e.code, SqlErrorCode::Constraint);
    let rows = exec(&mut db, "SELECT count(*) FROM t", &[]).unwrap();
    assert_eq!(rows.rows, vec![vec![Value::Integer(0)]]);
    // Parameters go to the statement that takes them; counts are reported.
    let r = exec(
        &mut db,
        "INSERT INTO t VALUES (5); INSERT INTO t VALUES (?)",
        &[Value::Integer(6)],
    )
    .unwrap();
    assert_eq!((r.rows_written, r.last_insert_rowid), (2, 6));
}

#[test]
fn an_event_s_pages_are_taken_once_and_a_discarded_event_leaves_none() {
    let mut db = db();
    exec(&mut db, "CREATE TABLE t (v)", &[]).unwrap();
    let first = db.finish_event().unwrap().expect("pages written");
    assert_eq!(first.pages_before, 0);
    assert_eq!(first.page_count as usize, first.pages.len());
    assert!(db.finish_event().unwrap().is_none(), "nothing ran since");
    exec(&mut db, "INSERT INTO t VALUES (1)", &[]).unwrap();
    db.discard_event();
    assert!(db.finish_event().unwrap().is_none());
    let n = exec(&mut db, "SELECT count(*) FROM t", &[]).unwrap();
    assert_eq!(n.rows, vec![vec![Value::Integer(0)]]);
    exec(&mut db, "INSERT INTO t VALUES (1)", &[]).unwrap();
    let second = db.finish_event().unwrap().expect("pages written");
    assert_eq!(second.pages_before, first.page_count);
    // An insert in steady state writes few pages (page 1 is not rewritten each time).
    assert!(second.pages.len() <= 2, "{:?}", second.pages.keys());
}

//! What only the PostgreSQL backend has: fencing (a second dohost on the same database
//! stops the first), a database that goes away and comes back, a serialization failure
//! retried, and start-up refusals that name the database with its password hidden. The
//! tests every backend shares run on PostgreSQL from their own files.

mod common;
use common::postgres::server;
use common::process::HostProcess;
use common::proxy::Proxy;
use common::*;

/// The name of the database behind a test's data directory.
fn database_name(dir: &std::path::Path) -> String {
    let url = database_of(dir).expect("a PostgreSQL data directory");
    url.rsplit('/').next().unwrap().to_string()
}

/// A host serving the counter on a fresh database (its name is the last item), reached
/// through a proxy the test can cut; the data directory goes with it.
async fn counter_through_proxy() -> (TestHost, std::sync::Arc<Proxy>, tempfile::TempDir, String) {
    through_proxy(&["counter"], dohost::Limits::default()).await
}

/// A host serving `guests` with `limits` on a fresh database (its name is the last item),
/// reached through a proxy the test can cut; the data directory goes with it.
async fn through_proxy(
    guests: &[&str],
    limits: dohost::Limits,
) -> (TestHost, std::sync::Arc<Proxy>, tempfile::TempDir, String) {
    let url = server().fresh_database();
    let proxy = Proxy::start(([127, 0, 0, 1], server().port).into()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    let host = start_through(&proxy, &db, dir.path(), guests, limits).await;
    (host, proxy, dir, db)
}

/// A host serving `guests` with `limits` on database `db`, reached through `proxy`.
async fn start_through(
    proxy: &Proxy,
    db: &str,
    dir: &std::path::Path,
    guests: &[&str],
    limits: dohost::Limits,
) -> TestHost {
    let pg = server();
    let through = pg.url(db).replace(
        &format!(":{}/", pg.port),
        &format!(":{}/", proxy.addr.port()),
    );
    let mut cfg = config(guests, dir, limits);
    cfg.storage = Some(through);
    TestHost::start_config(cfg).await
}

/// Two hosts started on one database by mistake: the second fences the first, whose next
/// write is refused (503, nothing written) and which then stops with a clear log line and
/// a non-zero exit. The second serves everything the first acknowledged.
#[tokio::test]
async fn a_second_host_on_the_same_database_fences_the_first() {
    let dir = Backend::Postgres.data_dir();
    let data = dir.path().join("data");
    let mut first = HostProcess::spawn(&data, &["counter"], &[]);
    let c = client();
    let at = |h: &HostProcess, p: &str| format!("http://{}/counter/shared{p}", h.addr);
    for n in 1..=3 {
        assert_eq!(
            get(&c, &at(&first, "/increment")).await,
            (200, n.to_string())
        );
    }
    let second = HostProcess::spawn(&dir.path().join("data2"), &["counter"], &[]);
    let (status, body) = get(&c, &at(&first, "/increment")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("another dohost took over"), "{body}");
    let exit = first.exited().await;
    assert!(!exit.success(), "a fenced host exits non-zero");
    let log = first.log();
    assert!(
        log.contains("another dohost took over this storage: stopping"),
        "{log}"
    );
    assert_eq!(get(&c, &at(&second, "/get")).await, (200, "3".into()));
    assert_eq!(get(&c, &at(&second, "/increment")).await, (200, "4".into()));
    second.kill();
}

/// The connection to the database is lost mid-run: a write is refused with 503 and
/// Retry-After (nothing written), the health check says why, and once the database is
/// back the host reconnects by itself and the object, rebuilt from the database, goes on
/// from what was acknowledged.
#[tokio::test]
async fn a_lost_database_is_answered_503_and_the_host_reconnects() {
    let (host, proxy, _dir, db) = counter_through_proxy().await;
    let c = client();
    let u = |p: &str| host.url(&format!("/counter/flaky{p}"));
    for n in 1..=3 {
        assert_eq!(get(&c, &u("/increment")).await, (200, n.to_string()));
    }

    proxy.cut();
    let r = c.get(u("/increment")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body = r.text().await.unwrap();
    assert!(body.contains("database is unreachable"), "{body}");
    let (status, health) = get(&c, &host.url("/.well-known/dohost/health")).await;
    assert_eq!(status, 503, "{health}");

    proxy.restore();
    wait_until("the host wrote again", || async {
        get(&c, &u("/increment")).await.0 == 200
    })
    .await;
    // 3 acknowledged before, the refused one not applied, one more after.
    assert_eq!(get(&c, &u("/get")).await, (200, "4".into()));
    assert_eq!(server().psql(&db, "SELECT count(*) FROM dohost.kv"), "1");
    wait_until("health recovered", || async {
        get(&c, &host.url("/.well-known/dohost/health")).await.0 == 200
    })
    .await;
    host.stop().await;
}

/// Asserts `r` is 503 with `Retry-After` and a body saying `says`; answers the body.
async fn refused_for_now(r: reqwest::Response, says: &str) -> String {
    let status = r.status();
    let retry = r.headers().get("retry-after").cloned();
    let body = r.text().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        retry.as_ref().map(|v| v.to_str().unwrap()),
        Some("1"),
        "{body}"
    );
    assert!(body.contains(says), "{body}");
    body
}

/// Regression (issue 36, finding 7): a storage read the host could not make reached the
/// client as 500 — from a handler's `?` on the SDK's error, from a constructor that panics
/// on it (as the counter's does), and from an activation's own read. Each is an outage a
/// client may wait out: 503 with `Retry-After` (a calling object: the `unavailable` call
/// error). The guest sees the WIT's `internal` code, whose message says the database could
/// not be reached; one that handles it keeps its answer. A panic with no failed read
/// stays 500.
#[tokio::test]
async fn a_read_the_database_cannot_answer_is_503_from_handler_constructor_and_activation() {
    let guests = ["test-object"];
    let (host, proxy, dir, db) = through_proxy(&guests, dohost::Limits::default()).await;
    let c = client();
    let big = vec![b'x'; 100 << 10];
    let at = host.url("/test-object/big/put?key=big");
    assert_eq!(post(&c, &at, big).await.0, 200);
    host.stop().await;
    // Started again, the host reads the object's size: past PRELOAD_MAX_BYTES, its reads
    // (its constructor's too) go to the database, not to a copy in memory.
    let host = start_through(&proxy, &db, dir.path(), &guests, Default::default()).await;
    let u = |name: &str, p: &str| host.url(&format!("/test-object/{name}{p}"));
    assert_eq!(get(&c, &u("big", "/get?key=other")).await.0, 404);
    // A small object, live and held in memory: it can call while the database is cut (a
    // write, so that its answer waits for its name to be stored: a commit cut would make
    // it read everything again).
    let at = u("caller", "/put?key=k");
    assert_eq!(post(&c, &at, b"v".to_vec()).await.0, 200);

    proxy.cut();
    // The guest sees `internal`, saying why; handled, its own answer stands (and its
    // instance stays).
    let (status, body) = get(&c, &u("big", "/get-handled?key=other")).await;
    assert_eq!(status, 424, "{body}");
    assert!(body.starts_with("handled (Internal)"), "{body}");
    assert!(body.contains("the database could not be reached"), "{body}");
    // The handler's `?` on the failed read (the SDK's error): the SDK answers 500, the host
    // 503, and the guest's own answer stays in the log. The event's writes go with its
    // instance, so a client that retries cannot apply them twice.
    let r = c.get(u("big", "/get?key=other")).send().await.unwrap();
    let body = refused_for_now(
        r,
        "the event failed after the object's storage could not be read",
    )
    .await;
    assert!(!body.contains("Internal Server Error"), "{body}");
    // The instance is rebuilt: its constructor's read fails and it panics.
    let r = c.get(u("big", "/get?key=other")).send().await.unwrap();
    refused_for_now(
        r,
        "the constructor failed after the object's storage could not be read",
    )
    .await;
    // Through another object, the same failure is the `unavailable` call error.
    let (status, body) = get(
        &c,
        &u(
            "caller",
            "/call?binding=test-object&name=big&path=%2Fget%3Fkey%3Dother",
        ),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.starts_with("call failed (ErrorCode::Unavailable)"),
        "{body}"
    );
    assert!(body.contains("storage could not be read"), "{body}");
    // An object never seen: its activation cannot read what it stores.
    let r = c.get(u("fresh", "/get?key=other")).send().await.unwrap();
    refused_for_now(r, "cannot read the object's storage").await;

    proxy.restore();
    wait_until("the object reads again", || async {
        get(&c, &u("big", "/get?key=other")).await.0 == 404
    })
    .await;
    assert_eq!(get(&c, &u("fresh", "/get?key=other")).await.0, 404);
    // A panic that no failed read caused is the object's own failure.
    let (status, body) = get(&c, &u("big", "/panic")).await;
    assert_eq!(status, 500, "{body}");
    host.stop().await;
}

/// Regression (issue 36, finding 7): a database behind a black hole (connections open,
/// nothing answered) held every request for as long as the hole lasted, and health said
/// 200. Each exchange with the database is bounded by `storage_timeout_ms`: health says 503
/// without any write to find out, a write and a read are refused with 503 in bounded time,
/// and once the hole closes the host serves again from what was acknowledged.
#[tokio::test]
async fn a_black_holed_database_fails_in_bounded_time_and_health_says_so() {
    let bound = std::time::Duration::from_secs(1);
    let limits = dohost::Limits {
        storage_timeout: bound,
        ..Default::default()
    };
    let (host, proxy, _dir, _db) = through_proxy(&["counter"], limits).await;
    // Without a bound, a request would wait as long as the hole: this fails it instead.
    let c = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let u = |p: &str| host.url(&format!("/counter/held{p}"));
    let health = host.url("/.well-known/dohost/health");
    for n in 1..=3 {
        assert_eq!(get(&c, &u("/increment")).await, (200, n.to_string()));
    }

    proxy.black_hole();
    // No write has failed yet: the probe alone finds out.
    wait_until("health says the database does not answer", || async {
        let (status, body) = get(&c, &health).await;
        status == 503 && body.contains("the database has not answered")
    })
    .await;
    let started = std::time::Instant::now();
    let r = c
        .get(u("/increment"))
        .send()
        .await
        .expect("a bounded answer");
    let write = started.elapsed();
    refused_for_now(r, "database is unreachable").await;
    let started = std::time::Instant::now();
    let r = c
        .get(host.url("/counter/other/get"))
        .send()
        .await
        .expect("a bounded answer");
    let read = started.elapsed();
    refused_for_now(r, "did not answer within").await;
    eprintln!(
        "black hole, storage_timeout_ms = {bound:?}: a write refused after {write:?}, a read after {read:?}"
    );
    assert!(
        write < 10 * bound && read < 10 * bound,
        "{write:?} {read:?}"
    );

    proxy.restore();
    wait_until("the host wrote again", || async {
        get(&c, &u("/increment")).await.0 == 200
    })
    .await;
    assert_eq!(get(&c, &u("/get")).await, (200, "4".into()));
    wait_until("health recovered", || async {
        get(&c, &health).await.0 == 200
    })
    .await;
    host.stop().await;
}

/// The connection is lost just after COMMIT reached the database: the outcome is unknown
/// to the host, so the request gets 500 saying so (not 503: a retry could apply it twice),
/// and the object is rebuilt from what the database holds, which here includes that write
/// (its in-memory copy of the object, taken before, must not be used).
#[tokio::test]
async fn a_connection_lost_during_commit_is_an_unknown_outcome_rebuilt_from_the_database() {
    let (host, proxy, _dir, _db) = counter_through_proxy().await;
    let c = client();
    let u = |p: &str| host.url(&format!("/counter/unknown{p}"));
    for n in 1..=3 {
        assert_eq!(get(&c, &u("/increment")).await, (200, n.to_string()));
    }
    // The simple-query message carrying COMMIT.
    proxy.cut_after(b"COMMIT\0");
    let (status, body) = get(&c, &u("/increment")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("may or may not be durable"), "{body}");
    proxy.restore();
    wait_until("storage works again", || async {
        get(&c, &host.url("/.well-known/dohost/health")).await.0 == 200
    })
    .await;
    // The database applied it: the object, rebuilt from there, goes on from 4.
    assert_eq!(get(&c, &u("/get")).await, (200, "4".into()));
    assert_eq!(get(&c, &u("/increment")).await, (200, "5".into()));
    host.stop().await;
}

/// A batch the database refuses with a serialization failure (as CockroachDB does under
/// contention) is tried again whole: the client sees one success, and the write is there
/// once.
#[tokio::test]
async fn a_serialization_failure_is_retried_whole() {
    let (pg, dir) = (server(), Backend::Postgres.data_dir());
    let db = database_name(dir.path());
    let host = TestHost::start(&["counter"], dir.path()).await;
    let c = client();
    let u = |p: &str| host.url(&format!("/counter/contended{p}"));
    assert_eq!(get(&c, &u("/increment")).await, (200, "1".into()));
    // The next two inserts into kv fail with 40001, then the trigger lets them through
    // (a sequence counts them: it is not rolled back with the failed transactions).
    pg.psql(
        &db,
        "CREATE SEQUENCE dohost_test_attempts; \
         CREATE FUNCTION dohost_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF nextval('dohost_test_attempts') <= 2 THEN \
             RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure'; \
           END IF; \
           RETURN NEW; \
         END $$; \
         CREATE TRIGGER dohost_test_fail BEFORE INSERT ON dohost.kv \
           FOR EACH ROW EXECUTE FUNCTION dohost_test_fail();",
    );
    assert_eq!(get(&c, &u("/increment")).await, (200, "2".into()));
    assert_eq!(
        pg.psql(&db, "SELECT last_value FROM dohost_test_attempts"),
        "3",
        "two refused attempts, then the one that committed"
    );
    assert_eq!(get(&c, &u("/increment")).await, (200, "3".into()));
    host.stop().await;
}

/// An unreachable database stops start-up with a message naming it, password hidden.
#[test]
fn an_unreachable_database_stops_start_up_naming_it() {
    let port = free_port();
    let url = format!("postgres://alice:s3cret@127.0.0.1:{port}/nowhere");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["run", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .args(["--storage", &url])
        .arg(guest("counter"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("postgres://alice:***@127.0.0.1:{port}/nowhere")),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "the password leaked: {err}");
}

/// A database written by a newer dohost is refused, saying which version it found.
#[tokio::test]
async fn a_newer_schema_is_refused_naming_its_version() {
    let (pg, dir) = (server(), Backend::Postgres.data_dir());
    let db = database_name(dir.path());
    let cfg = config(&["counter"], dir.path(), dohost::Limits::default());
    let host = TestHost::start_config(cfg.clone()).await;
    host.stop().await;
    pg.psql(
        &db,
        "UPDATE dohost.meta SET value = '99' WHERE key = 'schema_version'",
    );
    let err = match dohost::Runtime::start(&cfg) {
        Ok(_) => panic!("a newer schema was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("schema version 99"), "{err}");
    assert!(err.contains("newer dohost"), "{err}");
}

/// `dohost migrate` works on PostgreSQL too (named by the config file's `storage`), and
/// takes no shard: a running host keeps writing.
#[tokio::test]
async fn migrate_applies_to_postgres_without_fencing_a_running_host() {
    let dir = Backend::Postgres.data_dir();
    let data = dir.path().join("data");
    let host = HostProcess::spawn(&data, &["counter"], &[]);
    let c = client();
    let u = format!("http://{}/counter/m/increment", host.addr);
    assert_eq!(get(&c, &u).await, (200, "1".into()));
    let config = dir.path().join("wrangler.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "name": "other",
            "durable_objects": {"bindings": [{"name": "C", "class_name": "Counter"}]},
            "migrations": [{"tag": "v1", "new_classes": ["Counter"]}],
            "dohost": {
                "components": {"Counter": guest("counter")},
                "storage": database_of(&data).unwrap(),
            },
        })
        .to_string(),
    )
    .unwrap();
    let printed = common::process::run_dohost([
        std::ffi::OsStr::new("migrate"),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(printed.contains("v1: create class Counter"), "{printed}");
    assert_eq!(get(&c, &u).await, (200, "2".into()));
    host.kill();
}

//! The SQL table: each object's SQLite database (dohost's `sql` interface, the `sql-bench`
//! guest) against workerd's SQLite-backed Durable Objects (`bench/workerd/sql.js`), kept up
//! side by side with each workload's runs interleaved (A, B, A, B …); dohost's key-value
//! `get` and increment on one object run in the same rounds as the bases of two targets.
//! Then dohost on PostgreSQL inserting over the spread, and the memory an idle live object
//! holds once it has used SQL, against one of the same module that has not.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::{StreamExt, stream};

use crate::cpu::{self, Usage};
use crate::format::{mark, ms, rate, times};
use crate::load::{self, Load, WrkResult};
use crate::probes::{self, counter, get_text};
use crate::rounds::{check_clean, report_as};
use crate::servers::{Kind, Paths, Server};

pub struct SqlOpts {
    pub rounds: u32,
    pub duration: Duration,
    pub connections: u32,
    pub threads: u32,
    /// Objects the spread inserts walk through.
    pub objects: u32,
    /// Objects touched with SQL, and as many without, for the memory row.
    pub rss_objects: u32,
    pub dohost_only: bool,
    /// Run the PostgreSQL row (it starts a PostgreSQL 15 server of its own).
    pub postgres: bool,
}

/// The value every insert stores.
const BODY: &str = "a bench item, thirty-two bytes!!";
/// Rows put in the point-select object before the rounds; the select reads the middle one.
const SELECT_ROWS: u32 = 1_000;
const SELECT_ID: u32 = 500;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    /// The key-value bases: the counter's `get` (its value, read at construction) and
    /// increment (a `put`) on one object; dohost only.
    KvGet,
    KvIncrement,
    InsertOne,
    InsertSpread,
    Select,
}

const WORKLOADS: [Workload; 5] = [
    Workload::KvGet,
    Workload::KvIncrement,
    Workload::InsertOne,
    Workload::InsertSpread,
    Workload::Select,
];

impl Workload {
    fn index(self) -> usize {
        WORKLOADS.iter().position(|&w| w == self).expect("listed")
    }

    fn name(self, objects: u32) -> String {
        match self {
            Workload::KvGet => "key-value get, one object".into(),
            Workload::KvIncrement => "key-value increment, one object".into(),
            Workload::InsertOne => "SQL insert, one object".into(),
            Workload::InsertSpread => format!("SQL insert, {objects} objects"),
            Workload::Select => "SQL point select by primary key, one object (warm)".into(),
        }
    }

    /// workerd runs only the SQL workloads.
    fn sql(self) -> bool {
        !matches!(self, Workload::KvGet | Workload::KvIncrement)
    }
}

/// `/{action}` of the SQL object `name`: dohost's default route puts the binding first,
/// workerd's front worker routes `/sql/{name}/{action}` to the object as `/sql/{action}`.
fn sql_path(kind: Kind, name: &str, action: &str) -> String {
    match kind {
        Kind::Workerd => format!("/sql/{name}/{action}"),
        _ => format!("/sql-bench/{name}/sql/{action}"),
    }
}

/// A workload's path (or, spread, its prefix and suffix) on `kind`.
fn workload_path(w: Workload, kind: Kind) -> (String, String) {
    match w {
        Workload::KvGet => (kind.counter_path("sql-kv-get", "get"), String::new()),
        Workload::KvIncrement => (kind.counter_path("sql-kv-inc", "increment"), String::new()),
        Workload::InsertOne => (sql_path(kind, "sql-one", "insert"), String::new()),
        Workload::InsertSpread => {
            let (prefix, suffix) = match kind {
                Kind::Workerd => ("/sql/sql-spread-", "/insert"),
                _ => ("/sql-bench/sql-spread-", "/sql/insert"),
            };
            (prefix.into(), suffix.into())
        }
        Workload::Select => (
            sql_path(kind, "sql-get", &format!("get?id={SELECT_ID}")),
            String::new(),
        ),
    }
}

/// The runs of one workload against one server.
#[derive(Default, Clone)]
struct Runs(Vec<WrkResult>);

impl Runs {
    fn median(&self) -> Option<WrkResult> {
        load::median(&self.0, WrkResult::rps)
    }

    /// Writes acknowledged over the runs, and how many more may have been applied.
    fn acknowledged(&self, connections: u32) -> (i64, i64) {
        self.0.iter().fold((0, 0), |(a, s), r| {
            (
                a + r.requests as i64,
                s + r.unanswered_bound(connections) as i64,
            )
        })
    }
}

/// Memory of idle live objects of the `sql-bench` module, each touched once.
pub struct Memory {
    objects: u32,
    /// RSS per object without SQL (`/nosql`), then with (`/sql/count`: table made).
    nosql_kib: f64,
    sql_kib: f64,
    nosql_pss_kib: f64,
    sql_pss_kib: f64,
    rss_kib: (u64, u64, u64),
}

pub struct SqlFigures {
    rounds: u32,
    /// runs[server][workload]: dohost, then workerd.
    dohost: Vec<Runs>,
    workerd: Option<Vec<Runs>>,
    postgres: Option<Runs>,
    memory: Memory,
    usages: Vec<Usage>,
}

fn load<'a>(o: &SqlOpts, s: &Server, base: &'a str, path: &'a (String, String)) -> Load<'a> {
    Load {
        base_url: base,
        prefix: &path.0,
        suffix: &path.1,
        spread: 0,
        post: None,
        random: false,
        cpus: None,
        server_pid: Some(s.pid()),
        connections: o.connections,
        threads: o.threads,
        duration: o.duration,
    }
}

/// One wrk run of `w` against `s`, checked clean.
async fn run(
    o: &SqlOpts,
    s: &Server,
    label: &str,
    w: Workload,
    work: &std::path::Path,
) -> Result<WrkResult> {
    let base = s.url("");
    let path = workload_path(w, s.kind);
    let mut l = load(o, s, &base, &path);
    if matches!(w, Workload::InsertOne | Workload::InsertSpread) {
        l.post = Some(BODY);
    }
    if w == Workload::InsertSpread {
        l.spread = o.objects;
    }
    let r = load::run(&l, work).await?;
    check_clean(s.kind, &w.name(o.objects), &r)?;
    report_as(label, &w.name(o.objects), &r);
    Ok(r)
}

/// GETs every path with some concurrency, each answering 200; their bodies.
async fn get_all(client: &reqwest::Client, s: &Server, paths: Vec<String>) -> Result<Vec<String>> {
    stream::iter(paths)
        .map(|p| {
            let url = s.url(&p);
            async move { get_text(client, &url).await }
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The rows of SQL object `name`.
async fn count(client: &reqwest::Client, s: &Server, name: &str) -> Result<i64> {
    let url = s.url(&sql_path(s.kind, name, "count"));
    let body = get_text(client, &url).await?;
    body.trim()
        .parse()
        .with_context(|| format!("{url} answered {body:?}, not a number"))
}

/// The select object's rows, and the one it reads checked; the get counter set to 1.
async fn prepare(client: &reqwest::Client, s: &Server) -> Result<()> {
    let url = s.url(&sql_path(s.kind, "sql-get", "insert"));
    let answers: Vec<Result<reqwest::Response, reqwest::Error>> = stream::iter(0..SELECT_ROWS)
        .map(|_| client.post(&url).body(BODY).send())
        .buffer_unordered(16)
        .collect()
        .await;
    for a in answers {
        let a = a?;
        ensure!(a.status() == 200, "POST {url}: {}", a.status());
    }
    ensure!(
        count(client, s, "sql-get").await? == i64::from(SELECT_ROWS),
        "{}: the select object does not hold the {SELECT_ROWS} rows just inserted",
        s.kind.label()
    );
    let (path, _) = workload_path(Workload::Select, s.kind);
    let v = get_text(client, &s.url(&path)).await?;
    ensure!(v == BODY, "{}: {path} answered {v:?}", s.kind.label());
    if s.kind != Kind::Workerd {
        get_text(
            client,
            &s.url(&s.kind.counter_path("sql-kv-get", "increment")),
        )
        .await?;
    }
    Ok(())
}

/// Every acknowledged write is there, and no more than may have been applied.
fn check_range(label: &str, what: &str, value: i64, runs: &Runs, connections: u32) -> Result<()> {
    let (acked, slack) = runs.acknowledged(connections);
    ensure!(
        (acked..=acked + slack).contains(&value),
        "{label} {what}: {value} after {acked} acknowledged writes (at most {} possible)",
        acked + slack
    );
    Ok(())
}

/// After the rounds: the rows (and counters) against the acknowledged writes.
async fn check(
    o: &SqlOpts,
    client: &reqwest::Client,
    s: &Server,
    label: &str,
    runs: &[Runs],
) -> Result<()> {
    let sql = |w: Workload| &runs[w.index()];
    if !sql(Workload::InsertOne).0.is_empty() {
        let n = count(client, s, "sql-one").await?;
        check_range(
            label,
            "rows of the one object",
            n,
            sql(Workload::InsertOne),
            o.connections,
        )?;
    }
    if !sql(Workload::InsertSpread).0.is_empty() {
        let names: Vec<String> = (0..o.objects)
            .map(|i| sql_path(s.kind, &format!("sql-spread-{i}"), "count"))
            .collect();
        let mut sum = 0i64;
        for body in get_all(client, s, names).await? {
            sum += body.trim().parse::<i64>().context("a count")?;
        }
        check_range(
            label,
            "rows of the spread",
            sum,
            sql(Workload::InsertSpread),
            o.connections,
        )?;
    }
    if !sql(Workload::Select).0.is_empty() {
        ensure!(
            count(client, s, "sql-get").await? == i64::from(SELECT_ROWS),
            "{label}: the select object's rows changed under a read-only load"
        );
    }
    if !sql(Workload::KvGet).0.is_empty() {
        ensure!(
            counter(client, s, "sql-kv-get").await? == 1,
            "{label}: sql-kv-get changed under a read-only load"
        );
    }
    if !sql(Workload::KvIncrement).0.is_empty() {
        let v = counter(client, s, "sql-kv-inc").await?;
        check_range(
            label,
            "increments",
            v,
            sql(Workload::KvIncrement),
            o.connections,
        )?;
    }
    eprintln!("   {label}: every acknowledged write is there");
    Ok(())
}

pub async fn measure(o: &SqlOpts, paths: &Paths) -> Result<SqlFigures> {
    eprintln!(
        "== SQL: servers side by side, {} interleaved rounds",
        o.rounds
    );
    let client = probes::client();
    let live = (o.objects + 100).to_string();
    let dohost = Server::start_flagged(
        paths,
        "sql-dohost",
        &["--max-live-objects".into(), live.clone()],
        &["sql-bench"],
    )
    .await?;
    let workerd = match o.dohost_only {
        true => None,
        false => {
            let _ = std::fs::remove_dir_all(paths.data(Kind::Workerd));
            Some(Server::start(Kind::Workerd, paths, 0).await?)
        }
    };
    let mut servers = vec![("dohost", &dohost)];
    if let Some(w) = &workerd {
        servers.push(("workerd", w));
    }
    for (_, s) in &servers {
        prepare(&client, s).await?;
    }
    let mut runs: Vec<Vec<Runs>> = servers.iter().map(|_| vec![Runs::default(); 5]).collect();
    for round in 0..o.rounds {
        eprintln!("   round {}", round + 1);
        for w in WORKLOADS {
            for (i, (label, s)) in servers.iter().enumerate() {
                if s.kind == Kind::Workerd && !w.sql() {
                    continue;
                }
                let r = run(o, s, label, w, &paths.work).await?;
                runs[i][w.index()].0.push(r);
            }
        }
    }
    for (i, (label, s)) in servers.iter().enumerate() {
        check(o, &client, s, label, &runs[i]).await?;
    }
    dohost.kill().await?;
    if let Some(w) = workerd {
        w.kill().await?;
    }
    let mut runs = runs.into_iter();
    let dohost_runs = runs.next().expect("dohost ran");
    let workerd_runs = runs.next();

    let postgres = match o.postgres {
        true => Some(on_postgres(o, paths, &client).await?),
        false => None,
    };
    let memory = memory(o, paths, &client).await?;
    let usages = dohost_runs
        .iter()
        .chain(workerd_runs.iter().flatten())
        .chain(postgres.iter())
        .flat_map(|r| r.0.iter().filter_map(|r| r.usage))
        .collect();
    Ok(SqlFigures {
        rounds: o.rounds,
        dohost: dohost_runs,
        workerd: workerd_runs,
        postgres,
        memory,
        usages,
    })
}

/// dohost with its data in a PostgreSQL 15 of its own: the spread inserts, `rounds` runs.
async fn on_postgres(o: &SqlOpts, paths: &Paths, client: &reqwest::Client) -> Result<Runs> {
    eprintln!("== SQL: dohost on PostgreSQL");
    let pg = crate::postgres::Postgres::start()?;
    let result = async {
        let s = Server::start_flagged(
            paths,
            "sql-postgres",
            &[
                "--storage".into(),
                pg.url(),
                "--max-live-objects".into(),
                (o.objects + 100).to_string(),
            ],
            &["sql-bench"],
        )
        .await?;
        let mut runs = vec![Runs::default(); 5];
        for _ in 0..o.rounds {
            let r = run(
                o,
                &s,
                "dohost-postgres",
                Workload::InsertSpread,
                &paths.work,
            )
            .await?;
            runs[Workload::InsertSpread.index()].0.push(r);
        }
        check(o, client, &s, "dohost-postgres", &runs).await?;
        s.kill().await?;
        Ok(runs.swap_remove(Workload::InsertSpread.index()))
    }
    .await;
    pg.stop()?;
    result
}

/// A fresh host holding every object it touches (idle timeout an hour, room for all of
/// them): `rss_objects` of the `sql-bench` module touched without SQL, then as many with.
async fn memory(o: &SqlOpts, paths: &Paths, client: &reqwest::Client) -> Result<Memory> {
    let n = o.rss_objects.max(1);
    eprintln!("== SQL: memory of {n} idle objects without SQL, then {n} with");
    let live = 2 * n + 300;
    let flags = [
        "--max-live-objects".to_string(),
        live.to_string(),
        // Each live instance counts its whole initial memory against the budget (see the
        // scale table's live row): room for all of them.
        "--max-memory".into(),
        (u64::from(live) * (2 << 20)).to_string(),
        "--idle-secs".into(),
        "3600".into(),
    ];
    let s = Server::start_flagged(paths, "sql-memory", &flags, &["sql-bench"]).await?;
    let nosql = |prefix: &str, n: u32| -> Vec<String> {
        (0..n)
            .map(|i| format!("/sql-bench/nosql-{prefix}{i}/nosql"))
            .collect()
    };
    let sql = |prefix: &str, n: u32| -> Vec<String> {
        (0..n)
            .map(|i| sql_path(Kind::Dohost, &format!("mem-{prefix}{i}"), "count"))
            .collect()
    };
    // The module's code and SQLite's first use warm before anything is counted.
    for body in get_all(client, &s, nosql("warm-", 100)).await? {
        ensure!(
            body == "nosql",
            "a nosql- object answered {body:?}: it made its table"
        );
    }
    get_all(client, &s, sql("warm-", 100)).await?;
    let pause = || tokio::time::sleep(Duration::from_millis(500));
    pause().await;
    let before = (s.rss_kib()?, s.pss_kib()?);
    get_all(client, &s, nosql("", n)).await?;
    pause().await;
    let middle = (s.rss_kib()?, s.pss_kib()?);
    for body in get_all(client, &s, sql("", n)).await? {
        ensure!(body == "0", "a new SQL object counted {body:?} rows");
    }
    pause().await;
    let after = (s.rss_kib()?, s.pss_kib()?);
    s.kill().await?;
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / f64::from(n);
    let m = Memory {
        objects: n,
        nosql_kib: per(before.0, middle.0),
        sql_kib: per(middle.0, after.0),
        nosql_pss_kib: per(before.1, middle.1),
        sql_pss_kib: per(middle.1, after.1),
        rss_kib: (before.0, middle.0, after.0),
    };
    eprintln!(
        "   RSS {} -> {} -> {} KiB: {:.1} KiB per object without SQL, {:.1} KiB with",
        before.0, middle.0, after.0, m.nosql_kib, m.sql_kib
    );
    Ok(m)
}

pub fn table(o: &SqlOpts, f: &SqlFigures) -> String {
    let d = |w: Workload| f.dohost[w.index()].median();
    let wd = |w: Workload| f.workerd.as_ref().and_then(|r| r[w.index()].median());
    let mut out = format!(
        "
| SQL: each object's SQLite database, servers side by side, {} interleaved rounds, \
         medians | dohost | workerd | dohost vs workerd | dohost's key-value base | target |
| --- | ---: | ---: | ---: | --- | --- |\n",
        f.rounds
    );
    let both = |r: Option<WrkResult>| {
        r.map_or("-".into(), |r| format!("{} ; {}", rate(r.rps()), ms(r.p99)))
    };
    let rows = [
        (Workload::InsertOne, Some((Workload::KvIncrement, 0.5))),
        (Workload::InsertSpread, None),
        (Workload::Select, Some((Workload::KvGet, 0.85))),
    ];
    for (w, base) in rows {
        let Some(dr) = d(w) else { continue };
        let wr = wd(w);
        let ratio = wr.map(|wr| dr.rps() / wr.rps());
        let mut targets = vec![mark(ratio.map(|r| r >= 10.0), "≥ 10× workerd")];
        let base_cell = match base.and_then(|(b, t)| d(b).map(|br| (b, br, t))) {
            Some((b, br, t)) => {
                let share = dr.rps() / br.rps();
                targets.push(mark(
                    Some(share >= t),
                    &format!("≥ {:.0}% of {}", 100.0 * t, b.name(o.objects)),
                ));
                format!(
                    "{:.0}% of {} ({} ; {})",
                    100.0 * share,
                    b.name(o.objects),
                    rate(br.rps()),
                    ms(br.p99)
                )
            }
            None => "-".into(),
        };
        out.push_str(&format!(
            "| {} (req/s; p99) | {} | {} | {} | {base_cell} | {} |\n",
            w.name(o.objects),
            both(Some(dr)),
            both(wr),
            ratio.map_or("-".into(), times),
            targets.join("; "),
        ));
    }
    if let Some(pr) = f.postgres.as_ref().and_then(Runs::median) {
        let wr = wd(Workload::InsertSpread);
        let ratio = wr.map(|wr| pr.rps() / wr.rps());
        let of_redb = d(Workload::InsertSpread).map_or("-".into(), |dr| {
            format!("{:.0}% of dohost on redb", 100.0 * pr.rps() / dr.rps())
        });
        out.push_str(&format!(
            "| {} on PostgreSQL 15 (fsync on; req/s; p99) | {} | {} | {} | {of_redb} | {} |\n",
            Workload::InsertSpread.name(o.objects),
            both(Some(pr)),
            both(wr),
            ratio.map_or("-".into(), times),
            mark(ratio.map(|r| r >= 5.0), "≥ 5× workerd"),
        ));
    }
    let m = &f.memory;
    let extra = m.sql_kib - m.nosql_kib;
    out.push_str(&format!(
        "| RSS per idle live object of the same module: with SQL (its table made, one query) \
         / without ({} each; PSS in brackets) | {:.1} KiB / {:.1} KiB ({:.1} / {:.1}) | - | - \
         | {extra:.1} KiB more with SQL; RSS {} → {} → {} MiB | {} |\n",
        m.objects,
        m.sql_kib,
        m.nosql_kib,
        m.sql_pss_kib,
        m.nosql_pss_kib,
        m.rss_kib.0 / 1024,
        m.rss_kib.1 / 1024,
        m.rss_kib.2 / 1024,
        mark(Some(extra <= 48.0), "≤ 48 KiB more with SQL"),
    ));
    out.push_str(&format!(
        "\nEach round runs every workload against every server in turn (wrk {} threads, {} \
         connections, {} s; inserts POST a {}-byte value, the select reads row {SELECT_ID} of \
         {SELECT_ROWS}); the key-value bases are dohost's counter in the same rounds; every \
         acknowledged insert checked in the rows afterwards. {}\n",
        o.threads,
        o.connections,
        o.duration.as_secs(),
        BODY.len(),
        cpu::disturbance(&f.usages),
    ));
    out
}

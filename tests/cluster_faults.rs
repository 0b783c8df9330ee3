//! Three nodes on a real etcd and PostgreSQL, each reaching both through a proxy of its own
//! that the test can black-hole, while clients append through every node: a node killed,
//! paused past its lease, cut from etcd only, cut from PostgreSQL only, stopped, and etcd
//! itself stopped. After each, once healed, the history checker holds what the clients
//! were told against what the database kept (see `common::history`).

mod common;
use common::cluster::settled;
use common::etcd::Etcd;
use common::history::{self, Nodes, Workload};
use common::process::HostProcess;
use common::proxy::Proxy;
use common::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODES: usize = 3;
const OBJECTS: usize = 12;
const WORKERS: usize = 6;

struct Node {
    id: String,
    etcd: Arc<Proxy>,
    postgres: Arc<Proxy>,
    process: Option<HostProcess>,
    dir: tempfile::TempDir,
}

struct Rig {
    etcd: Etcd,
    db: String,
    nodes: Vec<Node>,
    /// Where the clients send: each node's current address.
    addrs: Nodes,
    objects: Vec<String>,
}

/// Scenarios take turns: three nodes, etcd and PostgreSQL each, on two cores, and a lease
/// of three seconds.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

impl Rig {
    async fn start() -> Rig {
        let etcd = Etcd::start().await;
        let server = postgres::server();
        let url = server.fresh_database();
        let db = url.rsplit('/').next().unwrap().to_string();
        let etcd_addr: std::net::SocketAddr = etcd
            .client_url
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        let mut nodes = Vec::new();
        for i in 0..NODES {
            nodes.push(Node {
                id: format!("n{}", i + 1),
                etcd: Proxy::start(etcd_addr).await,
                postgres: Proxy::start(([127, 0, 0, 1], server.port).into()).await,
                process: None,
                dir: tempfile::tempdir().unwrap(),
            });
        }
        let mut rig = Rig {
            etcd,
            db,
            nodes,
            addrs: Arc::new(Mutex::new(vec![String::new(); NODES])),
            objects: (0..OBJECTS).map(|i| format!("h-{i}")).collect(),
        };
        for i in 0..NODES {
            rig.launch(i, &url);
        }
        settled(&rig.etcd.client_url, NODES).await;
        rig
    }

    /// Starts node `i` (again) on a fresh port, through its proxies.
    fn launch(&mut self, i: usize, url: &str) {
        let node = &mut self.nodes[i];
        let pg = postgres::server().port;
        let through = url.replace(
            &format!(":{pg}/"),
            &format!(":{}/", node.postgres.addr.port()),
        );
        let etcd = format!("http://{}", node.etcd.addr);
        let addr = format!("127.0.0.1:{}", free_port());
        let flags = [
            "--storage",
            &through,
            "--cluster",
            &etcd,
            "--node-id",
            &node.id,
            "--advertise",
            &addr,
            "--cluster-secret",
            "s3cret",
            // Armed alarms fire within the scenario.
            "--min-alarm-interval",
            "200",
        ];
        node.process = Some(HostProcess::spawn_on(
            &addr,
            node.dir.path(),
            &["test-object"],
            &flags,
        ));
        self.addrs.lock().unwrap()[i] = addr;
    }

    fn url(&self) -> String {
        postgres::server().url(&self.db)
    }

    fn relaunch(&mut self, i: usize) {
        let url = self.url();
        self.launch(i, &url);
    }

    fn pid(&self, i: usize) -> String {
        self.nodes[i]
            .process
            .as_ref()
            .unwrap()
            .child
            .id()
            .to_string()
    }

    fn signal(&self, i: usize, signal: &str) {
        let ok = std::process::Command::new("kill")
            .args([signal, &self.pid(i)])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} node {i}");
    }

    /// Clients appending through every node.
    async fn load(&self) -> Workload {
        let load = Workload::start("test-object", self.addrs.clone(), &self.objects, WORKERS);
        load.progress(60).await;
        load
    }

    /// Waits until `members` members hold every shard, the given one among them or not.
    async fn members(&self, members: usize) {
        settled(&self.etcd.client_url, members).await;
    }

    /// Ends a scenario: the clients stop; once every node serves every object again and
    /// every acknowledged alarm has appended its op, the checker reads the database.
    async fn finish(&self, load: Workload, scenario: &str) {
        load.progress(60).await;
        let ops = load.stop().await;
        let c = client();
        let addrs = self.addrs.lock().unwrap().clone();
        wait_until("every node serves every object", || async {
            for addr in &addrs {
                for o in &self.objects {
                    let url = format!("http://{addr}/test-object/{o}/items");
                    if get(&c, &url).await.0 != 200 {
                        return false;
                    }
                }
            }
            true
        })
        .await;
        let lists =
            history::lists_once_alarms_ran(&ops, || async { history::lists_in_database(&self.db) })
                .await;

        eprintln!("{scenario}: {}", history::summary(&ops));
        let problems = history::check(&ops, &lists);
        assert!(
            problems.is_empty(),
            "{scenario}: the checker found {} problems:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
}

/// kill -9 a node under load; the others take its objects once its lease expires; it
/// restarts (a new incarnation) and gets its share back.
#[tokio::test]
async fn a_node_killed_under_load_and_restarted() {
    let _turn = one_at_a_time().await;
    let mut rig = Rig::start().await;
    let load = rig.load().await;
    let killed_at = Instant::now();
    rig.nodes[2].process.take().unwrap().kill();
    rig.members(2).await;
    load.progress(60).await;
    eprintln!(
        "served by two nodes {:?} after the kill",
        killed_at.elapsed()
    );
    rig.relaunch(2);
    rig.members(3).await;
    rig.finish(load, "SIGKILL and restart").await;
}

/// A node paused (SIGSTOP) past its lease: the others take over; when it resumes (SIGCONT)
/// it has nothing to commit or answer from before.
#[tokio::test]
async fn a_node_paused_past_its_lease_then_resumed() {
    let _turn = one_at_a_time().await;
    let rig = Rig::start().await;
    let load = rig.load().await;
    rig.signal(2, "-STOP");
    rig.members(2).await;
    load.progress(60).await;
    rig.signal(2, "-CONT");
    rig.members(3).await;
    rig.finish(load, "SIGSTOP past the lease, SIGCONT").await;
}

/// A node cut from etcd while it still reaches PostgreSQL: it stops serving before its
/// lease can expire; the others take its shards and fence it; healed, it rejoins.
#[tokio::test]
async fn a_node_cut_from_etcd_only() {
    let _turn = one_at_a_time().await;
    let rig = Rig::start().await;
    let load = rig.load().await;
    rig.nodes[2].etcd.black_hole();
    rig.members(2).await;
    load.progress(60).await;
    rig.nodes[2].etcd.restore();
    rig.members(3).await;
    rig.finish(load, "etcd black-holed from one node").await;
}

/// A node cut from PostgreSQL only: its objects' requests fail or wait (each at most
/// `storage_timeout_ms`, nothing half-applied) while the others' are served; healed, it
/// commits what it held (a cut longer than its lease's TTL also moves its shards: see the
/// next test).
#[tokio::test]
async fn a_node_cut_from_postgres_only() {
    let _turn = one_at_a_time().await;
    let rig = Rig::start().await;
    let load = rig.load().await;
    rig.nodes[2].postgres.black_hole();
    load.progress(60).await;
    rig.nodes[2].postgres.restore();
    rig.finish(load, "PostgreSQL black-holed from one node")
        .await;
}

/// Regression (issue 36, finding 7): a node cut from PostgreSQL kept its lease, so its
/// shards stalled the clients of every node for as long as the cut lasted. Past its
/// lease's TTL it lets the lease lapse: while it is still cut off, the two others hold
/// every shard and serve all its objects; healed, it rejoins and nothing was lost.
#[tokio::test]
async fn a_node_cut_from_postgres_past_its_lease_gives_its_shards_up() {
    let _turn = one_at_a_time().await;
    let rig = Rig::start().await;
    let load = rig.load().await;
    rig.nodes[2].postgres.black_hole();
    rig.members(2).await;
    let c = client();
    let first = rig.addrs.lock().unwrap()[0].clone();
    wait_until("the others serve every object", || async {
        for o in &rig.objects {
            let url = format!("http://{first}/test-object/{o}/items");
            if get(&c, &url).await.0 != 200 {
                return false;
            }
        }
        true
    })
    .await;
    load.progress(60).await;
    rig.nodes[2].postgres.restore();
    rig.members(3).await;
    rig.finish(load, "PostgreSQL black-holed from one node past its lease")
        .await;
}

/// SIGTERM: the node drains and hands its shards over; it comes back later.
#[tokio::test]
async fn a_node_stopped_hands_over_and_returns() {
    let _turn = one_at_a_time().await;
    let mut rig = Rig::start().await;
    let load = rig.load().await;
    rig.signal(2, "-TERM");
    let mut stopped = rig.nodes[2].process.take().unwrap();
    let status = stopped.exited().await;
    assert!(status.success(), "{status:?}\n{}", stopped.log());
    rig.members(2).await;
    load.progress(60).await;
    rig.relaunch(2);
    rig.members(3).await;
    rig.finish(load, "SIGTERM and restart").await;
}

/// etcd stopped for ten seconds: every node stops serving once its lease deadline
/// passes; etcd back, they serve again.
#[tokio::test]
async fn etcd_stopped_for_ten_seconds() {
    let _turn = one_at_a_time().await;
    let mut rig = Rig::start().await;
    let load = rig.load().await;
    rig.etcd.kill();
    // The fault's length is the scenario, not a wait for something to happen.
    tokio::time::sleep(Duration::from_secs(10)).await;
    rig.etcd.restart().await;
    rig.members(3).await;
    rig.finish(load, "etcd stopped for 10 s").await;
}

/// The checker finds what it looks for: a history with one of each violation (an
/// acknowledged append lost, a refused one applied, an index handed out against real-time
/// order, an op applied twice, an epoch going back, one epoch on two nodes) is reported
/// for each; the same history without them is clean.
#[test]
fn the_checker_reports_each_kind_of_violation() {
    use history::{Lists, Op, Outcome, check};
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let op = |id: &str, start: u64, end: u64, outcome: Outcome| Op {
        object: "o".into(),
        op: id.into(),
        by_alarm: false,
        node: "n".into(),
        start: at(start),
        end: at(end),
        outcome,
        detail: String::new(),
    };
    let ok = |index: u64, tag: &str| Outcome::Ok {
        index,
        served_by: Some(tag.into()),
    };
    let list = |items: &[&str]| -> Lists {
        let items: Vec<(u64, String)> = items
            .iter()
            .enumerate()
            .map(|(i, op)| (i as u64, op.to_string()))
            .collect();
        [("o".to_string(), (items.len() as u64, items))].into()
    };
    let good = vec![
        op("a", 0, 10, ok(0, "n1@5")),
        op("b", 20, 30, ok(1, "n1@5")),
        op("c", 40, 50, Outcome::Unknown),
        op("d", 60, 70, Outcome::NotApplied),
        op("e", 80, 90, ok(2, "n2@9")),
    ];
    assert_eq!(check(&good, &list(&["a", "b", "e"])), Vec::<String>::new());
    assert_eq!(
        check(&good, &list(&["a", "b", "c", "e"])).len(),
        1,
        "c at 2, not e"
    );

    // The checker's findings on `history` against `lists` include `needle`.
    let finds = |history: &[Op], lists: Lists, needle: &str| {
        let found = check(history, &lists);
        assert!(
            found.iter().any(|p| p.contains(needle)),
            "{needle}: {found:?}"
        );
    };
    finds(&good, list(&["a", "e"]), "b acknowledged");
    finds(&good, list(&["a", "b", "e", "d"]), "d was refused");
    finds(&good, list(&["a", "b", "e", "b"]), "b applied twice");
    // b was sent after a was answered, yet got the lower index: two writers.
    let order = [
        op("a", 0, 10, ok(1, "n1@5")),
        op("b", 20, 30, ok(0, "n1@5")),
    ];
    finds(&order, list(&["b", "a"]), "b got index 0");
    let back = [
        op("a", 0, 10, ok(0, "n2@9")),
        op("b", 20, 30, ok(1, "n1@5")),
    ];
    finds(&back, list(&["a", "b"]), "under epoch 5 after");
    let shared = [
        op("a", 0, 10, ok(0, "n1@5")),
        op("b", 20, 30, ok(1, "n2@5")),
    ];
    finds(&shared, list(&["a", "b"]), "epoch 5 served by");
}

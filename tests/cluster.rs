//! The cluster's coordination against a real etcd: members and their leases, shards owned
//! by their rendezvous owner with growing epochs, a dead member's shards freed by etcd, a
//! member that loses etcd counting itself dead before etcd can expire it, and a leave that
//! frees everything at once.

mod common;
use common::cluster::{cluster_status, settled};
use common::etcd::Etcd;
use common::proxy::Proxy;
use common::*;
use dohost::cluster::{Keys, Membership, desired_owner};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(3);

async fn join(endpoint: &str, node: &str) -> Membership {
    Membership::join(
        &[endpoint.to_string()],
        Keys::new("/dohost-test"),
        node,
        &format!("{node}.example:8787"),
        TTL,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn shards_go_to_their_rendezvous_owner_and_epochs_grow() {
    let etcd = Etcd::start().await;
    let a = join(&etcd.client_url, "a").await;
    let b = join(&etcd.client_url, "b").await;
    let members = a.members().await.unwrap();
    assert_eq!(
        members.iter().map(|m| m.node.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(members[1].addr, "b.example:8787");
    let mut epochs = Vec::new();
    for shard in 0..32 {
        let owner = desired_owner(shard, &members).unwrap();
        let (mine, other) = if owner.node == "a" {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let epoch = mine.shards().claim(shard).await.unwrap().expect("vacant");
        assert_eq!(other.shards().claim(shard).await.unwrap(), None, "held");
        epochs.push(epoch);
    }
    assert!(
        epochs.windows(2).all(|w| w[0] < w[1]),
        "epochs grow: {epochs:?}"
    );
    let claims = a.shards().claims().await.unwrap();
    assert_eq!(claims.len(), 32);
    for (shard, claim) in &claims {
        assert_eq!(claim.node, desired_owner(*shard, &members).unwrap().node);
        assert_eq!(claim.epoch, epochs[*shard as usize]);
    }
    // Both own some: the hash spreads them.
    assert!(claims.values().any(|c| c.node == "a") && claims.values().any(|c| c.node == "b"));

    // A release only deletes the claim it names.
    let (shard, claim) = claims.iter().find(|(_, c)| c.node == "a").unwrap();
    assert!(!a.shards().release(*shard, claim.epoch + 1).await.unwrap());
    assert!(a.shards().release(*shard, claim.epoch).await.unwrap());
    let again = b
        .shards()
        .claim(*shard)
        .await
        .unwrap()
        .expect("vacant again");
    assert!(again > claim.epoch, "a new claim has a newer epoch");
}

#[tokio::test]
async fn a_dead_members_shards_are_freed_by_etcd_and_a_leave_frees_them_at_once() {
    let etcd = Etcd::start().await;
    let dead = join(&etcd.client_url, "dead").await;
    let left = join(&etcd.client_url, "left").await;
    let alive = join(&etcd.client_url, "alive").await;
    let old = dead.shards().claim(7).await.unwrap().unwrap();
    left.shards().claim(8).await.unwrap().unwrap();
    // A crash: no more keepalives, no revoke.
    drop(dead);
    left.leave().await.unwrap();
    let claims = alive.shards().claims().await.unwrap();
    assert!(!claims.contains_key(&8), "a leave frees its shards at once");
    assert!(
        claims.contains_key(&7),
        "a crashed member's lease has not expired yet"
    );
    wait_until("etcd expired the dead member's lease", || async {
        !alive.shards().claims().await.unwrap().contains_key(&7)
    })
    .await;
    let members = alive.members().await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    let new = alive.shards().claim(7).await.unwrap().unwrap();
    assert!(new > old);
}

/// A member cut off from etcd counts itself dead (and so stops serving) before etcd can
/// have expired its lease and let another member claim its shards.
#[tokio::test]
async fn a_member_cut_from_etcd_is_dead_before_its_lease_can_expire() {
    let etcd = Etcd::start().await;
    let target: std::net::SocketAddr = etcd.client_url["http://".len()..].parse().unwrap();
    let proxy = Proxy::start(target).await;
    let cut = join(&format!("http://{}", proxy.addr), "cut").await;
    let watcher = join(&etcd.client_url, "watcher").await;
    cut.shards().claim(1).await.unwrap().unwrap();
    assert!(cut.is_live());
    proxy.cut();
    wait_until("the cut member counts itself dead", || async {
        !cut.is_live()
    })
    .await;
    assert!(
        watcher.shards().claims().await.unwrap().contains_key(&1),
        "etcd still holds the shard for the cut member when it gives up"
    );
    assert_eq!(watcher.shards().claim(1).await.unwrap(), None);
    wait_until("etcd expired the cut member's lease", || async {
        !watcher.shards().claims().await.unwrap().contains_key(&1)
    })
    .await;
    assert!(!cut.is_live());
}

/// Waits until every node answers 200 for every `url(node, name)`: each object has an
/// owner, reached from every node.
async fn served_everywhere(
    c: &reqwest::Client,
    nodes: &[&common::process::HostProcess],
    names: &[String],
    url: impl Fn(&common::process::HostProcess, &str) -> String,
) {
    wait_until("every node serves every object", || async {
        for n in nodes {
            for name in names {
                if get(c, &url(n, name)).await.0 != 200 {
                    return false;
                }
            }
        }
        true
    })
    .await;
}

/// `rounds` increments of each object, each through the nodes in turn: one owner counts
/// them all, in order.
async fn increment_through_every_node(
    c: &reqwest::Client,
    nodes: &[&common::process::HostProcess],
    names: &[String],
    rounds: usize,
    url: impl Fn(&common::process::HostProcess, &str) -> String,
) {
    for round in 1..=rounds {
        for (i, name) in names.iter().enumerate() {
            let n = nodes[(i + round) % nodes.len()];
            assert_eq!(
                get(c, &url(n, name)).await,
                (200, round.to_string()),
                "{name} via {}",
                n.addr
            );
        }
    }
}

fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Starts node `id` of a cluster on etcd at `etcd`, with the database behind `dir`.
fn node(etcd: &str, dir: &std::path::Path, id: &str) -> common::process::HostProcess {
    node_serving(etcd, dir, id, &["counter"], &[])
}

/// Like `node`, serving `guests`, with more flags.
fn node_serving(
    etcd: &str,
    dir: &std::path::Path,
    id: &str,
    guests: &[&str],
    more: &[&str],
) -> common::process::HostProcess {
    let addr = free_addr();
    let mut flags = vec![
        "--cluster",
        etcd,
        "--node-id",
        id,
        "--advertise",
        &addr,
        "--cluster-secret",
        "s3cret",
    ];
    flags.extend_from_slice(more);
    common::process::HostProcess::spawn_on(&addr, &dir.join(id), guests, &flags)
}

/// Three real nodes on one etcd and one PostgreSQL: every object has one owner, reached
/// through any node (its counter counts each increment once, in order, whichever node
/// took the request); a node killed with SIGKILL loses no acknowledged write, and its
/// objects are served again by the others once its lease expires.
#[tokio::test]
async fn three_nodes_serve_each_object_once_and_fail_over_after_sigkill() {
    let etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let mut nodes: Vec<_> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| node(&etcd.client_url, dir.path(), id))
        .collect();
    let c = client();
    let url = |n: &common::process::HostProcess, name: &str, action: &str| {
        format!("http://{}/counter/{name}/{action}", n.addr)
    };
    settled(&etcd.client_url, 3).await;
    let names: Vec<String> = (0..24).map(|i| format!("obj-{i}")).collect();
    let everyone: Vec<_> = nodes.iter().collect();
    served_everywhere(&c, &everyone, &names, |n, name| url(n, name, "get")).await;
    increment_through_every_node(&c, &everyone, &names, 6, |n, name| {
        url(n, name, "increment")
    })
    .await;
    // `dohost cluster status` shows the three members sharing the 256 shards.
    // Shards may still be moving to the last member to join.
    wait_until("every shard claimed by one of three members", || async {
        cluster_status(&etcd.client_url).starts_with("3 members, 256 shards claimed")
    })
    .await;
    let status = cluster_status(&etcd.client_url);
    let held: u32 = status
        .lines()
        .skip(2)
        .map(|l| l.split('\t').nth(2).unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!(held, 256, "{status}");
    for (id, n) in ["n1", "n2", "n3"].iter().zip(&nodes) {
        assert!(status.contains(&format!("{id}\t{}\t", n.addr)), "{status}");
    }
    // A request without the cluster's secret that claims to be forwarded is refused.
    let forged = c
        .get(url(&nodes[0], "obj-0", "increment"))
        .header("x-dohost-cluster", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    let dead = nodes.remove(2);
    let killed_at = std::time::Instant::now();
    dead.kill();
    let mut failover = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let n = &nodes[i % 2];
        let mut answer = get(&c, &url(n, name, "increment")).await;
        while answer.0 != 200 {
            assert!(
                killed_at.elapsed() < Duration::from_secs(60),
                "{name} not served a minute after the kill: {answer:?}"
            );
            answer = get(&c, &url(n, name, "increment")).await;
        }
        // Every acknowledged increment is there, and the one that failed over counts once.
        assert_eq!(answer.1, "7", "{name}");
        failover.push(killed_at.elapsed());
    }
    let slowest = failover.iter().max().unwrap();
    eprintln!("failover after SIGKILL: every object served again within {slowest:?}");
}

/// SIGTERM drains a node and hands its shards over at once (its lease is revoked, not left
/// to expire); nothing acknowledged is lost.
#[tokio::test]
async fn sigterm_hands_a_nodes_objects_over() {
    let etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let mut leaving = node(&etcd.client_url, dir.path(), "leaving");
    let staying = node(&etcd.client_url, dir.path(), "staying");
    settled(&etcd.client_url, 2).await;
    let c = client();
    let names: Vec<String> = (0..16).map(|i| format!("h-{i}")).collect();
    served_everywhere(&c, &[&leaving, &staying], &names, |n, name| {
        format!("http://{}/counter/{name}/get", n.addr)
    })
    .await;
    for name in &names {
        let r = get(
            &c,
            &format!("http://{}/counter/{name}/increment", leaving.addr),
        )
        .await;
        assert_eq!(r, (200, "1".into()));
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &leaving.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = leaving.exited().await;
    assert!(status.success(), "{status:?}\n{}", leaving.log());
    let stopped_at = std::time::Instant::now();
    for name in &names {
        let r = get(
            &c,
            &format!("http://{}/counter/{name}/increment", staying.addr),
        )
        .await;
        assert_eq!(r, (200, "2".into()), "{name}");
    }
    // Handed over, not expired: well within the lease's TTL.
    assert!(
        stopped_at.elapsed() < TTL,
        "took {:?} after the stop",
        stopped_at.elapsed()
    );
}

/// An object's SQL database moves with it: rows written through a node that then leaves
/// (SIGTERM) are read, and added to, through the node that takes its objects.
#[tokio::test]
async fn an_object_s_sql_database_moves_with_it() {
    let etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let mut leaving = node_serving(&etcd.client_url, dir.path(), "leaving", &["todos"], &[]);
    let staying = node_serving(&etcd.client_url, dir.path(), "staying", &["todos"], &[]);
    settled(&etcd.client_url, 2).await;
    let c = client();
    let names: Vec<String> = (0..8).map(|i| format!("t-{i}")).collect();
    served_everywhere(&c, &[&leaving, &staying], &names, |n, name| {
        format!("http://{}/todos/{name}/count", n.addr)
    })
    .await;
    for name in &names {
        let url = format!("http://{}/todos/{name}/todos", leaving.addr);
        for title in ["a", "b"] {
            assert_eq!(post(&c, &url, title).await.0, 201);
        }
    }
    let term = std::process::Command::new("kill")
        .args(["-TERM", &leaving.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(leaving.exited().await.success(), "{}", leaving.log());
    for name in &names {
        let url = format!("http://{}/todos/{name}", staying.addr);
        assert_eq!(
            get(&c, &format!("{url}/count")).await,
            (200, "2".into()),
            "{name}"
        );
        let (status, body) = post(&c, &format!("{url}/todos"), "c").await;
        assert_eq!(status, 201, "{body}");
        assert!(body.contains("\"id\":3"), "{name}: {body}");
    }
}

/// A node paused (SIGSTOP) past its lease: the others take its objects; when it resumes
/// it serves nothing from before (it forwards to the new owners), so no write is lost or
/// answered from stale memory.
#[tokio::test]
async fn a_node_paused_past_its_lease_serves_nothing_stale_when_it_resumes() {
    let etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let zombie = node(&etcd.client_url, dir.path(), "zombie");
    let other = node(&etcd.client_url, dir.path(), "other");
    settled(&etcd.client_url, 2).await;
    let c = client();
    let names: Vec<String> = (0..16).map(|i| format!("z-{i}")).collect();
    let at = |n: &common::process::HostProcess, name: &str, a: &str| {
        format!("http://{}/counter/{name}/{a}", n.addr)
    };
    served_everywhere(&c, &[&zombie, &other], &names, |n, name| at(n, name, "get")).await;
    // Every object is live in the zombie's memory (some owned there, some forwarded).
    for name in &names {
        assert_eq!(
            get(&c, &at(&zombie, name, "increment")).await,
            (200, "1".into())
        );
    }
    let pid = zombie.child.id().to_string();
    let signal = |s: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([s, &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    signal("-STOP");
    // The other node takes over once the zombie's lease expired, and writes. Until then
    // it forwards to the paused node, which accepts connections but answers nothing: give
    // up on such a request (the paused node refuses it when it resumes: 421).
    let attempt = |name: String| {
        let (c, url) = (c.clone(), at(&other, &name, "increment"));
        async move {
            match c.get(url).timeout(Duration::from_millis(500)).send().await {
                Ok(r) if r.status() == 200 => Some(r.text().await.unwrap()),
                _ => None,
            }
        }
    };
    for name in &names {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut r = attempt(name.clone()).await;
        while r.is_none() {
            assert!(std::time::Instant::now() < deadline, "{name} never served");
            r = attempt(name.clone()).await;
        }
        assert_eq!(r.as_deref(), Some("2"), "{name}");
    }
    signal("-CONT");
    // Through the zombie: never its stale 1, always the database's 2, then 3.
    for name in &names {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut r = get(&c, &at(&zombie, name, "get")).await;
        while r.0 != 200 {
            assert!(std::time::Instant::now() < deadline, "{name}: {r:?}");
            r = get(&c, &at(&zombie, name, "get")).await;
        }
        assert_eq!(r, (200, "2".into()), "{name} read through the resumed node");
        assert_eq!(
            get(&c, &at(&zombie, name, "increment")).await,
            (200, "3".into())
        );
    }
}

/// `make cluster`'s script: three nodes on their own etcd and PostgreSQL, serving through
/// every node; Ctrl-C stops everything it started and removes its temp dir.
#[tokio::test]
async fn the_cluster_script_starts_three_nodes_and_ctrl_c_stops_everything() {
    use std::io::{BufRead, BufReader};
    let ports: Vec<String> = (0..3).map(|_| free_port().to_string()).collect();
    let mut script = std::process::Command::new(repo_root().join("scripts/cluster.sh"))
        .arg(guest("counter"))
        .env("DOHOST_BIN", env!("CARGO_BIN_EXE_dohost"))
        .env("PORTS", ports.join(" "))
        .current_dir(repo_root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // However the test ends, the script is told to stop everything it started.
    struct Stop(u32);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &self.0.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    let _stop = Stop(script.id());
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let ready = loop {
        let line = lines
            .next()
            .expect("the script ended before it was ready")
            .unwrap();
        if line.starts_with("cluster ready") {
            break line;
        }
    };
    let dir = ready
        .split("logs in ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .to_string();
    assert!(std::path::Path::new(&dir).exists());
    let c = client();
    for (i, port) in ports.iter().enumerate() {
        let url = format!("http://127.0.0.1:{port}/counter/script/increment");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut r = get(&c, &url).await;
        while r.0 != 200 {
            assert!(std::time::Instant::now() < deadline, "{url}: {r:?}");
            r = get(&c, &url).await;
        }
        assert_eq!(r.1, (i + 1).to_string());
    }
    let int = std::process::Command::new("kill")
        .args(["-INT", &script.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "cluster stopped"), "{rest:?}");
    script.wait().unwrap();
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} was left behind"
    );
    for port in &ports {
        assert!(
            std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
            "a node still listens on {port}"
        );
    }
}

/// Opens a WebSocket at `url`, expecting 101.
async fn open_ws(url: String) -> Ws {
    let (ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    assert_eq!(resp.status(), 101);
    ws
}

/// Alice and Bob, each on a socket of one room, hear each other.
async fn alice_and_bob_meet(a: &mut Ws, b: &mut Ws) {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    a.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_text(b).await, "alice: hi");
    b.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(a).await, "bob: hello");
}

/// A chat room reached through two nodes: the WebSocket on the node that does not serve
/// the room is forwarded to the one that does, and messages cross both ways.
#[tokio::test]
async fn websockets_to_one_room_through_two_nodes_meet() {
    let etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let n1 = node_serving(&etcd.client_url, dir.path(), "w1", &["chat-room"], &[]);
    let n2 = node_serving(&etcd.client_url, dir.path(), "w2", &["chat-room"], &[]);
    settled(&etcd.client_url, 2).await;
    let c = client();
    wait_until("both nodes serve the room", || async {
        get(&c, &format!("http://{}/chat-room/r/stats", n1.addr))
            .await
            .0
            == 200
            && get(&c, &format!("http://{}/chat-room/r/stats", n2.addr))
                .await
                .0
                == 200
    })
    .await;
    let at = |addr: &str, name: &str| format!("ws://{addr}/chat-room/r/ws?name={name}");
    let mut a = open_ws(at(&n1.addr, "alice")).await;
    let mut b = open_ws(at(&n2.addr, "bob")).await;
    alice_and_bob_meet(&mut a, &mut b).await;
    let stats = get(&c, &format!("http://{}/chat-room/r/stats", n1.addr)).await;
    let stats: serde_json::Value = serde_json::from_str(&stats.1).unwrap();
    assert_eq!(stats["sockets"], 2, "{stats}");
}

/// The worker runs on the node a request reaches and calls objects wherever they are
/// served: calls to objects another node serves go there (and a failed call comes back as
/// the same error a local one gives).
#[tokio::test]
async fn calls_reach_objects_served_by_other_nodes() {
    let etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let worker = guest("worker");
    let worker = ["--worker", worker.to_str().unwrap()];
    let nodes = [
        node_serving(&etcd.client_url, dir.path(), "c1", &["counter"], &worker),
        node_serving(&etcd.client_url, dir.path(), "c2", &["counter"], &worker),
    ];
    settled(&etcd.client_url, 2).await;
    let c = client();
    let names: Vec<String> = (0..16).map(|i| format!("k-{i}")).collect();
    let url = |n: &common::process::HostProcess, name: &str, a: &str| {
        format!("http://{}/by-name/{name}/{a}", n.addr)
    };
    let both: Vec<_> = nodes.iter().collect();
    served_everywhere(&c, &both, &names, |n, name| url(n, name, "get")).await;
    increment_through_every_node(&c, &both, &names, 4, |n, name| url(n, name, "increment")).await;
    // An ID of another binding is refused the same way from either node.
    for n in &nodes {
        let (s, body) = get(
            &c,
            &format!("http://{}/by-id/{}/get", n.addr, "0".repeat(64)),
        )
        .await;
        assert_eq!(s, 400, "{body}");
    }
}

/// etcd goes away: every node stops serving once its lease deadline passes (503, nothing
/// answered by a node that might have lost its shards); when etcd is back (which extends
/// the leases it kept) the nodes serve everything again, with every acknowledged write.
#[tokio::test]
async fn while_etcd_is_down_nothing_is_served_and_everything_comes_back() {
    let mut etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let a = node(&etcd.client_url, dir.path(), "a");
    let b = node(&etcd.client_url, dir.path(), "b");
    settled(&etcd.client_url, 2).await;
    let c = client();
    let names: Vec<String> = (0..8).map(|i| format!("e-{i}")).collect();
    let at = |n: &common::process::HostProcess, name: &str, x: &str| {
        format!("http://{}/counter/{name}/{x}", n.addr)
    };
    for name in &names {
        assert_eq!(get(&c, &at(&a, name, "increment")).await, (200, "1".into()));
    }
    etcd.kill();
    wait_until("both nodes stopped serving", || async {
        for n in [&a, &b] {
            if get(&c, &at(n, &names[0], "get")).await.0 != 503 {
                return false;
            }
        }
        true
    })
    .await;
    etcd.restart().await;
    for name in &names {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut r = get(&c, &at(&b, name, "increment")).await;
        while r.0 != 200 {
            assert!(std::time::Instant::now() < deadline, "{name}: {r:?}");
            r = get(&c, &at(&b, name, "increment")).await;
        }
        assert_eq!(r.1, "2", "{name}");
    }
}

/// A node joins: the rooms whose shards move to it have their sockets closed with 1012
/// ("service restart") by the node that served them, after their work there finished; the
/// clients reconnect (here through the old node, which relays to the new owner) and the
/// room works. Rooms that stay keep their sockets.
#[tokio::test]
async fn sockets_of_rooms_that_move_close_with_1012_and_reconnect() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let first = node_serving(&etcd.client_url, dir.path(), "m1", &["chat-room"], &[]);
    settled(&etcd.client_url, 1).await;
    let c = client();
    let rooms: Vec<String> = (0..16).map(|i| format!("room-{i}")).collect();
    let open = |addr: &str, room: &str| open_ws(format!("ws://{addr}/chat-room/{room}/ws?name=u"));
    let mut sockets = Vec::new();
    for room in &rooms {
        sockets.push(open(&first.addr, room).await);
    }
    let second = node_serving(&etcd.client_url, dir.path(), "m2", &["chat-room"], &[]);
    settled(&etcd.client_url, 2).await;
    let served_by = |room: String| {
        let (c, addr) = (c.clone(), first.addr.clone());
        async move {
            loop {
                let r = c
                    .get(format!("http://{addr}/chat-room/{room}/stats"))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    let tag = r.headers()["x-dohost-served-by"].to_str().unwrap();
                    return tag.split('@').next().unwrap().to_string();
                }
            }
        }
    };
    let mut moved = 0;
    for (room, ws) in rooms.iter().zip(&mut sockets) {
        if served_by(room.clone()).await == "m2" {
            moved += 1;
            let closed = tokio::time::timeout(Duration::from_secs(30), ws.next()).await;
            match closed.unwrap_or_else(|_| panic!("{room} moved, its socket stayed open")) {
                Some(Ok(Message::Close(Some(frame)))) => {
                    assert_eq!(u16::from(frame.code), 1012, "{room}: {frame:?}")
                }
                other => panic!("{room} moved, but its socket got {other:?}"),
            }
            let mut again = open(&first.addr, room).await;
            again.send(Message::text("who")).await.unwrap();
            assert!(next_text(&mut again).await.contains("user:u"), "{room}");
        } else {
            ws.send(Message::text("who")).await.unwrap();
            assert!(next_text(ws).await.contains("user:u"), "{room} stayed");
        }
    }
    assert!(moved > 0, "no room moved to the new node");
    drop(second);
}

/// Cycles of calls through two nodes are refused like cycles on one: a (on one node)
/// calls b (on the other), which calls a back; and a → b → c → a with c beside a. Each
/// fails fast with the deadlock error instead of hanging.
#[tokio::test]
async fn call_cycles_across_nodes_are_refused() {
    let etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let n1 = node_serving(&etcd.client_url, dir.path(), "d1", &["test-object"], &[]);
    let n2 = node_serving(&etcd.client_url, dir.path(), "d2", &["test-object"], &[]);
    settled(&etcd.client_url, 2).await;
    let c = client();
    // Which node serves each of some names, by the header the owner adds.
    let mut on: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for i in 0..16 {
        let name = format!("o-{i}");
        let url = format!("http://{}/test-object/{name}/instance", n1.addr);
        let r = loop {
            let r = c.get(&url).send().await.unwrap();
            if r.status() == 200 {
                break r;
            }
        };
        let tag = r.headers()["x-dohost-served-by"].to_str().unwrap();
        let node = tag.split('@').next().unwrap().to_string();
        on.entry(node).or_default().push(name);
    }
    let (d1, d2) = (&on["d1"], &on["d2"]);
    assert!(d1.len() >= 2 && !d2.is_empty(), "{on:?}");
    let (a, b, c3) = (&d1[0], &d2[0], &d1[1]);
    // The path of a call to `name` at `path` (itself percent-encoded into the query).
    let nest = |name: &str, path: &str| {
        let path = path
            .replace('%', "%25")
            .replace('&', "%26")
            .replace('=', "%3D")
            .replace('?', "%3F");
        format!("/call?binding=test-object&name={name}&path={path}")
    };
    let cycles = [
        // a → b → a
        format!(
            "http://{}/test-object/{a}{}",
            n1.addr,
            nest(b, &nest(a, "/instance"))
        ),
        // a → b → c → a, entered through the node that does not serve a.
        format!(
            "http://{}/test-object/{a}{}",
            n2.addr,
            nest(b, &nest(c3, &nest(a, "/instance")))
        ),
    ];
    for url in &cycles {
        let (s, body) = tokio::time::timeout(Duration::from_secs(10), get(&c, url))
            .await
            .unwrap_or_else(|_| panic!("the cycle {url} hung"));
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("deadlock"), "{url}: {body}");
    }
    // A chain that is not a cycle passes: a → b → c.
    let fine = format!(
        "http://{}/test-object/{a}{}",
        n1.addr,
        nest(b, &nest(c3, "/instance"))
    );
    let (s, body) = get(&c, &fine).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.starts_with("200 200 "), "{body}");
}

/// With a worker, every request runs on the node it reaches, and the worker passes a
/// WebSocket upgrade on to the room through a call: to a room another node serves, the
/// call goes there and the client is relayed to the socket the room accepted. Two
/// clients, one through each node, meet in the room.
#[tokio::test]
async fn a_worker_passes_websockets_to_rooms_on_other_nodes() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let worker = guest("worker");
    let worker = ["--worker", worker.to_str().unwrap()];
    let n1 = node_serving(&etcd.client_url, dir.path(), "v1", &["chat-room"], &worker);
    let n2 = node_serving(&etcd.client_url, dir.path(), "v2", &["chat-room"], &worker);
    settled(&etcd.client_url, 2).await;
    let at = |addr: &str, name: &str| format!("ws://{addr}/objects/chat-room/r/ws?name={name}");
    let mut a = open_ws(at(&n1.addr, "alice")).await;
    let mut b = open_ws(at(&n2.addr, "bob")).await;
    alice_and_bob_meet(&mut a, &mut b).await;
    b.send(Message::text("who")).await.unwrap();
    assert!(next_text(&mut b).await.contains("user:bob"));
}

/// A request forwarded to the node that serves its object, which took it and then died
/// before answering (a lock acquire waiting there), is answered 502 — it may or may not
/// have run — not 503, which would say nothing ran.
#[tokio::test]
async fn a_forwarded_request_whose_node_dies_mid_way_is_502() {
    let etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let n1 = node_serving(&etcd.client_url, dir.path(), "f1", &["lock"], &[]);
    let n2 = node_serving(&etcd.client_url, dir.path(), "f2", &["lock"], &[]);
    settled(&etcd.client_url, 2).await;
    let c = client();
    // A lock served by f2, reached through f1.
    let mut name = None;
    for i in 0..32 {
        let r = c
            .get(format!("http://{}/lock/l-{i}/status", n1.addr))
            .send()
            .await
            .unwrap();
        if r.headers()["x-dohost-served-by"]
            .to_str()
            .unwrap()
            .starts_with("f2@")
        {
            name = Some(format!("l-{i}"));
            break;
        }
    }
    let name = name.expect("some lock served by f2");
    let acquire = format!("http://{}/lock/{name}/acquire", n1.addr);
    assert_eq!(post(&c, &acquire, "").await.1, "Locked");
    let waiter = {
        let (c, acquire) = (c.clone(), acquire.clone());
        tokio::spawn(async move { post(&c, &acquire, "").await })
    };
    let status = format!("http://{}/lock/{name}/status", n1.addr);
    wait_until("the second acquire waits on f2", || async {
        get(&c, &status).await.1.contains("\"waiting\":1")
    })
    .await;
    n2.kill();
    let (code, body) = waiter.await.unwrap();
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("may or may not have run"), "{body}");
}

/// An event stream of an object another node serves reaches its client whichever node the
/// client asked: forwarded by the public edge, or (with a worker) relayed from a call to
/// that node, the body streamed as the object writes it. Subscribers through both nodes
/// get each event, in order, whichever node took the publish.
#[tokio::test]
async fn event_streams_reach_subscribers_through_any_node() {
    use common::sse::{Subscriber, event};
    let etcd = Etcd::start().await;
    let dir = Backend::Postgres.data_dir();
    let worker = guest("worker");
    let worker = [
        "--worker",
        worker.to_str().unwrap(),
        "--sse-keepalive-ms",
        "0",
    ];
    let plain = ["--sse-keepalive-ms", "0"];
    let n1 = node_serving(
        &etcd.client_url,
        dir.path(),
        "e1",
        &["notifications"],
        &plain,
    );
    let n2 = node_serving(
        &etcd.client_url,
        dir.path(),
        "e2",
        &["notifications"],
        &plain,
    );
    settled(&etcd.client_url, 2).await;
    // Default routes: the node that does not serve the room forwards the request.
    let room = |addr: &str, path: &str| format!("http://{addr}/notifications/direct/{path}");
    let mut a = Subscriber::open(&room(&n1.addr, "subscribe"), None).await;
    let mut b = Subscriber::open(&room(&n2.addr, "subscribe"), None).await;
    let c = client();
    for (i, addr) in [&n1.addr, &n2.addr, &n1.addr].into_iter().enumerate() {
        let (s, body) = post(&c, &room(addr, "publish?topic=t"), format!("m{i}")).await;
        assert_eq!(s, 200, "{body}");
        let e = event(i as u64 + 1, &format!("m{i}"));
        assert_eq!(a.next_event().await, e);
        assert_eq!(b.next_event().await, e);
    }
    drop((n1, n2));
    // Through a worker on each node: the worker's call goes to the node that serves the
    // room, and its streamed answer is relayed back.
    let w1 = node_serving(
        &etcd.client_url,
        dir.path(),
        "w1",
        &["notifications"],
        &worker,
    );
    let w2 = node_serving(
        &etcd.client_url,
        dir.path(),
        "w2",
        &["notifications"],
        &worker,
    );
    settled(&etcd.client_url, 2).await;
    let room = |addr: &str, path: &str| format!("http://{addr}/objects/notifications/w/{path}");
    let mut a = Subscriber::open(&room(&w1.addr, "subscribe"), None).await;
    let mut b = Subscriber::open(&room(&w2.addr, "subscribe"), None).await;
    for (i, addr) in [&w2.addr, &w1.addr].into_iter().enumerate() {
        let (s, body) = post(&c, &room(addr, "publish?topic=t"), format!("w{i}")).await;
        assert_eq!(s, 200, "{body}");
        let e = event(i as u64 + 1, &format!("w{i}"));
        assert_eq!(a.next_event().await, e);
        assert_eq!(b.next_event().await, e);
    }
}

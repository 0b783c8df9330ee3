//! A history of appends made through a cluster's nodes while faults strike, and the checker
//! that holds it against what the database kept: nothing acknowledged lost, nothing refused
//! applied, one writer at a time per object.
//!
//! Each operation appends a unique op ID to one object's list (`/append` of the test
//! object, which answers the item's index) or arms its alarm to append it. Outcomes:
//! 200 is acknowledged; 503 and 421, or no connection, say nothing was applied; anything
//! else (500, 502, a timeout, a cut connection) leaves it unknown.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a client waits for an answer before it calls the outcome unknown.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 200: the item's index, and the `x-dohost-served-by` header (`node@epoch`).
    Ok {
        index: u64,
        served_by: Option<String>,
    },
    NotApplied,
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Op {
    pub object: String,
    pub op: String,
    /// Appended by the object's alarm rather than by the request.
    pub by_alarm: bool,
    pub node: String,
    pub start: Instant,
    pub end: Instant,
    pub outcome: Outcome,
    /// The status or error, for the checker's messages.
    pub detail: String,
}

/// Clients appending through the nodes until stopped.
pub struct Workload {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<Vec<Op>>>,
}

/// The addresses clients send to; a test changes them as nodes come and go.
pub type Nodes = Arc<Mutex<Vec<String>>>;

impl Workload {
    /// `workers` clients, each appending to `objects` in turn through the nodes in turn
    /// (every tenth operation arms the alarm instead).
    pub fn start(binding: &str, nodes: Nodes, objects: &[String], workers: usize) -> Workload {
        Self::start_with_prefix("", binding, nodes, objects, workers)
    }

    /// `start`, with op IDs that begin with `prefix` (histories joined from several
    /// workloads keep them unique).
    pub fn start_with_prefix(
        prefix: &str,
        binding: &str,
        nodes: Nodes,
        objects: &[String],
        workers: usize,
    ) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let c = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let workers = (0..workers)
            .map(|w| {
                let (stop, nodes, c) = (stop.clone(), nodes.clone(), c.clone());
                let acked = acked.clone();
                let (binding, objects) = (binding.to_string(), objects.to_vec());
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    let mut ops = Vec::new();
                    let mut seq = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        seq += 1;
                        let object = objects[(w * 7 + seq) % objects.len()].clone();
                        let node = {
                            let nodes = nodes.lock().unwrap();
                            nodes[(w + seq) % nodes.len()].clone()
                        };
                        let by_alarm = seq.is_multiple_of(10);
                        let op = format!("{prefix}w{w}-{seq}");
                        let action = if by_alarm {
                            "append-by-alarm"
                        } else {
                            "append"
                        };
                        let url = format!("http://{node}/{binding}/{object}/{action}?op={op}");
                        let done = append(&c, object, op, by_alarm, node, &url).await;
                        if matches!(done.outcome, Outcome::Ok { .. }) {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        ops.push(done);
                    }
                    ops
                })
            })
            .collect();
        Workload {
            stop,
            acked,
            workers,
        }
    }

    /// Waits until `more` operations beyond those acknowledged so far are acknowledged:
    /// the cluster is serving (within two minutes, or the test fails).
    pub async fn progress(&self, more: usize) {
        let target = self.acked.load(Ordering::SeqCst) + more;
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.acked.load(Ordering::SeqCst) < target {
            assert!(
                Instant::now() < deadline,
                "the cluster acknowledged {} of {more} appends in two minutes",
                more + self.acked.load(Ordering::SeqCst) - target
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the clients once their requests in flight ended; their history.
    pub async fn stop(self) -> Vec<Op> {
        self.stop.store(true, Ordering::SeqCst);
        let mut ops = Vec::new();
        for w in self.workers {
            ops.extend(w.await.unwrap());
        }
        ops
    }
}

async fn append(
    c: &reqwest::Client,
    object: String,
    op: String,
    by_alarm: bool,
    node: String,
    url: &str,
) -> Op {
    let start = Instant::now();
    let (outcome, detail) = match c.post(url).timeout(TIMEOUT).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let served_by = r
                .headers()
                .get("x-dohost-served-by")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = r.text().await.unwrap_or_default();
            let detail = format!("{status} {}", body.trim_end());
            match status {
                200 if by_alarm => (
                    Outcome::Ok {
                        index: 0,
                        served_by,
                    },
                    detail,
                ),
                200 => match body.trim().parse() {
                    Ok(index) => (Outcome::Ok { index, served_by }, detail),
                    Err(_) => panic!("{op} on {object}: 200 with {body:?}"),
                },
                421 | 503 => (Outcome::NotApplied, detail),
                _ => (Outcome::Unknown, detail),
            }
        }
        // Never connected: nothing was sent.
        Err(e) if e.is_connect() => (Outcome::NotApplied, e.to_string()),
        Err(e) => (Outcome::Unknown, e.to_string()),
    };
    Op {
        object,
        op,
        by_alarm,
        node,
        start,
        end: Instant::now(),
        outcome,
        detail,
    }
}

/// Each object's list as the database holds it: `(len, items in key order)`.
pub type Lists = BTreeMap<String, (u64, Vec<(u64, String)>)>;

/// Reads every object's list straight from PostgreSQL (database `db`), not through a node.
pub fn lists_in_database(db: &str) -> Lists {
    let rows = super::postgres::server().psql(
        db,
        "SELECT o.name, convert_from(kv.key, 'UTF8'), convert_from(kv.value, 'UTF8') \
         FROM dohost.kv kv JOIN dohost.objects o USING (ns, id) \
         WHERE convert_from(kv.key, 'UTF8') = 'len' \
            OR convert_from(kv.key, 'UTF8') LIKE 'item/%' \
         ORDER BY 1, 2",
    );
    let mut lists = Lists::new();
    for line in rows.lines().filter(|l| !l.is_empty()) {
        let mut f = line.split('|');
        let (name, key, value) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let list = lists.entry(name.to_string()).or_default();
        if key == "len" {
            list.0 = value.parse().unwrap();
        } else {
            let index = key.trim_start_matches("item/").parse().unwrap();
            let op: String = serde_json::from_str(value).unwrap();
            list.1.push((index, op));
        }
    }
    lists
}

/// Every op ID the alarms of an acknowledged `append-by-alarm` will append, to wait for.
pub fn armed(ops: &[Op]) -> HashSet<String> {
    ops.iter()
        .filter(|o| o.by_alarm && matches!(o.outcome, Outcome::Ok { .. }))
        .map(|o| o.op.clone())
        .collect()
}

/// The lists `read` returns once every acknowledged alarm append is in them (or after a
/// minute, when the checker names those still missing).
pub async fn lists_once_alarms_ran<F, Fut>(ops: &[Op], mut read: F) -> Lists
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Lists>,
{
    let armed = armed(ops);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lists = read().await;
        let appended: HashSet<&str> = lists
            .values()
            .flat_map(|(_, items)| items.iter().map(|(_, op)| op.as_str()))
            .collect();
        if armed.iter().all(|op| appended.contains(op.as_str())) || Instant::now() > deadline {
            return lists;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The checker: every violation it finds, as sentences (empty when the history is good).
pub fn check(ops: &[Op], lists: &Lists) -> Vec<String> {
    let mut problems = Vec::new();
    let mut found: HashMap<&str, (&str, u64)> = HashMap::new();
    for (object, (len, items)) in lists {
        let indices: Vec<u64> = items.iter().map(|(i, _)| *i).collect();
        if indices != (0..*len).collect::<Vec<_>>() {
            problems.push(format!(
                "{object}: len {len} but items at {indices:?} (a gap or an extra)"
            ));
        }
        for (index, op) in items {
            if let Some((other, at)) = found.insert(op, (object, *index)) {
                problems.push(format!(
                    "{op} applied twice: {other}[{at}] and {object}[{index}]"
                ));
            }
        }
    }
    let by_id: HashMap<&str, &Op> = ops.iter().map(|o| (o.op.as_str(), o)).collect();
    for (op, (object, index)) in &found {
        match by_id.get(op) {
            None => problems.push(format!("{object}[{index}] holds {op}, which nobody sent")),
            Some(o) if o.outcome == Outcome::NotApplied => problems.push(format!(
                "{op} was refused as not applied ({}, via {}) but is {object}[{index}]",
                o.detail, o.node
            )),
            Some(o) if &o.object != object => {
                problems.push(format!("{op} was sent to {} but is in {object}", o.object))
            }
            Some(_) => {}
        }
    }
    for o in ops {
        let Outcome::Ok { index, .. } = o.outcome else {
            continue;
        };
        match found.get(o.op.as_str()) {
            None => problems.push(format!(
                "{} acknowledged ({}, via {}) but lost",
                o.op, o.detail, o.node
            )),
            Some((_, at)) if !o.by_alarm && *at != index => problems.push(format!(
                "{} acknowledged at index {index} but stored at {at}",
                o.op
            )),
            Some(_) => {}
        }
    }
    problems.extend(real_time_order(ops));
    problems.extend(epochs(ops));
    problems
}

/// Two acknowledged appends to one object, the first answered before the second was sent:
/// the first's index is the lower (two live writers would hand out indices out of order,
/// or the same one twice).
fn real_time_order(ops: &[Op]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut per_object: BTreeMap<&str, Vec<(&Op, u64)>> = BTreeMap::new();
    for o in ops.iter().filter(|o| !o.by_alarm) {
        if let Outcome::Ok { index, .. } = o.outcome {
            per_object.entry(&o.object).or_default().push((o, index));
        }
    }
    for (object, mut acked) in per_object {
        acked.sort_by_key(|(o, _)| o.end);
        // The highest index among those answered before each op started.
        let mut highest: Option<(u64, &str)> = None;
        let mut j = 0;
        let mut by_start = acked.clone();
        by_start.sort_by_key(|(o, _)| o.start);
        for (o, index) in by_start {
            while j < acked.len() && acked[j].0.end < o.start {
                let (done, i) = acked[j];
                if highest.is_none_or(|(h, _)| i > h) {
                    highest = Some((i, &done.op));
                }
                j += 1;
            }
            if let Some((h, before)) = highest
                && index <= h
            {
                problems.push(format!(
                    "{object}: {} got index {index} though {before}, answered before it was \
                     sent, got {h}",
                    o.op
                ));
            }
        }
    }
    problems
}

/// Per object, in index order, the epochs that served acknowledged appends never go back;
/// and each epoch belongs to one node.
fn epochs(ops: &[Op]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut node_of: HashMap<u64, &str> = HashMap::new();
    let mut per_object: BTreeMap<&str, Vec<(u64, u64, &str)>> = BTreeMap::new();
    for o in ops.iter().filter(|o| !o.by_alarm) {
        let Outcome::Ok {
            index,
            served_by: Some(tag),
        } = &o.outcome
        else {
            continue;
        };
        let (node, epoch) = tag.rsplit_once('@').expect("node@epoch");
        let epoch: u64 = epoch.parse().unwrap();
        if let Some(other) = node_of.insert(epoch, node)
            && other != node
        {
            problems.push(format!("epoch {epoch} served by {other} and by {node}"));
        }
        per_object
            .entry(&o.object)
            .or_default()
            .push((*index, epoch, &o.op));
    }
    for (object, mut served) in per_object {
        served.sort();
        for w in served.windows(2) {
            if w[1].1 < w[0].1 {
                problems.push(format!(
                    "{object}: {} (index {}) committed under epoch {} after {} (index {}) \
                     under epoch {}",
                    w[1].2, w[1].0, w[1].1, w[0].2, w[0].0, w[0].1
                ));
            }
        }
    }
    problems
}

/// How many operations ended each way, for the test's log.
pub fn summary(ops: &[Op]) -> String {
    let count = |f: fn(&Outcome) -> bool| ops.iter().filter(|o| f(&o.outcome)).count();
    format!(
        "{} operations: {} acknowledged, {} not applied, {} unknown",
        ops.len(),
        count(|o| matches!(o, Outcome::Ok { .. })),
        count(|o| *o == Outcome::NotApplied),
        count(|o| *o == Outcome::Unknown),
    )
}

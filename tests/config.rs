//! The wrangler.json-shaped config: JSON with comments, bindings, vars, flags over the file,
//! and every migration kind and refusal, each refusal proving nothing changed.

mod common;
use common::*;
use serde_json::{Value, json};
use std::path::Path;

/// Writes a config file into `dir` and loads it, with the data directory in `dir/data`.
fn write_config(dir: &Path, name: &str, body: Value) -> std::path::PathBuf {
    let path = dir.join(name);
    let text = format!(
        "// written by the test\n{}",
        serde_json::to_string_pretty(&body).unwrap()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn components(classes: &[(&str, &str)]) -> Value {
    let mut map = serde_json::Map::new();
    for (class, guest_name) in classes {
        map.insert(class.to_string(), json!(guest(guest_name)));
    }
    Value::Object(map)
}

/// Loads a config file; on the Postgres runs, with the database behind its directory.
fn load(path: &Path) -> anyhow::Result<dohost::Config> {
    let mut config = dohost::config::file::load(path)?;
    if let Some(url) = database_of(path) {
        config.storage = Some(url);
    }
    Ok(config)
}

/// Starts a host from a config file; Err is the start-up error.
async fn start(path: &Path) -> anyhow::Result<TestHost> {
    let config = load(path)?;
    // Start synchronously first to surface refusals as errors, then serve.
    let rt = dohost::Runtime::start(&config)?;
    rt.shutdown().await;
    drop(rt);
    Ok(TestHost::start_config(config).await)
}

fn cfg(name: &str, bindings: Value, migrations: Value, comps: Value) -> Value {
    json!({
        "name": name,
        "durable_objects": { "bindings": bindings },
        "migrations": migrations,
        "vars": { "GREETING": "hello", "LEVEL": 3 },
        "dohost": { "components": comps, "data_dir": "data" },
    })
}

#[tokio::test]
async fn a_commented_config_serves_its_bindings_with_vars() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrangler.jsonc");
    let text = format!(
        r#"{{
        // JSON with comments, as wrangler.jsonc allows
        "name": "my-worker",
        "durable_objects": {{
            "bindings": [
                {{ "name": "COUNTER", "class_name": "Counter", "script_name": "my-worker" }},
                {{ "name": "PROBE", "class_name": "Probe" }}, /* trailing commas too */
            ],
        }},
        "migrations": [ {{ "tag": "v1", "new_classes": ["Counter", "Probe"] }} ],
        "vars": {{ "GREETING": "hello" }},
        "dohost": {{
            "components": {{ "Counter": {:?}, "Probe": {:?} }},
            "limits": {{ "max_key_bytes": 100 }},
        }},
    }}"#,
        guest("counter"),
        guest("test-object")
    );
    std::fs::write(&path, text).unwrap();
    let config = load(&path).unwrap();
    assert_eq!(config.limits.max_key_bytes, 100);
    assert_eq!(config.data_dir, dir.path().join("data"));
    let host = start(&path).await.unwrap();
    let c = client();
    assert_eq!(
        get(&c, &host.url("/COUNTER/global/increment")).await,
        (200, "1".into())
    );
    let (_, body) = get(&c, &host.url("/PROBE/p/env")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["class"], "Probe");
    assert_eq!(v["binding"], "PROBE");
    assert_eq!(v["env"], json!([["GREETING", "hello"]]));
    host.stop().await;
}

async fn rename_keeps_ids_data_and_alarms(backend: Backend) {
    let dir = backend.data_dir();
    let comps = components(&[
        ("Probe", "test-object"),
        ("Tester", "test-object"),
        ("Timer", "alarm"),
        ("Alarmy", "alarm"),
    ]);
    let v1 = json!([{ "tag": "v1", "new_classes": ["Probe", "Alarmy"] }]);
    let path = write_config(
        dir.path(),
        "a.json",
        cfg(
            "w",
            json!([{"name": "P", "class_name": "Probe"}, {"name": "A", "class_name": "Alarmy"}]),
            v1,
            comps.clone(),
        ),
    );
    let host = start(&path).await.unwrap();
    let c = client();
    let (_, env) = get(&c, &host.url("/P/x/env")).await;
    post(&c, &host.url("/P/x/put?key=k"), "kept").await;
    post(&c, &host.url("/A/x/set?delay_ms=3600000"), "").await;
    let (_, before) = get(&c, &host.url("/A/x/status")).await;
    host.stop().await;

    let v2 = json!([
        { "tag": "v1", "new_classes": ["Probe", "Alarmy"] },
        { "tag": "v2", "renamed_classes": [{"from": "Probe", "to": "Tester"}, {"from": "Alarmy", "to": "Timer"}] },
    ]);
    let path = write_config(
        dir.path(),
        "a.json",
        cfg(
            "w",
            json!([{"name": "T", "class_name": "Tester"}, {"name": "TM", "class_name": "Timer"}]),
            v2,
            comps,
        ),
    );
    let host = start(&path).await.unwrap();
    let (_, env2) = get(&c, &host.url("/T/x/env")).await;
    let (e1, e2): (Value, Value) = (
        serde_json::from_str(&env).unwrap(),
        serde_json::from_str(&env2).unwrap(),
    );
    assert_eq!(e1["id"], e2["id"], "the ID survives the rename");
    assert_eq!(e2["class"], "Tester");
    assert_eq!(get(&c, &host.url("/T/x/get?key=k")).await.1, "kept");
    let (_, after) = get(&c, &host.url("/TM/x/status")).await;
    let (b, a): (Value, Value) = (
        serde_json::from_str(&before).unwrap(),
        serde_json::from_str(&after).unwrap(),
    );
    assert_eq!(a["pending"], b["pending"], "the alarm survives the rename");
    host.stop().await;
}

async fn delete_removes_a_class_and_its_data(backend: Backend) {
    let dir = backend.data_dir();
    let comps = components(&[("Keep", "test-object"), ("Gone", "test-object")]);
    let v1 = json!([{ "tag": "v1", "new_classes": ["Keep", "Gone"] }]);
    let both = json!([{"name": "K", "class_name": "Keep"}, {"name": "G", "class_name": "Gone"}]);
    let path = write_config(
        dir.path(),
        "c.json",
        cfg("w", both.clone(), v1, comps.clone()),
    );
    let host = start(&path).await.unwrap();
    let c = client();
    post(&c, &host.url("/K/x/put?key=k"), "keep me").await;
    post(&c, &host.url("/G/x/put?key=k"), "delete me").await;
    host.stop().await;

    // Deleting a class that is still bound is refused, and changes nothing.
    let v2 = json!([
        { "tag": "v1", "new_classes": ["Keep", "Gone"] },
        { "tag": "v2", "deleted_classes": ["Gone"] },
    ]);
    let path = write_config(
        dir.path(),
        "c.json",
        cfg("w", both.clone(), v2.clone(), comps.clone()),
    );
    let err = start(&path).await.err().expect("refused").to_string();
    assert!(
        err.contains("Gone") && err.contains("still uses it"),
        "{err}"
    );

    let keep_only = json!([{"name": "K", "class_name": "Keep"}]);
    let path = write_config(dir.path(), "c.json", cfg("w", keep_only, v2, comps.clone()));
    let host = start(&path).await.unwrap();
    assert_eq!(get(&c, &host.url("/K/x/get?key=k")).await.1, "keep me");
    host.stop().await;

    // A class of the same name created again starts empty.
    let v3 = json!([
        { "tag": "v1", "new_classes": ["Keep", "Gone"] },
        { "tag": "v2", "deleted_classes": ["Gone"] },
        { "tag": "v3", "new_classes": ["Gone"] },
    ]);
    let path = write_config(dir.path(), "c.json", cfg("w", both, v3, comps));
    let host = start(&path).await.unwrap();
    assert_eq!(get(&c, &host.url("/G/x/get?key=k")).await.0, 404);
    assert_eq!(get(&c, &host.url("/K/x/get?key=k")).await.1, "keep me");
    host.stop().await;
}

async fn transfer_moves_a_class_in_from_another_script(backend: Backend) {
    let dir = backend.data_dir();
    let comps = components(&[("Legacy", "test-object"), ("Modern", "test-object")]);
    let path = write_config(
        dir.path(),
        "old.json",
        cfg(
            "old-worker",
            json!([{"name": "L", "class_name": "Legacy"}]),
            json!([{"tag": "v1", "new_classes": ["Legacy"]}]),
            comps.clone(),
        ),
    );
    let host = start(&path).await.unwrap();
    let c = client();
    post(&c, &host.url("/L/x/put?key=k"), "moved").await;
    host.stop().await;

    let path = write_config(
        dir.path(),
        "new.json",
        cfg(
            "new-worker",
            json!([{"name": "M", "class_name": "Modern"}]),
            json!([{"tag": "t1", "transferred_classes": [{"from": "Legacy", "from_script": "old-worker", "to": "Modern"}]}]),
            comps,
        ),
    );
    let host = start(&path).await.unwrap();
    assert_eq!(get(&c, &host.url("/M/x/get?key=k")).await.1, "moved");
    host.stop().await;
}

async fn history_edits_and_bad_references_are_refused_and_change_nothing(backend: Backend) {
    let dir = backend.data_dir();
    let comps = components(&[
        ("A", "test-object"),
        ("B", "test-object"),
        ("C", "test-object"),
    ]);
    let binds = json!([{"name": "A", "class_name": "A"}]);
    let good = json!([
        { "tag": "v1", "new_classes": ["A"] },
        { "tag": "v2", "new_classes": ["B"] },
    ]);
    let path = write_config(
        dir.path(),
        "h.json",
        cfg("w", binds.clone(), good.clone(), comps.clone()),
    );
    let host = start(&path).await.unwrap();
    let c = client();
    post(&c, &host.url("/A/x/put?key=k"), "safe").await;
    host.stop().await;

    let refusals: Vec<(Value, Value, &str)> = vec![
        // Dropping an applied tag.
        (
            binds.clone(),
            json!([{ "tag": "v1", "new_classes": ["A"] }]),
            "\"v2\"",
        ),
        // Reordering applied tags.
        (
            binds.clone(),
            json!([{ "tag": "v2", "new_classes": ["B"] }, { "tag": "v1", "new_classes": ["A"] }]),
            "reordered",
        ),
        // Editing an applied tag.
        (
            binds.clone(),
            json!([{ "tag": "v1", "new_classes": ["A", "C"] }, { "tag": "v2", "new_classes": ["B"] }]),
            "changed",
        ),
        // A binding to a class no migration created.
        (
            json!([{"name": "C", "class_name": "C"}]),
            good.clone(),
            "no migration created",
        ),
        // Renaming from a class that does not exist (the new class in the same migration
        // must not be created either).
        (
            binds.clone(),
            json!([
                { "tag": "v1", "new_classes": ["A"] }, { "tag": "v2", "new_classes": ["B"] },
                { "tag": "v3", "new_classes": ["C"], "renamed_classes": [{"from": "Nope", "to": "D"}] },
            ]),
            "\"Nope\"",
        ),
        // A tag twice.
        (
            binds.clone(),
            json!([{ "tag": "v1", "new_classes": ["A"] }, { "tag": "v1" }]),
            "twice",
        ),
    ];
    for (bindings, migrations, expected) in refusals {
        let path = write_config(
            dir.path(),
            "h.json",
            cfg("w", bindings, migrations, comps.clone()),
        );
        let err = format!("{:#}", start(&path).await.err().expect("refused"));
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
    // C was never created by the refused v3.
    let path = write_config(
        dir.path(),
        "h.json",
        cfg(
            "w",
            json!([{"name": "C", "class_name": "C"}]),
            good.clone(),
            comps.clone(),
        ),
    );
    assert!(start(&path).await.is_err());
    // And the original config still works, data intact.
    let path = write_config(dir.path(), "h.json", cfg("w", binds, good, comps));
    let host = start(&path).await.unwrap();
    assert_eq!(get(&c, &host.url("/A/x/get?key=k")).await.1, "safe");
    host.stop().await;
}

/// The seed's wrangler.json verbatim renames OldCounter onto a Counter that v1 created; it is
/// refused with a message naming the tag and the classes (examples/ holds a version that
/// applies).
#[tokio::test]
async fn the_seed_config_verbatim_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let comps = components(&[("Counter", "counter"), ("ChatRoom", "test-object")]);
    let seed = json!({
        "durable_objects": { "bindings": [
            { "name": "COUNTER", "class_name": "Counter", "script_name": "my-worker" },
            { "name": "CHAT_ROOM", "class_name": "ChatRoom" },
        ]},
        "name": "my-worker",
        "migrations": [
            { "tag": "v1", "new_classes": ["Counter"] },
            { "tag": "v2", "new_classes": ["ChatRoom"], "renamed_classes": [{"from": "OldCounter", "to": "Counter"}] },
            { "tag": "v3", "deleted_classes": ["OldCounter"] },
        ],
        "dohost": { "components": comps },
    });
    let path = write_config(dir.path(), "seed.json", seed);
    let err = format!("{:#}", start(&path).await.err().expect("refused"));
    assert!(
        err.contains("\"v2\"") && err.contains("OldCounter"),
        "{err}"
    );
}

#[test]
fn the_example_config_applies_and_migrate_dry_run_prints_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let example = repo_root().join("examples/wrangler.jsonc");
    // The example names the guests under target/guests; make sure they exist.
    guest("counter");
    let data = dir.path().join("data");
    // `dohost migrate [extra] --config EXAMPLE --data DATA`, answering (success, stdout, stderr).
    let migrate = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
            .arg("migrate")
            .args(extra)
            .arg("--config")
            .arg(&example)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stdout, stderr)
    };
    let (ok, text, err) = migrate(&["--dry-run"]);
    assert!(ok, "{text}{err}");
    assert!(
        text.contains("dry run") && text.contains("v1: create class"),
        "{text}"
    );
    assert!(
        text.contains("v2: rename class OldCounter to Counter"),
        "{text}"
    );
    // Nothing was applied: a second dry run plans the same.
    assert_eq!(migrate(&["--dry-run"]).1, text);
    // Applying for real, then nothing is left.
    assert!(migrate(&[]).0);
    let (_, text, _) = migrate(&["--dry-run"]);
    assert!(
        text.contains("nothing to apply") && text.contains("already applied: v1, v2, v3, v4"),
        "{text}"
    );
}

/// A flag given on the command line wins over the file's value; an unset flag keeps it.
#[tokio::test]
async fn flags_override_the_file() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "f.json",
        json!({
            "durable_objects": { "bindings": [{ "name": "S", "class_name": "S" }] },
            "migrations": [{ "tag": "v1", "new_classes": ["S"] }],
            "dohost": {
                "components": components(&[("S", "storage-demo")]),
                "limits": { "max_key_bytes": 100, "max_value_bytes": 8 },
            },
        }),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--max-key-bytes",
            "5",
            "--config",
        ])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("address=") {
                let addr = line[i + 8..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the host logged its address");
    let c = client();
    // The flag's 5-byte key limit, not the file's 100.
    let (s, body) = post(&c, &format!("http://{addr}/S/x/put?key=sixsix"), "1").await;
    assert_eq!(s, 400);
    assert!(body.contains("KeyTooLarge"), "{body}");
    // The file's value limit still applies: "1234567890" is 10 bytes, over 8.
    let (s, body) = post(&c, &format!("http://{addr}/S/x/put?key=k"), "1234567890").await;
    assert_eq!(s, 400);
    assert!(body.contains("ValueTooLarge"), "{body}");
    assert_eq!(
        post(&c, &format!("http://{addr}/S/x/put?key=k"), "12")
            .await
            .0,
        200
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The README's config example parses, every documented limit included (the file refuses
/// unknown keys), and sets what it says.
#[test]
fn the_readme_config_example_parses_with_every_limit() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let block = readme
        .split("```jsonc")
        .nth(1)
        .expect("a jsonc block in the README")
        .split("```")
        .next()
        .unwrap();
    let config = dohost::config::file::parse(block, &repo_root()).expect("the README's config");
    let l = &config.limits;
    assert_eq!(l.slot_wait, std::time::Duration::from_millis(5000));
    assert_eq!(l.max_worker_instances, 64);
    assert_eq!(l.shutdown_timeout, std::time::Duration::from_secs(30));
    assert_eq!(l.ws_send_queue, 1024);
    assert_eq!(l.header_timeout, std::time::Duration::from_millis(20000));
    assert_eq!(l.max_connections, 20000);
}

/// Every limit flag's help shows its default from `Limits::default()` (the one definition),
/// so help cannot drift from the code.
#[test]
fn run_help_shows_every_limit_with_its_default() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for (id, value) in dohost::Limits::default().flag_defaults() {
        let flag = format!("--{}", id.replace('_', "-"));
        let at = text
            .find(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("run --help does not show {flag}"));
        let next = text[at + 2..]
            .find(" --")
            .map_or(text.len(), |n| at + 2 + n);
        assert!(
            text[at..next].contains(&format!("[default: {value}]")),
            "{flag}: {}",
            &text[at..next]
        );
    }
}

on_both_backends!(
    rename_keeps_ids_data_and_alarms,
    delete_removes_a_class_and_its_data,
    transfer_moves_a_class_in_from_another_script,
    history_edits_and_bad_references_are_refused_and_change_nothing,
);

/// `dohost run --var NAME=VALUE` sets the objects' variables without a config file; the
/// last of a name wins.
#[tokio::test]
async fn run_var_flags_reach_the_objects_env() {
    let dir = tempfile::tempdir().unwrap();
    let host = common::process::HostProcess::spawn(
        &dir.path().join("data"),
        &["test-object"],
        &[
            "--var",
            "GREETING=hi",
            "--var",
            "MODE=a=b",
            "--var",
            "GREETING=hello",
        ],
    );
    let (status, body) = get(
        &client(),
        &format!("http://{}/test-object/v/env", host.addr),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let env: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut vars: Vec<(String, String)> = serde_json::from_value(env["env"].clone()).unwrap();
    vars.sort();
    assert_eq!(
        vars,
        vec![
            ("GREETING".into(), "hello".into()),
            ("MODE".into(), "a=b".into())
        ]
    );
}

/// A pool of instance slots the kernel's `vm.max_map_count` could not even create is
/// refused before anything starts, naming the setting and the flag, rather than failing
/// with a bare "Cannot allocate memory" (each empty slot holds about two mappings).
#[test]
fn more_slots_than_the_map_count_allows_are_refused_naming_it() {
    let cap: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(["run", "--admin", "off", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .args([
            "--max-live-objects",
            &cap.min(u64::from(u32::MAX)).to_string(),
        ])
        .arg(guest("counter"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vm.max_map_count"), "{err}");
    assert!(err.contains("--max-live-objects"), "{err}");
}

/// Slots the map count can create but not hold all live start with a warning saying so:
/// a sixth of the cap in slots needs a third of it empty (about two maps each) and twice
/// the cap when every instance is live (about ten each).
#[test]
fn slots_the_map_count_cannot_hold_live_start_with_a_warning() {
    let cap: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Beside the live slots: the default deferring (1000) and worker (64) slots.
    let live = (cap / 6).saturating_sub(1064).min(u64::from(u32::MAX));
    let dir = tempfile::tempdir().unwrap();
    let host = common::process::HostProcess::spawn(
        &dir.path().join("data"),
        &["counter"],
        &["--max-live-objects", &live.to_string()],
    );
    let log = host.log();
    host.kill();
    assert!(log.contains("vm.max_map_count"), "{log}");
    assert!(log.contains("will fail with"), "{log}");
}

/// Without `--max-live-objects` a host sizes its instance slots from the machine: one per
/// MiB of `--max-memory` (itself three quarters of the machine's or the cgroup's memory by
/// default), so a host on a smaller memory limit derives a smaller instance limit, and the
/// start-up line states it.
#[test]
fn a_host_on_a_smaller_memory_limit_derives_fewer_live_objects() {
    // Written both ways: in bytes, and with a unit.
    let live_objects = |max_memory: &str| -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let host = common::process::HostProcess::spawn(
            &dir.path().join("data"),
            &["counter"],
            &["--max-memory", max_memory],
        );
        let log = host.log();
        host.kill();
        let serving = log
            .lines()
            .find(|l| l.contains("dohost is serving"))
            .unwrap_or_else(|| panic!("no start-up line: {log}"));
        assert!(
            log.contains("max_live_objects sized from max_memory"),
            "{log}"
        );
        serving
            .split_whitespace()
            .find_map(|f| f.strip_prefix("max_live_objects="))
            .unwrap_or_else(|| panic!("{serving}"))
            .parse()
            .unwrap()
    };
    assert_eq!(live_objects(&(64u64 << 20).to_string()), 64);
    assert_eq!(live_objects("512MiB"), 512);
}

/// When the kernel's memory mappings, not the memory, cap the sized `max_live_objects`, the
/// log says so with the `sysctl` that would lift it. A budget of a TiB asks for about a
/// million live objects; 2 MiB memories keep the address space from capping it first
/// (about 480,000 slots), below any map count this test meets (about 110,000 at 1.1 M).
#[test]
fn live_objects_capped_by_the_map_count_say_what_to_raise() {
    let dir = tempfile::tempdir().unwrap();
    let host = common::process::HostProcess::spawn(
        &dir.path().join("data"),
        &["counter"],
        &[
            "--max-memory",
            &(1u64 << 40).to_string(),
            "--memory-bytes",
            &(2u64 << 20).to_string(),
        ],
    );
    let log = host.log();
    host.kill();
    assert!(
        log.contains("capped by the kernel's memory mappings"),
        "{log}"
    );
    assert!(log.contains("sysctl -w vm.max_map_count="), "{log}");
}

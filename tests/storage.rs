//! The storage API end to end through the storage-demo guest: the seed's sequence, `list`
//! against a BTreeMap model, reads through writes still in flight, and every limit at its
//! edge.

mod common;
use common::*;
use dohost::Limits;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;

async fn seed_storage_sequence(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["storage-demo"], dir.path()).await;
    let c = client();
    let (s, body) = post(&c, &host.url("/storage-demo/seed/seed"), "").await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["get"], "value");
    assert_eq!(v["get_many"], json!({"key1": "value1", "key2": "value2"}));
    assert_eq!(v["delete"], true);
    assert_eq!(v["delete_many"], 2);
    assert_eq!(v["list"], json!([["key3", "value3"]]));
    assert_eq!(v["list_filtered"], json!([]));
    host.stop().await;
}

async fn each_http_operation(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["storage-demo"], dir.path()).await;
    let c = client();
    let u = |p: &str| host.url(&format!("/storage-demo/ops{p}"));
    assert_eq!(post(&c, &u("/put?key=a"), "1").await.0, 200);
    assert_eq!(
        post(&c, &u("/put-many"), r#"{"b":2,"c":{"x":true}}"#)
            .await
            .0,
        200
    );
    assert_eq!(get(&c, &u("/get?key=c")).await.1, r#"{"x":true}"#);
    assert_eq!(get(&c, &u("/get?key=zz")).await.1, "null");
    assert_eq!(
        post(&c, &u("/get-many"), r#"["a","zz","b"]"#).await.1,
        r#"{"a":1,"b":2}"#
    );
    assert_eq!(
        post(&c, &u("/delete?key=a"), "").await.1,
        r#"{"existed":true}"#
    );
    assert_eq!(
        post(&c, &u("/delete?key=a"), "").await.1,
        r#"{"existed":false}"#
    );
    assert_eq!(
        post(&c, &u("/delete-many"), r#"["b","zz","b"]"#).await.1,
        r#"{"deleted":1}"#
    );
    assert_eq!(get(&c, &u("/list")).await.1, r#"[["c",{"x":true}]]"#);
    assert_eq!(post(&c, &u("/delete-all"), "").await.0, 200);
    assert_eq!(get(&c, &u("/list")).await.1, "[]");
    host.stop().await;
}

/// One random list query, as JSON for the batch op and as a filter over the model.
fn random_list(rng: &mut StdRng, alphabet: &[&str]) -> Value {
    let mut op = json!({"op": "list"});
    if rng.random_bool(0.4) {
        op["prefix"] = json!(alphabet[rng.random_range(0..alphabet.len())]);
    }
    if rng.random_bool(0.3) {
        op["start"] = json!(random_key(rng, alphabet));
    }
    if rng.random_bool(0.3) {
        op["end"] = json!(random_key(rng, alphabet));
    }
    op["reverse"] = json!(rng.random_bool(0.5));
    if rng.random_bool(0.5) {
        op["limit"] = json!(rng.random_range(0..8));
    }
    op
}

fn model_list(model: &BTreeMap<String, Value>, op: &Value) -> Value {
    let prefix = op["prefix"].as_str().unwrap_or("");
    let mut out: Vec<(String, Value)> = model
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .filter(|(k, _)| op["start"].as_str().is_none_or(|s| k.as_str() >= s))
        .filter(|(k, _)| op["end"].as_str().is_none_or(|e| k.as_str() < e))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if op["reverse"].as_bool() == Some(true) {
        out.reverse();
    }
    if let Some(l) = op["limit"].as_u64() {
        out.truncate(l as usize);
    }
    json!(out)
}

fn random_key(rng: &mut StdRng, alphabet: &[&str]) -> String {
    let n = rng.random_range(1..4);
    (0..n)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
        .collect()
}

/// Random puts, deletes, delete-alls and nested transactions, in batches that each run in
/// one event (so lists merge the event's and transactions' writes with what is on disk),
/// every list checked against a BTreeMap that applies the same operations.
async fn list_matches_a_btreemap_model(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["storage-demo"], dir.path()).await;
    let c = client();
    let url = host.url("/storage-demo/model/batch");
    let alphabet = ["a", "b", "ab", "é", "z", "user:", "~"];
    let mut rng = StdRng::seed_from_u64(0x5eed);
    // The committed model, and a stack of per-transaction models inside a batch.
    let mut model: BTreeMap<String, Value> = BTreeMap::new();
    let mut ops_done = 0;
    while ops_done < 3000 {
        let mut stack = vec![model.clone()];
        let mut ops = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..rng.random_range(1..40) {
            let depth = stack.len();
            let top = stack.last_mut().unwrap();
            let roll = rng.random_range(0..100);
            let (op, result) = if roll < 40 {
                let k = random_key(&mut rng, &alphabet);
                let v = json!(rng.random_range(0..1000));
                top.insert(k.clone(), v.clone());
                (json!({"op": "put", "key": k, "value": v}), Value::Null)
            } else if roll < 55 {
                let k = random_key(&mut rng, &alphabet);
                let existed = top.remove(&k).is_some();
                (json!({"op": "delete", "key": k}), json!(existed))
            } else if roll < 60 {
                let k = random_key(&mut rng, &alphabet);
                let v = top.get(&k).cloned().unwrap_or(Value::Null);
                (json!({"op": "get", "key": k}), v)
            } else if roll < 85 {
                let op = random_list(&mut rng, &alphabet);
                let r = model_list(top, &op);
                (op, r)
            } else if roll < 87 {
                top.clear();
                (json!({"op": "delete-all"}), Value::Null)
            } else if roll < 93 && depth < 4 {
                let copy = top.clone();
                stack.push(copy);
                (json!({"op": "begin"}), Value::Null)
            } else if depth > 1 {
                let inner = stack.pop().unwrap();
                if rng.random_bool(0.5) {
                    *stack.last_mut().unwrap() = inner;
                    (json!({"op": "commit"}), Value::Null)
                } else {
                    (json!({"op": "rollback"}), Value::Null)
                }
            } else {
                continue;
            };
            ops.push(op);
            expected.push(result);
        }
        // Transactions still open at the end of the event are rolled back.
        model = stack.swap_remove(0);
        ops_done += ops.len();
        let (status, body) = post(&c, &url, serde_json::to_string(&ops).unwrap()).await;
        assert_eq!(status, 200, "{body}");
        let got: Vec<Value> = serde_json::from_str(&body).unwrap();
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "op {} of batch: {}", i, ops[i]);
        }
    }
    // And what reached the disk is the model.
    host.stop().await;
    let host = TestHost::start(&["storage-demo"], dir.path()).await;
    let (_, body) = get(&c, &host.url("/storage-demo/model/list")).await;
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all, model_list(&model, &json!({})));
    host.stop().await;
}

/// Reads must see writes whose commit is still in flight: 500 concurrent read-modify-write
/// events through storage (not memory) lose no update.
async fn concurrent_read_modify_write_through_storage(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["storage-demo"], dir.path()).await;
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let (c, url) = (c.clone(), host.url("/storage-demo/rmw/incr?key=n"));
        tasks.push(tokio::spawn(async move { post(&c, &url, "").await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().0, 200);
    }
    assert_eq!(
        get(&c, &host.url("/storage-demo/rmw/get?key=n")).await.1,
        "500"
    );
    host.stop().await;
}

async fn limits_give_clear_errors_and_store_nothing(backend: Backend) {
    let dir = backend.data_dir();
    let limits = Limits {
        max_key_bytes: 16,
        max_value_bytes: 100,
        max_keys_per_call: 3,
        max_object_bytes: 400,
        max_body_bytes: 1000,
        ..Limits::default()
    };
    let host = TestHost::start_with(&["storage-demo", "test-object"], dir.path(), limits).await;
    let c = client();
    let u = |p: &str| host.url(&format!("/storage-demo/lim{p}"));

    // Key: 16 bytes is fine, 17 is refused.
    let k16 = "k".repeat(16);
    assert_eq!(post(&c, &u(&format!("/put?key={k16}")), "1").await.0, 200);
    let k17 = "k".repeat(17);
    let (s, body) = post(&c, &u(&format!("/put?key={k17}")), "1").await;
    assert_eq!(s, 400);
    assert!(
        body.contains("KeyTooLarge") && body.contains("max_key_bytes"),
        "{body}"
    );

    // Value: the JSON encoding of a 98-character string is 100 bytes; 99 is refused.
    let v100 = format!("\"{}\"", "v".repeat(98));
    assert_eq!(post(&c, &u("/put?key=v"), v100).await.0, 200);
    let v101 = format!("\"{}\"", "v".repeat(99));
    let (s, body) = post(&c, &u("/put?key=w"), v101).await;
    assert_eq!(s, 400);
    assert!(
        body.contains("ValueTooLarge") && body.contains("max_value_bytes"),
        "{body}"
    );
    assert_eq!(get(&c, &u("/get?key=w")).await.1, "null");

    // Keys per call: the host takes 3 and refuses 4 in one call, and a refused call stores
    // none of them.
    let raw = |n: usize| host.url(&format!("/test-object/lim/raw-put-many?n={n}"));
    assert_eq!(post(&c, &raw(3), "").await.0, 200);
    let (s, body) = post(&c, &raw(4), "").await;
    assert_eq!(s, 400);
    assert!(
        body.contains("TooManyKeys") && body.contains("max_keys_per_call"),
        "{body}"
    );
    // The SDK splits a larger call into calls the host takes, in one transaction: a batch
    // that fails stores none of the others.
    let big = "x".repeat(200);
    let (s, _) = post(
        &c,
        &u("/put-many"),
        format!(r#"{{"a":1,"b":2,"c":3,"d":"{big}"}}"#),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(get(&c, &u("/get?key=a")).await.1, "null");
    assert_eq!(
        post(&c, &u("/put-many"), r#"{"a":1,"b":2,"c":3,"d":4}"#)
            .await
            .0,
        200
    );
    assert_eq!(get(&c, &u("/get?key=d")).await.1, "4");
    let (s, body) = post(&c, &u("/delete-many"), r#"["a","b","c","d","e"]"#).await;
    assert_eq!((s, body.as_str()), (200, r#"{"deleted":4}"#));
    // One bad value refuses the whole put-many.
    let big = "x".repeat(200);
    let (s, _) = post(&c, &u("/put-many"), format!(r#"{{"a":1,"b":"{big}"}}"#)).await;
    assert_eq!(s, 400);
    assert_eq!(get(&c, &u("/get?key=a")).await.1, "null");

    // Quota: 400 bytes per object. Stored so far: 16+1 and 1+100 = 118 bytes; each q entry
    // is 2+97 = 99 bytes, so two fit (316) and a third (415) does not.
    let v = format!("\"{}\"", "q".repeat(95));
    for k in ["q1", "q2"] {
        assert_eq!(
            post(&c, &u(&format!("/put?key={k}")), v.clone()).await.0,
            200
        );
    }
    let (s, body) = post(&c, &u("/put?key=q3"), v.clone()).await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body.contains("StorageFull") && body.contains("max_object_bytes"),
        "{body}"
    );
    // Overwriting in place still fits; deleting makes room.
    assert_eq!(post(&c, &u("/put?key=q1"), v.clone()).await.0, 200);
    assert_eq!(post(&c, &u("/delete?key=q2"), "").await.0, 200);
    assert_eq!(post(&c, &u("/put?key=q3"), v.clone()).await.0, 200);
    // Another object has its own quota.
    let other = host.url("/storage-demo/other/put?key=q1");
    assert_eq!(post(&c, &other, v.clone()).await.0, 200);

    // Body: 1000 bytes is fine (the object then rejects the JSON), 1001 is 413.
    let (s, _) = post(&c, &u("/put?key=b"), "1".repeat(1000)).await;
    assert_ne!(s, 413);
    let (s, body) = post(&c, &u("/put?key=b"), "1".repeat(1001)).await;
    assert_eq!(s, 413);
    assert!(body.contains("max_body_bytes"), "{body}");

    // Everything accepted is still there.
    assert_eq!(get(&c, &u(&format!("/get?key={k16}"))).await.1, "1");
    assert_eq!(get(&c, &u("/get?key=q3")).await.0, 200);
    host.stop().await;
}

on_both_backends!(
    seed_storage_sequence,
    each_http_operation,
    list_matches_a_btreemap_model,
    concurrent_read_modify_write_through_storage,
    limits_give_clear_errors_and_store_nothing,
);

/// A `list` the guest could not hold (over its instance's memory limit) is refused with a
/// clear error once that much was read, not after the host gathered the whole range; a
/// list with a limit reads the same entries in pages.
#[tokio::test]
async fn a_list_over_the_memory_limit_is_refused_and_pages_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        memory_per_instance: 8 * 1024 * 1024,
        ..Limits::default()
    };
    let host = TestHost::start_with(&["storage-demo"], dir.path(), limits).await;
    let c = client();
    let value = format!("\"{}\"", "v".repeat(100_000));
    for i in 0..100 {
        let url = host.url(&format!("/storage-demo/big/put?key=k{i:03}"));
        assert_eq!(post(&c, &url, value.clone()).await.0, 200);
    }
    let (status, body) = get(&c, &host.url("/storage-demo/big/list")).await;
    assert_eq!(status, 400, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("memory_bytes"), "{body}");
    let (status, body) = get(&c, &host.url("/storage-demo/big/list?limit=10&start=k050")).await;
    assert_eq!(status, 200);
    let page: Vec<(String, String)> = serde_json::from_str(&body).unwrap();
    let keys: Vec<&str> = page.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        (50..60).map(|i| format!("k{i:03}")).collect::<Vec<_>>()
    );
    host.stop().await;
}

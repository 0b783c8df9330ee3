//! The seed's Counter end to end: its sequence, concurrency, independence of names and
//! persistence across a restart.

mod common;
use common::*;

async fn seed_sequence_and_not_found(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["counter"], dir.path()).await;
    let c = client();
    assert_eq!(
        get(&c, &host.url("/counter/a/get")).await,
        (200, "0".into())
    );
    assert_eq!(
        get(&c, &host.url("/counter/a/increment")).await,
        (200, "1".into())
    );
    assert_eq!(
        get(&c, &host.url("/counter/a/increment")).await,
        (200, "2".into())
    );
    assert_eq!(
        get(&c, &host.url("/counter/a/decrement")).await,
        (200, "1".into())
    );
    assert_eq!(
        get(&c, &host.url("/counter/a/get")).await,
        (200, "1".into())
    );
    assert_eq!(
        get(&c, &host.url("/counter/a/nope")).await,
        (404, "Not found".into())
    );
    host.stop().await;
}

async fn thousand_concurrent_increments_on_one_object(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["counter"], dir.path()).await;
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (c, url) = (c.clone(), host.url("/counter/busy/increment"));
        tasks.push(tokio::spawn(async move { get(&c, &url).await }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        seen.push(body.parse::<i64>().unwrap());
    }
    // Serialized events: every value from 1 to 1000 was answered exactly once.
    seen.sort();
    assert_eq!(seen, (1..=1000).collect::<Vec<_>>());
    assert_eq!(get(&c, &host.url("/counter/busy/get")).await.1, "1000");
    host.stop().await;
}

#[tokio::test]
async fn names_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["counter"], dir.path()).await;
    let c = client();
    for _ in 0..3 {
        get(&c, &host.url("/counter/left/increment")).await;
    }
    get(&c, &host.url("/counter/right/decrement")).await;
    assert_eq!(get(&c, &host.url("/counter/left/get")).await.1, "3");
    assert_eq!(get(&c, &host.url("/counter/right/get")).await.1, "-1");
    // Names are percent-decoded: these are one object.
    get(&c, &host.url("/counter/a%20b/increment")).await;
    assert_eq!(get(&c, &host.url("/counter/a%20b/get")).await.1, "1");
    host.stop().await;
}

async fn values_survive_a_restart(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["counter", "storage-demo"], dir.path()).await;
    let c = client();
    for i in 0..5 {
        get(&c, &host.url(&format!("/counter/n{i}/increment"))).await;
        get(&c, &host.url(&format!("/counter/n{i}/increment"))).await;
    }
    let (s, _) = post(&c, &host.url("/storage-demo/s/put?key=k"), r#"{"a":[1,2]}"#).await;
    assert_eq!(s, 200);
    host.stop().await;

    let host = TestHost::start(&["counter", "storage-demo"], dir.path()).await;
    for i in 0..5 {
        assert_eq!(
            get(&c, &host.url(&format!("/counter/n{i}/get"))).await.1,
            "2"
        );
    }
    assert_eq!(
        get(&c, &host.url("/storage-demo/s/get?key=k")).await.1,
        r#"{"a":[1,2]}"#
    );
    host.stop().await;
}

#[tokio::test]
async fn a_host_sized_for_twenty_thousand_live_objects_starts_and_serves() {
    // With 4 GiB reserved per memory slot this pool would need more address space than a
    // process has; large pools reserve only the per-instance memory limit.
    let dir = tempfile::tempdir().unwrap();
    let limits = dohost::Limits {
        max_live_objects: Some(20_000),
        ..dohost::Limits::default()
    };
    let host = TestHost::start_with(&["counter"], dir.path(), limits).await;
    let c = client();
    assert_eq!(
        get(&c, &host.url("/counter/big-pool/increment")).await,
        (200, "1".into())
    );
    host.stop().await;
}

async fn clients_each_see_their_own_increments_in_order_while_others_queue(backend: Backend) {
    // Requests to an idle object run on their connection's task; requests that find it busy
    // queue in its mailbox. Mixed, every event still runs alone: each client's answers rise,
    // and all of them together are 1..=N, each once.
    let dir = backend.data_dir();
    let host = TestHost::start_observed(&["counter"], dir.path(), dohost::Limits::default()).await;
    let c = client();
    let (clients, each) = (16, 100);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (c, url) = (c.clone(), host.url("/counter/mixed/increment"));
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..each {
                let (status, body) = get(&c, &url).await;
                assert_eq!(status, 200);
                seen.push(body.parse::<i64>().unwrap());
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seen = t.await.unwrap();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "out of order: {seen:?}"
        );
        all.extend(seen);
    }
    all.sort();
    assert_eq!(all, (1..=clients * each).collect::<Vec<i64>>());
    // Both paths ran: some events inline, the rest (at least the first, which built the
    // actor) through the mailbox.
    let inline = host.runtime().inline_events();
    assert!(
        inline > 0 && inline < (clients * each) as u64,
        "inline events: {inline}"
    );
    host.stop().await;
}

on_both_backends!(
    thousand_concurrent_increments_on_one_object,
    values_survive_a_restart,
    seed_sequence_and_not_found,
    clients_each_see_their_own_increments_in_order_while_others_queue,
);

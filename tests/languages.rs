//! The same counter in Rust, Python (componentize-py) and JavaScript (componentize-js),
//! served by the same dohost: the seed's sequence, 404, concurrency and restart for each,
//! a class switching language without losing its data, and the Python counter's stream.

mod common;
use common::*;

/// Everything the Rust counter's tests check, against one counter component.
async fn counter_suite(guest_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&[guest_name], dir.path()).await;
    let c = client();
    let u = |p: &str| host.url(&format!("/{guest_name}{p}"));
    assert_eq!(
        get(&c, &u("/a/get")).await,
        (200, "0".into()),
        "{guest_name}"
    );
    assert_eq!(get(&c, &u("/a/increment")).await, (200, "1".into()));
    assert_eq!(get(&c, &u("/a/increment")).await, (200, "2".into()));
    assert_eq!(get(&c, &u("/a/decrement")).await, (200, "1".into()));
    assert_eq!(get(&c, &u("/a/get")).await, (200, "1".into()));
    assert_eq!(get(&c, &u("/a/nope")).await, (404, "Not found".into()));
    assert_eq!(get(&c, &u("/b/get")).await.1, "0", "names are independent");

    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (c, url) = (c.clone(), u("/busy/increment"));
        tasks.push(tokio::spawn(async move { get(&c, &url).await }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        let (s, body) = t.await.unwrap();
        assert_eq!(s, 200);
        seen.push(body.parse::<i64>().unwrap());
    }
    seen.sort();
    assert_eq!(seen, (1..=200).collect::<Vec<_>>(), "{guest_name}");
    host.stop().await;

    // Restart on the same data directory (the compiled code now comes from the cache).
    let host = TestHost::start(&[guest_name], dir.path()).await;
    assert_eq!(
        get(&c, &host.url(&format!("/{guest_name}/busy/get")))
            .await
            .1,
        "200"
    );
    assert_eq!(
        get(&c, &host.url(&format!("/{guest_name}/a/get"))).await.1,
        "1"
    );
    host.stop().await;
}

#[tokio::test]
async fn rust_counter() {
    counter_suite("counter").await;
}

#[tokio::test]
async fn python_counter() {
    counter_suite("counter-py").await;
}

#[tokio::test]
async fn javascript_counter() {
    counter_suite("counter-js").await;
}

/// The Python counter's `/watch` streams the value through the WIT `streams` interface
/// straight from componentize-py's bindings: the current value first, then one event per
/// change, read as they arrive.
#[tokio::test]
async fn the_python_counter_streams_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&["counter-py"], dir.path()).await;
    let c = client();
    get(&c, &host.url("/counter-py/w/increment")).await;
    let mut watch = sse::Subscriber::open_raw(&host.url("/counter-py/w/watch")).await;
    assert_eq!(watch.next_event().await.data, "1");
    for expected in ["2", "3"] {
        get(&c, &host.url("/counter-py/w/increment")).await;
        assert_eq!(watch.next_event().await.data, expected);
    }
    get(&c, &host.url("/counter-py/w/decrement")).await;
    assert_eq!(watch.next_event().await.data, "2");
    host.stop().await;
}

/// A class rewritten in another language keeps its data: the Rust SDK's JSON values are what
/// the Python and JavaScript counters read.
#[tokio::test]
async fn a_class_switches_language_without_losing_data() {
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components");
    std::fs::create_dir_all(&components).unwrap();
    let data = dir.path().join("data");
    let c = client();
    let mut expected = 0;
    for guest_name in ["counter", "counter-py", "counter-js", "counter"] {
        // The class is the file's stem: the same class, served by another component.
        let file = components.join("counter.wasm");
        std::fs::copy(guest(guest_name), &file).unwrap();
        let mut config = config(&[], &data, dohost::Limits::default());
        config.classes = vec![dohost::ClassConfig {
            binding: "counter".into(),
            class_name: "counter".into(),
            component: file,
        }];
        let host = TestHost::start_config(config).await;
        assert_eq!(
            get(&c, &host.url("/counter/shared/get")).await.1,
            expected.to_string(),
            "{guest_name} reads what the previous language wrote"
        );
        expected += 1;
        assert_eq!(
            get(&c, &host.url("/counter/shared/increment")).await.1,
            expected.to_string()
        );
        host.stop().await;
    }
}

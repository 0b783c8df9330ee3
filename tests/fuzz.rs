//! Property-based fuzzing (proptest) of what a hostile client or guest controls: object IDs,
//! the JSONC config file, migration histories, the HTTP edge (paths, percent-encoding,
//! names, headers, Host, bodies), WebSocket messages, and the storage imports as a guest
//! calls them. Properties: no panic, no hang, every refusal a clear error, and the host
//! still healthy afterwards.
//!
//! `DOHOST_FUZZ_CASES` is the total number of cases, shared among the targets by weight
//! (`make test`: 3,000; `make fuzz`: 1,000,000); `DOHOST_FUZZ_SEED` picks the seed
//! (`make fuzz` draws one and prints it; the tests use a fixed one, so a failure
//! reproduces).

mod common;
use common::*;
use dohost::Limits;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::time::Duration;

/// This target's share of the cases: `weight` per mille of the total.
fn cases(weight: u32) -> u32 {
    let total: u64 = std::env::var("DOHOST_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    ((total * weight as u64 / 1000) as u32).max(10)
}

fn runner(weight: u32) -> TestRunner {
    let seed: u64 = std::env::var("DOHOST_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: cases(weight),
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// Strings a hostile input is made of: anything, or near-misses of what is expected.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-f]{0,70}",
        "[0-9A-Fa-f%/._ -]{0,80}",
        prop::collection::vec(any::<u8>(), 0..100)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

#[test]
fn ids_parse_or_refuse_and_round_trip() {
    let key = dohost::id::IdKey::new([3; 32]);
    runner(300)
        .run(&hostile_text(), |s| {
            match key.id_from_string(&s) {
                Ok(id) => prop_assert_eq!(&id.to_string(), &s),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
            // A name is any string.
            let _ = key.id_from_name(&s);
            Ok(())
        })
        .unwrap();
}

/// The README's config example, cut, spliced and garbled.
#[test]
fn config_files_parse_or_refuse_clearly() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let example = readme
        .split("```jsonc")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap()
        .to_string();
    let edits = prop::collection::vec(
        (any::<prop::sample::Index>(), 0..8usize, hostile_text()),
        0..4,
    );
    runner(250)
        .run(
            &(edits, hostile_text(), any::<bool>()),
            |(edits, noise, whole)| {
                let mut text = if whole { noise } else { example.clone() };
                for (at, cut, insert) in edits {
                    let mut i = at.index(text.len() + 1);
                    while !text.is_char_boundary(i) {
                        i -= 1;
                    }
                    let mut end = (i + cut).min(text.len());
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.replace_range(i..end, &insert);
                }
                if let Err(e) = dohost::config::file::parse(&text, &repo_root()) {
                    let why = format!("{e:#}");
                    prop_assert!(!why.is_empty());
                }
                Ok(())
            },
        )
        .unwrap();
}

/// Histories of migrations applied one after another to one redb store: each run is
/// applied or refused with a reason, and a refused run changes nothing (the same list
/// is refused again, or applied when it was valid on its own).
#[test]
fn migration_histories_apply_or_refuse_clearly() {
    use dohost::config::migration::{Migration, Rename, Transfer};
    let class = || prop::sample::select(vec!["A", "B", "C", "D", ""]).prop_map(str::to_string);
    let migration = (
        prop::sample::select(vec!["v1", "v2", "v3", "v4", ""]),
        prop::collection::vec(class(), 0..3),
        prop::collection::vec((class(), class()), 0..2),
        prop::collection::vec(class(), 0..2),
        prop::collection::vec((class(), class()), 0..2),
    )
        .prop_map(|(tag, new, renamed, deleted, transferred)| Migration {
            tag: tag.to_string(),
            new_classes: new,
            new_sqlite_classes: Vec::new(),
            renamed_classes: renamed
                .into_iter()
                .map(|(from, to)| Rename { from, to })
                .collect(),
            deleted_classes: deleted,
            transferred_classes: transferred
                .into_iter()
                .map(|(from, to)| Transfer {
                    from,
                    from_script: "other".into(),
                    to,
                })
                .collect(),
        });
    let runs = prop::collection::vec(
        (
            prop::collection::vec(migration, 0..4),
            prop::collection::vec((class(), class()), 0..2),
        ),
        1..4,
    );
    runner(50)
        .run(&runs, |runs| {
            let dir = tempfile::tempdir().unwrap();
            let db = dohost::backend::open::storage(
                None,
                dir.path(),
                dohost::backend::Role::Tool,
                dohost::Limits::default().storage_timeout,
            )
            .unwrap();
            for (migrations, bound) in runs {
                if let Err(e) = db.migrate("default", &migrations, &bound, false) {
                    let why = format!("{e:#}");
                    prop_assert!(!why.is_empty());
                    // Refused: nothing changed, so the same list is refused again.
                    prop_assert!(db.migrate("default", &migrations, &bound, true).is_err());
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Checks that the host still says it is healthy after the cases, then stops it.
fn stop_healthy(rt: &tokio::runtime::Runtime, host: TestHost) {
    let health = rt.block_on(get(&client(), &host.url("/.well-known/dohost/health")));
    assert_eq!(health, (200, "ok\n".into()));
    rt.block_on(host.stop());
}

/// A raw HTTP/1.1 request as a hostile client writes it.
#[derive(Debug, Clone)]
struct RawRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn raw_request() -> impl Strategy<Value = RawRequest> {
    let segment = prop_oneof![
        prop::sample::select(vec![
            "counter",
            "test-object",
            "nope",
            "",
            ".",
            "..",
            "%2e",
            "get",
            "increment",
            "echo",
            "instance",
            "%",
            "%zz",
            "%00",
            "a%20b",
            "%F0%9F%98%80",
            "?",
            "#",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z0-9%._~!$&'()*+,;=:@-]{0,20}",
    ];
    // Mostly a served binding, so that requests get past routing to the object.
    let binding = prop_oneof![
        3 => prop::sample::select(vec!["counter", "test-object"]).prop_map(str::to_string),
        1 => segment.clone(),
    ];
    let path = (
        binding,
        prop::collection::vec(segment, 0..4),
        "[a-z=&%0-9]{0,20}",
    )
        .prop_map(|(binding, rest, query)| {
            let mut path = format!("/{binding}/{}", rest.join("/"));
            if !query.is_empty() {
                path.push('?');
                path.push_str(&query);
            }
            path
        });
    let header = prop_oneof![
        3 => (Just("host".to_string()), hostile_text()),
        1 => (Just("upgrade".to_string()), Just("websocket".to_string())),
        1 => (Just("x-dohost-rpc".to_string()), hostile_text()),
        1 => (Just("content-type".to_string()), hostile_text()),
        1 => ("[a-z-]{1,20}", hostile_text()),
    ]
    // Header values must be visible ASCII on the wire; hyper refuses the rest itself.
    .prop_map(|(n, v)| {
        (
            n,
            v.chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .collect(),
        )
    });
    (
        prop::sample::select(vec![
            "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "BREW",
        ]),
        path,
        prop::collection::vec(header, 0..4),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(method, path, headers, body)| RawRequest {
            method: method.to_string(),
            path,
            headers,
            body,
        })
}

/// Sends `r` on a fresh connection; the status line's code, or None when the server
/// closed without answering (hyper's answer to what is not HTTP at all).
async fn send_raw(addr: std::net::SocketAddr, r: &RawRequest) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{} {} HTTP/1.1\r\n", r.method, r.path);
    if !r.headers.iter().any(|(n, _)| n == "host") {
        head.push_str("host: fuzz\r\n");
    }
    for (n, v) in &r.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        r.body.len()
    ));
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(&r.body).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("no answer within 10 s: a hang")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

#[test]
fn the_http_edge_answers_every_request_without_a_server_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let host = rt.block_on(TestHost::start(&["counter", "test-object"], dir.path()));
    runner(100)
        .run(&raw_request(), |r| {
            // test-object's misbehaviour routes answer 500 by design.
            let misbehaves = ["panic", "loop", "membomb", "stack", "exit", "fail"]
                .iter()
                .any(|p| r.path.contains(p));
            if let Some(status) = rt.block_on(send_raw(host.addr, &r)) {
                prop_assert!((100..600).contains(&status), "{status}");
                prop_assert!(status != 500 || misbehaves, "500 for {r:?}");
            }
            Ok(())
        })
        .unwrap();
    stop_healthy(&rt, host);
}

#[test]
fn websocket_messages_of_any_kind_and_size_are_taken_or_refused() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_ws_message_bytes: 4096,
        ..Limits::default()
    };
    let host = rt.block_on(TestHost::start_with(&["chat-room"], dir.path(), limits));
    let message = prop_oneof![
        any::<String>().prop_map(Message::text),
        prop::collection::vec(any::<u8>(), 0..6000).prop_map(Message::binary),
        (0..6000usize).prop_map(|n| Message::text("x".repeat(n))),
    ];
    runner(20)
        .run(&prop::collection::vec(message, 1..5), |messages| {
            rt.block_on(async {
                let url = format!("ws://{}/chat-room/fuzz/ws?name=f", host.addr);
                let (mut a, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
                let (mut b, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
                for m in messages {
                    let size = m.len();
                    if a.send(m).await.is_err() {
                        break;
                    }
                    let got = tokio::time::timeout(Duration::from_secs(10), async {
                        if size > 4096 {
                            a.next().await
                        } else {
                            b.next().await
                        }
                    })
                    .await
                    .expect("no answer within 10 s: a hang");
                    match got {
                        // Too big: the sender's socket is closed with 1009.
                        Some(Ok(Message::Close(Some(frame)))) if size > 4096 => {
                            assert_eq!(u16::from(frame.code), 1009);
                            break;
                        }
                        Some(Ok(Message::Text(_) | Message::Binary(_))) if size <= 4096 => {}
                        other => panic!("{size} bytes: {other:?}"),
                    }
                }
            });
            Ok(())
        })
        .unwrap();
    rt.block_on(host.stop());
}

/// Storage calls as a hostile guest makes them (storage-demo's `/batch` runs each op as
/// the import call): keys of any size and content, list bounds in any order, transactions
/// opened, closed and left open. Every answer is a result or a clear error, never a 500.
#[test]
fn storage_imports_take_or_refuse_whatever_a_guest_sends() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_key_bytes: 64,
        max_value_bytes: 256,
        ..Limits::default()
    };
    let host = rt.block_on(TestHost::start_with(&["storage-demo"], dir.path(), limits));
    let key = prop_oneof![
        hostile_text(),
        "[a-c]{0,3}",
        (60..70usize).prop_map(|n| "k".repeat(n))
    ];
    let op = prop_oneof![
        (key.clone(), 0..300usize)
            .prop_map(|(k, n)| serde_json::json!({"op": "put", "key": k, "value": "v".repeat(n)})),
        key.clone()
            .prop_map(|k| serde_json::json!({"op": "get", "key": k})),
        key.clone()
            .prop_map(|k| serde_json::json!({"op": "delete", "key": k})),
        (
            prop::option::of(key.clone()),
            prop::option::of(key.clone()),
            prop::option::of(key),
            any::<bool>(),
            prop::option::of(0..5u32)
        )
            .prop_map(|(prefix, start, end, reverse, limit)| serde_json::json!({
                "op": "list", "prefix": prefix, "start": start, "end": end,
                "reverse": reverse, "limit": limit
            })),
        Just(serde_json::json!({"op": "begin"})),
        Just(serde_json::json!({"op": "commit"})),
        Just(serde_json::json!({"op": "rollback"})),
        Just(serde_json::json!({"op": "delete-all"})),
    ];
    let c = client();
    runner(80)
        .run(&prop::collection::vec(op, 1..12), |ops| {
            let url = host.url("/storage-demo/fuzz/batch");
            let (status, body) = rt.block_on(post(&c, &url, serde_json::to_string(&ops).unwrap()));
            prop_assert!(status < 500, "{status} {body} for {ops:?}");
            Ok(())
        })
        .unwrap();
    stop_healthy(&rt, host);
}

//! Transactions end to end: the seed's deposit, a transfer failing half-way rolls back
//! completely, explicit rollback, nested transactions.

mod common;
use common::*;
use serde_json::{Value, json};

async fn seed_deposit_in_a_transaction(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["bank"], dir.path()).await;
    let c = client();
    assert_eq!(
        post(&c, &host.url("/bank/b/deposit"), "").await,
        (200, "100".into())
    );
    assert_eq!(
        post(&c, &host.url("/bank/b/deposit"), "").await,
        (200, "200".into())
    );
    host.stop().await;
}

async fn a_transfer_failing_half_way_rolls_back_completely(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["bank"], dir.path()).await;
    let c = client();
    let u = |p: &str| host.url(&format!("/bank/main{p}"));
    assert_eq!(
        post(&c, &u("/open?account=alice&balance=100"), "").await.0,
        200
    );
    assert_eq!(post(&c, &u("/open?account=bob&balance=5"), "").await.0, 200);

    // Insufficient funds: alice was already debited inside the transaction.
    let (s, body) = post(&c, &u("/transfer?from=alice&to=bob&amount=150"), "").await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("insufficient funds"), "{body}");
    // Unknown recipient: failure after the debit, again.
    let (s, _) = post(&c, &u("/transfer?from=alice&to=carol&amount=10"), "").await;
    assert_eq!(s, 409);
    // Explicit rollback of a transfer that would succeed.
    let (s, body) = post(
        &c,
        &u("/transfer?from=alice&to=bob&amount=10&dry_run=1"),
        "",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["dry_run"],
        true
    );
    assert_eq!(
        get(&c, &u("/accounts")).await.1,
        r#"[["alice",100],["bob",5]]"#
    );

    // A real one moves the money atomically.
    let (s, body) = post(&c, &u("/transfer?from=alice&to=bob&amount=30"), "").await;
    assert_eq!(s, 200, "{body}");
    host.stop().await;
    let host = TestHost::start(&["bank"], dir.path()).await;
    let (_, body) = get(&c, &host.url("/bank/main/accounts")).await;
    assert_eq!(body, r#"[["alice",70],["bob",35]]"#);
    host.stop().await;
}

async fn nested_and_failed_transactions(backend: Backend) {
    let dir = backend.data_dir();
    let host = TestHost::start(&["test-object"], dir.path()).await;
    let c = client();
    let (s, body) = post(&c, &host.url("/test-object/t/nested"), "").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"outer": 1, "inner": null})
    );
    let (_, body) = post(&c, &host.url("/test-object/t/txn-rollback?key=k"), "").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"failed": true, "seen_after": null})
    );
    assert_eq!(get(&c, &host.url("/test-object/t/get?key=k")).await.0, 404);
    host.stop().await;
}

on_both_backends!(
    seed_deposit_in_a_transaction,
    a_transfer_failing_half_way_rolls_back_completely,
    nested_and_failed_transactions,
);

//! The demo bank over HTTP: the backend contract it teaches (idempotency, the barrier), its fault
//! injection, and its journal. Tests of the gateway rely on all of these.

use serde_json::{Value, json};

use crate::support::{Bank, client};

async fn call(bank: &Bank, path: &str, key: &str, saga: &str, body: Value) -> (u16, Value) {
    let response = client()
        .post(bank.url(path))
        .header("idempotency-key", key)
        .header("x-saga-id", saga)
        .header("x-saga-step", "debit")
        .header("x-request-id", format!("req-{saga}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn bank_applies_each_idempotency_key_once() {
    // Proves a repeated Idempotency-Key gets the first answer and moves money once.
    let bank = Bank::start(&["alice=100"]).await;
    let body = json!({"account": "alice", "amount": 30});
    let first = call(&bank, "/debit", "s1.debit.action", "s1", body.clone()).await;
    let again = call(&bank, "/debit", "s1.debit.action", "s1", body).await;
    assert_eq!(first, again);
    assert_eq!(bank.balance("alice").await, 70);
}

#[tokio::test]
async fn bank_barrier_makes_early_compensation_a_no_op_and_refuses_the_late_action() {
    // Proves the barrier: compensation first succeeds without moving money, and the action that
    // arrives after it is refused with 409; the total never changes.
    let bank = Bank::start(&["alice=100"]).await;
    let (status, _) = call(
        &bank,
        "/debit/compensate",
        "s2.debit.compensate",
        "s2",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &bank,
        "/debit",
        "s2.debit.action",
        "s2",
        json!({"account": "alice", "amount": 5}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(bank.total().await, 100);
    assert_eq!(
        bank.barriers().await["s2/debit"]["state"],
        "null_compensated"
    );
}

#[tokio::test]
async fn bank_fail_after_applies_and_the_retry_gets_the_real_answer() {
    // Proves `fail_after` applies the call before failing, so a retry with the same key gets the
    // stored success and the money moved once.
    let bank = Bank::start(&["alice=100"]).await;
    bank.fault(json!({"kind": "fail_after", "count": 1})).await;
    let body = json!({"account": "alice", "amount": 10});
    let (status, _) = call(&bank, "/debit", "s3.debit.action", "s3", body.clone()).await;
    assert_eq!(status, 503);
    let (status, _) = call(&bank, "/debit", "s3.debit.action", "s3", body).await;
    assert_eq!(status, 200);
    assert_eq!(bank.balance("alice").await, 90);
}

#[tokio::test]
async fn bank_keeps_its_books_across_a_kill() {
    // Proves the journal: after SIGKILL and restart, balances and stored answers are intact.
    let dir = tempfile::tempdir().unwrap();
    let mut bank = Bank::start_with(&["alice=100"], Some(dir.path().join("bank.journal"))).await;
    call(
        &bank,
        "/debit",
        "s4.debit.action",
        "s4",
        json!({"account": "alice", "amount": 25}),
    )
    .await;
    bank.set_balance("bob", 7).await;
    bank.restart().await;
    assert_eq!(
        bank.balance("alice").await,
        75,
        "opening balances are not re-applied"
    );
    assert_eq!(bank.balance("bob").await, 7);
    let (status, _) = call(
        &bank,
        "/debit",
        "s4.debit.action",
        "s4",
        json!({"account": "alice", "amount": 25}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        bank.balance("alice").await,
        75,
        "the replayed key is not applied again"
    );
}

#[tokio::test]
async fn bank_answers_the_status_call_with_what_it_holds_for_a_step() {
    // Proves the `status` call reconciliation asks (SPEC §10): applied, then compensated, with
    // the amount; 404 for a step never seen; 400 without the step's headers. It only reads: a
    // status call does not take the action's key, so the action's retry is not refused as in
    // progress.
    let bank = Bank::start(&["alice=100"]).await;
    let status = |saga: &'static str| {
        let url = bank.url("/debit/status");
        async move {
            let response = client()
                .get(url)
                .header("idempotency-key", format!("{saga}.debit.action"))
                .header("x-saga-id", saga)
                .header("x-saga-step", "debit")
                .send()
                .await
                .unwrap();
            let code = response.status().as_u16();
            (code, response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(status("s7").await.0, 404);
    let body = json!({"account": "alice", "amount": 25});
    call(&bank, "/debit", "s7.debit.action", "s7", body).await;
    let (code, held) = status("s7").await;
    assert_eq!(code, 200);
    assert_eq!(
        (&held["applied"], &held["compensated"], &held["amount"]),
        (&json!(true), &json!(false), &json!(25))
    );
    call(
        &bank,
        "/debit/compensate",
        "s7.debit.compensate",
        "s7",
        json!({}),
    )
    .await;
    let (_, undone) = status("s7").await;
    assert_eq!(undone["compensated"], true);
    let bare = client()
        .get(bank.url("/debit/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 400);
    assert_eq!(bank.balance("alice").await, 100, "reading moved nothing");
}

//! Careless clients on a fleet: they hang up on one gateway and retry on another. A saga
//! accepted from a client that left runs to its end, its answer is there on every gateway, and
//! an idempotency key held on one gateway is free on all of them once its request has ended.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::shipped_plugins::{GENEROUS, config};
use crate::support::raw::{request, send_and_hang_up, send_and_keep};
use crate::support::{Bank, Fleet, client, wait_until};

const LEASE_MS: u64 = 2000;
/// Clients that hang up once their saga is running.
const MID_SAGA: usize = 30;
/// Clients that hang up as soon as they have sent, before their request is accepted.
const AT_ONCE: usize = 10;
const ECHOES: usize = 10;
/// Every bank call waits this long, so that clients hang up while their request runs.
const BANK_LATENCY_MS: u64 = 300;

#[tokio::test]
async fn clients_that_hang_up_on_one_gateway_get_their_answer_from_the_other() {
    // Proves, on a fleet with the idempotency plugin on both routes: a saga whose client hung up
    // mid-saga runs to its end, and a retry on the other gateway gets its final answer; a client
    // that hung up before its request was accepted leaves no key held, so its retry runs; one
    // saga per X-Request-ID and exact books either way; and an idempotency key held on one
    // gateway is never a 409 on the other once its request has ended.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=1000"]).await;
    let slow = json!({"kind": "latency", "latency_ms": BANK_LATENCY_MS, "path_prefix": "/"});
    a.fault(slow.clone()).await;
    b.fault(slow).await;
    // The unoptimised test build runs the plugins' host side slowly: under this test's burst, the
    // default 10 ms of a plugin's own execution is not always enough (as in `clients.rs`); and a
    // loaded machine may keep a bank past a second, which this test does not look at.
    let body = config(&a, &b, "", GENEROUS)
        .replace("timeout_ms = 1000", "timeout_ms = 5000")
        .replace(
            "[plugins.idempotency]\n",
            "[plugins.idempotency]\ntimeout_ms = 200\n",
        )
        .replace(
            "[plugins.rate_limit]\n",
            "[plugins.rate_limit]\ntimeout_ms = 200\n",
        );
    assert_eq!(body.matches("timeout_ms = 200").count(), 2);
    assert_eq!(body.matches("timeout_ms = 5000").count(), 2);
    let fleet = Fleet::start(2, LEASE_MS, &body, &[]).await;
    let transfer = r#"{"from":"alice","to":"carol","amount":1}"#;
    let transfer_bytes = |id: &str| {
        let headers = [("x-request-id", id), ("content-type", "application/json")];
        request("POST", "/transfers", &headers, transfer)
    };
    let echo_path = format!("/api/echo?delay_ms={BANK_LATENCY_MS}");

    let running = join_all((0..MID_SAGA).map(|n| {
        let port = fleet.gw(1 + n % 2).port;
        let bytes = transfer_bytes(&format!("mid-{n}"));
        async move { send_and_keep(port, &bytes).await }
    }))
    .await;
    let echoing = join_all((0..ECHOES).map(|n| {
        let port = fleet.gw(1 + n % 2).port;
        let bytes = request(
            "POST",
            &echo_path,
            &[("x-request-id", &format!("echo-{n}"))],
            "{}",
        );
        async move { send_and_keep(port, &bytes).await }
    }))
    .await;
    let kept: Vec<&TcpStream> = running.iter().chain(&echoing).collect();
    wait_running(&a, &kept).await;
    drop(running);
    drop(echoing);
    join_all((0..AT_ONCE).map(|n| {
        let port = fleet.gw(1 + n % 2).port;
        let bytes = transfer_bytes(&format!("gone-{n}"));
        async move { send_and_hang_up(port, &bytes).await }
    }))
    .await;

    wait_until(
        Duration::from_secs(30),
        "the sagas of the clients that left to finish",
        || async {
            fleet.unfinished() == 0
                && fleet
                    .db
                    .sql("SELECT count(*) FROM sagas WHERE request_id LIKE 'mid-%'")
                    == MID_SAGA.to_string()
        },
    )
    .await;
    let ids = (0..MID_SAGA)
        .map(|n| format!("mid-{n}"))
        .chain((0..AT_ONCE).map(|n| format!("gone-{n}")));
    let answers = join_all(ids.enumerate().map(|(n, id)| {
        let other = fleet.gw(2 - n % 2);
        let url = other.url("/transfers");
        async move {
            until_not_held(&id, || {
                client()
                    .post(url.clone())
                    .header("x-request-id", id.clone())
                    .header("content-type", "application/json")
                    .body(transfer)
                    .send()
            })
            .await
        }
    }))
    .await;
    let sagas: HashSet<String> = answers
        .into_iter()
        .map(|(status, answer)| {
            assert_eq!(
                status, 200,
                "the other gateway has the final answer: {answer}"
            );
            assert_eq!(answer["status"], "completed", "{answer}");
            answer["saga_id"].as_str().unwrap().to_string()
        })
        .collect();
    let transfers = MID_SAGA + AT_ONCE;
    assert_eq!(sagas.len(), transfers, "one saga per X-Request-ID");
    assert_eq!(
        fleet.db.sql("SELECT count(*) FROM sagas"),
        transfers.to_string()
    );
    let moved = i64::try_from(transfers).unwrap();
    assert_eq!(
        a.balance("alice").await,
        1000 - moved,
        "each debit applied once"
    );
    assert_eq!(
        b.balance("carol").await,
        1000 + moved,
        "each credit applied once"
    );

    for n in 0..ECHOES {
        let id = format!("echo-{n}");
        let url = fleet.gw(2 - n % 2).url(&echo_path);
        let (status, echoed) = until_not_held(&id, || {
            client()
                .post(url.clone())
                .header("x-request-id", id.clone())
                .body("{}")
                .send()
        })
        .await;
        assert_eq!(status, 200, "{echoed}");
        assert_eq!(echoed["headers"]["x-request-id"][0], id);
    }
}

/// Waits until the bank has seen every debit and echo, so that each kept client is mid-request.
/// If that takes too long, says what the clients were answered meanwhile.
async fn wait_running(bank: &Bank, kept: &[&TcpStream]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (debits, echoes) = (bank.hits("/debit").await, bank.hits("/echo").await);
        if debits >= MID_SAGA as u64 && echoes >= ECHOES as u64 {
            return;
        }
        if Instant::now() > deadline {
            let answered: Vec<String> = kept
                .iter()
                .filter_map(|stream| {
                    let mut buffer = [0u8; 512];
                    let read = stream.try_read(&mut buffer).ok()?;
                    Some(String::from_utf8_lossy(&buffer[..read]).into_owned())
                })
                .collect();
            panic!(
                "the bank saw {debits} debits and {echoes} echoes; answered early: {answered:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends until the answer is not 409 (the key held by the first request); a 409 must not outlive
/// that request's run by much.
async fn until_not_held<F, R>(id: &str, send: F) -> (u16, Value)
where
    F: Fn() -> R,
    R: Future<Output = reqwest::Result<reqwest::Response>>,
{
    let started = Instant::now();
    loop {
        let response = send().await.unwrap();
        let status = response.status().as_u16();
        if status != 409 {
            return (status, response.json().await.unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the key of `{id}` stayed held after its client hung up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

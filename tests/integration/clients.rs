//! Careless clients: they hang up at any moment, retry, and reuse X-Request-IDs. Whatever they
//! do, an accepted saga runs to its end, a retry gets its answer, an idempotency key is never
//! held longer than its request runs, and one client never sees another's answer.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::sagas::{banks, transfer, transfer_routes};
use crate::support::raw::{request, send_and_hang_up, send_and_keep};
use crate::support::{Bank, Gateway, GatewayBuilder, client, wait_until};
use crate::wasm;

const DISCONNECTING_CLIENTS: usize = 3000;
/// Clients connecting at once.
const WAVE: usize = 100;

#[tokio::test]
async fn three_thousand_clients_that_hang_up_leave_no_saga_behind() {
    // Proves a saga accepted from a client that hung up right after sending still runs to its
    // end: none stays pending, every retry gets the final answer, and the admin API shows each.
    let a = Bank::start(&["alice=1000000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let body = r#"{"from":"alice","to":"carol","amount":1}"#;
    let ids: Vec<String> = (0..DISCONNECTING_CLIENTS)
        .map(|n| format!("gone-{n}"))
        .collect();
    for wave in ids.chunks(WAVE) {
        join_all(wave.iter().map(|id| {
            let bytes = request(
                "POST",
                "/transfers",
                &[("x-request-id", id), ("content-type", "application/json")],
                body,
            );
            async move { send_and_hang_up(gateway.port, &bytes).await }
        }))
        .await;
    }
    wait_until(Duration::from_secs(60), "every saga to finish", || {
        gateway.no_saga_unfinished()
    })
    .await;
    let mut accepted = 0;
    let retry = |id: String| {
        let url = gateway.url("/transfers");
        async move {
            let response = client()
                .post(url)
                .header("x-request-id", id)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    for wave in ids.chunks(WAVE) {
        let answers = join_all(wave.iter().cloned().map(retry)).await;
        for (status, answer) in answers {
            assert_eq!(status, 200, "a retry gets the final answer: {answer}");
            assert_eq!(answer["status"], "completed");
            let saga = answer["saga_id"].as_str().unwrap();
            let shown = gateway
                .admin(Method::GET, &format!("/admin/sagas/{saga}"))
                .send()
                .await
                .unwrap();
            assert_eq!(shown.status(), 200, "the admin API sees saga {saga}");
            accepted += 1;
        }
    }
    assert_eq!(accepted, DISCONNECTING_CLIENTS);
    let moved = i64::try_from(DISCONNECTING_CLIENTS).unwrap();
    assert_eq!(
        a.balance("alice").await,
        1_000_000 - moved,
        "each debit applied once"
    );
    assert_eq!(b.balance("carol").await, moved, "each credit applied once");
}

fn idempotent_echo(bank: &Bank, extra_plugin: &str) -> String {
    format!(
        r#"
[upstreams.bank]
url = "{}"
max_attempts = 1
[plugins.idempotency]
module = "{}"
# Responses of megabytes are copied into the plugin and back: more than the default 10 ms of
# its own execution in this unoptimised test build.
timeout_ms = 200
[plugins.trapper]
module = "{}"
[[routes]]
name = "echo"
path_prefix = "/echo/"
upstream = "bank"
plugins = ["idempotency"{extra_plugin}]
"#,
        bank.base(),
        wasm::IDEMPOTENCY,
        wasm::TRAPPER,
    )
}

async fn post(gateway: &Gateway, path: &str, id: &str) -> reqwest::Response {
    client()
        .post(gateway.url(path))
        .header("x-request-id", id)
        .body("{}")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_idempotency_key_is_free_once_its_client_hangs_up() {
    // Proves the key a request held is released when its client disconnects mid-request: the
    // retry is answered (never a 409 lasting the TTL) and the upstream sees the same request id.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(idempotent_echo(&bank, ""))
        .start()
        .await;
    let path = "/echo/slow?delay_ms=1000";
    let bytes = request("POST", path, &[("x-request-id", "hung-up")], "{}");
    let first = send_and_keep(gateway.port, &bytes).await;
    wait_until(
        Duration::from_secs(10),
        "the bank to see the first request",
        || async { bank.hits("/echo/slow").await == 1 },
    )
    .await;
    drop(first);
    let started = Instant::now();
    let retry = loop {
        let retry = post(&gateway, path, "hung-up").await;
        if retry.status() != 409 {
            break retry;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "409 outlived the request"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(retry.status(), 200);
    let echoed: Value = retry.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-request-id"][0], "hung-up");
}

#[tokio::test]
async fn a_later_plugin_failing_never_leaves_the_key_held() {
    // Proves a request whose later plugin fails (503) leaves no hold: its retry runs again and
    // fails the same way, never 409.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(idempotent_echo(&bank, r#", "trapper""#))
        .start()
        .await;
    for _ in 0..3 {
        let answer = post(&gateway, "/echo/trap", "trapped").await;
        assert_eq!(answer.status(), 503);
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(bank.hits("/echo/trap").await, 0, "nothing reached the bank");
}

#[tokio::test]
async fn a_response_too_large_to_keep_replays_without_its_body() {
    // Proves an answer over the key-value value cap is a documented outcome: the client gets it
    // whole, a retry gets its status without the body and a marker, and nothing runs twice.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(idempotent_echo(&bank, ""))
        .start()
        .await;
    let path = "/echo/big?bytes=1500000";
    let first = post(&gateway, path, "big-1").await;
    let status = first.status();
    let body = first.bytes().await.unwrap();
    assert_eq!(
        status,
        200,
        "{}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    assert!(body.len() > 1_500_000);
    let retry = post(&gateway, path, "big-1").await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["idempotent-body-omitted"], "true");
    assert!(retry.bytes().await.unwrap().is_empty());
    assert_eq!(bank.hits("/echo/big").await, 1, "the upstream ran it once");
}

fn client_keyed_routes(a: &Bank, b: &Bank) -> String {
    transfer_routes(a, b, "").replacen(
        "[routes.saga]\nmode = \"saga\"",
        "[routes.saga]\nmode = \"saga\"\nclient_key = \"header:x-client-id\"",
        1,
    )
}

async fn transfer_as(
    gateway: &Gateway,
    client_id: Option<&str>,
    id: &str,
    body: &Value,
) -> (u16, Value) {
    let mut builder = client()
        .post(gateway.url("/transfers"))
        .header("x-request-id", id)
        .json(body);
    if let Some(client_id) = client_id {
        builder = builder.header("x-client-id", client_id);
    }
    let response = builder.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn two_clients_with_one_request_id_each_get_their_own_saga() {
    // Proves exactly-once is per (route, client, X-Request-ID): two clients reusing one id both
    // run their own transfer and see only their own answer; a client reusing its id for another
    // body gets 422 and nothing runs.
    let a = Bank::start(&["alice=1000", "bob=1000"]).await;
    let b = Bank::start(&["carol=0", "dave=0"]).await;
    let gateway = GatewayBuilder::new(client_keyed_routes(&a, &b))
        .start()
        .await;
    let acme = json!({"from": "alice", "to": "carol", "amount": 5});
    let globex = json!({"from": "bob", "to": "dave", "amount": 7});
    let (status, first) = transfer_as(&gateway, Some("acme"), "shared", &acme).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = transfer_as(&gateway, Some("globex"), "shared", &globex).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(first["saga_id"], second["saga_id"]);
    assert_eq!(
        second["steps"][1]["body"]["account"], "dave",
        "its own accounts: {second}"
    );
    assert_eq!((a.balance("bob").await, b.balance("dave").await), (993, 7));
    let (status, reused) = transfer_as(&gateway, Some("acme"), "shared", &globex).await;
    assert_eq!(status, 422, "{reused}");
    assert!(
        reused.get("saga_id").is_none(),
        "the first answer is never shown: {reused}"
    );
    assert_eq!(
        (a.balance("alice").await, a.balance("bob").await),
        (995, 993),
        "nothing ran"
    );
    assert_eq!(a.requests("/debit").await.len(), 2);
}

#[tokio::test]
async fn without_a_client_key_a_changed_body_gets_422_not_the_old_answer() {
    // Proves that on a route with one shared client, the same X-Request-ID with another body is
    // refused with 422 problem+json, and the first request's answer is not shown.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let (status, _) = transfer(&gateway, "/transfers", "same-id", "alice", "carol", 5).await;
    assert_eq!(status, 200);
    let response = client()
        .post(gateway.url("/transfers"))
        .header("x-request-id", "same-id")
        .json(&json!({"from": "alice", "to": "carol", "amount": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:txgate:problem:request-id-reused");
    assert_eq!(
        a.balance("alice").await,
        995,
        "the second transfer never ran"
    );
}

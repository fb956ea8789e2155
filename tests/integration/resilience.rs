//! Upstream failure handling on plain routes: bounded retries that never apply a request twice,
//! and the circuit breaker.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Bank, GatewayBuilder, client, free_port};

fn routes(url: &str, upstream_extra: &str) -> String {
    format!(
        r#"
[upstreams.bank]
url = "{url}"
max_attempts = 3
backoff_base_ms = 1
backoff_max_ms = 5
timeout_ms = 1000
{upstream_extra}

[[routes]]
name = "echo"
path_prefix = "/echo"
upstream = "bank"
"#
    )
}

#[tokio::test]
async fn idempotent_request_is_retried_up_to_max_attempts() {
    // Proves a GET failing with 503 is tried exactly max_attempts times, then the last answer
    // is passed on.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(routes(&bank.base(), "")).start().await;
    bank.fault(json!({"kind": "fail_before", "path_prefix": "/echo"}))
        .await;
    let response = client().get(gateway.url("/echo")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(bank.hits("/echo").await, 3);
}

#[tokio::test]
async fn retry_succeeds_when_the_backend_recovers() {
    // Proves a transient failure is hidden from the client by a retry.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(routes(&bank.base(), "")).start().await;
    bank.fault(json!({"kind": "fail_before", "count": 2})).await;
    let response = client().get(gateway.url("/echo")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(bank.hits("/echo").await, 3);
}

#[tokio::test]
async fn unsafe_request_is_never_retried_once_sent() {
    // Proves a POST that reached the backend is not sent again, whether the backend answered 503
    // or dropped the connection after reading it.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(routes(&bank.base(), "")).start().await;
    bank.fault(json!({"kind": "fail_before"})).await;
    let response = client()
        .post(gateway.url("/echo"))
        .body("pay")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(bank.hits("/echo").await, 1);
    bank.clear_faults().await;
    bank.fault(json!({"kind": "drop"})).await;
    let response = client()
        .post(gateway.url("/echo"))
        .body("pay")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:txgate:problem:upstream-protocol");
    assert_eq!(bank.hits("/echo").await, 2, "one more attempt only");
}

#[tokio::test]
async fn dropped_connection_on_idempotent_request_is_retried() {
    // Proves a GET whose connection is dropped is retried within max_attempts.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(routes(&bank.base(), "")).start().await;
    bank.fault(json!({"kind": "drop"})).await;
    let response = client().get(gateway.url("/echo")).send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(bank.hits("/echo").await, 3);
}

#[tokio::test]
async fn connection_refused_is_retried_even_for_post() {
    // Proves a POST whose connection failed before any byte was sent is retried, because the
    // retry cannot apply it twice; attempts stop at max_attempts.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gateway = GatewayBuilder::new(routes(&dead, "")).start().await;
    let response = client()
        .post(gateway.url("/echo"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:txgate:problem:upstream-connect");
    let attempts = gateway
        .metric("txgate_upstream_attempts_total{upstream=\"bank\",result=\"connect_error\"}")
        .await;
    assert_eq!(attempts, 3.0);
}

#[tokio::test]
async fn slow_upstream_times_out_per_attempt() {
    // Proves timeout_ms bounds each attempt and the client gets 504 problem+json.
    let bank = Bank::start(&[]).await;
    let extra = "max_attempts = 1\n";
    let config = routes(&bank.base(), "")
        .replace("max_attempts = 3\n", extra)
        .replace("timeout_ms = 1000", "timeout_ms = 200");
    let gateway = GatewayBuilder::new(config).start().await;
    let started = std::time::Instant::now();
    let response = client()
        .get(gateway.url("/echo?delay_ms=2000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn breaker_opens_then_half_opens_after_cooldown() {
    // Proves breaker_failures consecutive failures open the breaker (calls refused without
    // reaching the backend), and after breaker_cooldown_ms one trial closes it again.
    let bank = Bank::start(&[]).await;
    let config = routes(
        &bank.base(),
        "breaker_failures = 2\nbreaker_cooldown_ms = 800",
    )
    .replace("max_attempts = 3", "max_attempts = 1");
    let gateway = GatewayBuilder::new(config).start().await;
    bank.fault(json!({"kind": "fail_before"})).await;
    for _ in 0..2 {
        let response = client().get(gateway.url("/echo")).send().await.unwrap();
        assert_eq!(response.status(), 503);
    }
    let refused = client().get(gateway.url("/echo")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "urn:txgate:problem:breaker-open");
    assert_eq!(bank.hits("/echo").await, 2, "an open breaker sends nothing");
    bank.clear_faults().await;
    let still_open = client().get(gateway.url("/echo")).send().await.unwrap();
    assert_eq!(still_open.status(), 503, "the cooldown has not passed");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let trial = client().get(gateway.url("/echo")).send().await.unwrap();
    assert_eq!(trial.status(), 200, "half-open lets one trial through");
    let after = client().get(gateway.url("/echo")).send().await.unwrap();
    assert_eq!(
        after.status(),
        200,
        "the trial's success closed the breaker"
    );
    assert_eq!(bank.hits("/echo").await, 4);
}

#[tokio::test]
async fn failed_half_open_trial_reopens_the_breaker() {
    // Proves a trial that fails opens the breaker for another cooldown.
    let bank = Bank::start(&[]).await;
    let config = routes(
        &bank.base(),
        "breaker_failures = 1\nbreaker_cooldown_ms = 500",
    )
    .replace("max_attempts = 3", "max_attempts = 1");
    let gateway = GatewayBuilder::new(config).start().await;
    bank.fault(json!({"kind": "fail_before"})).await;
    client().get(gateway.url("/echo")).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let trial = client().get(gateway.url("/echo")).send().await.unwrap();
    assert_eq!(trial.status(), 503);
    assert_eq!(bank.hits("/echo").await, 2, "the trial reached the backend");
    let refused = client().get(gateway.url("/echo")).send().await.unwrap();
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "urn:txgate:problem:breaker-open");
    assert_eq!(bank.hits("/echo").await, 2);
}

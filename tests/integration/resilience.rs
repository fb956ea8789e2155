//! Upstream failure handling on plain routes: bounded retries that never apply a request twice,
//! and the circuit breaker, which counts only what the backend did.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Bank, GatewayBuilder, client, free_port, raw, wait_until};
use crate::wasm;

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

#[tokio::test]
async fn clients_hanging_up_on_a_slow_backend_never_open_its_breaker() {
    // Proves SPEC §4: a call cut short by its own client says nothing about the backend. Forty
    // clients hang up while their calls to a slow backend run, on a bare plain route and on one
    // with plugins; the next client still gets through (before, the breaker opened after 20 and
    // everyone got 503 `breaker-open` for the cooldown).
    let bank = Bank::start(&[]).await;
    let config = format!(
        "[plugins.tag]\nmodule = \"{}\"\n{}\n[[routes]]\nname = \"plugged\"\npath_prefix = \"/plugged\"\nstrip_prefix = true\nupstream = \"bank\"\nplugins = [\"tag\"]\n",
        wasm::ADD_HEADER,
        routes(&bank.base(), "breaker_cooldown_ms = 60000")
            .replace("timeout_ms = 1000", "timeout_ms = 20000")
    );
    let gateway = GatewayBuilder::new(config).start().await;
    for prefix in ["", "/plugged"] {
        let path = format!("{prefix}/echo?delay_ms=5000");
        let request = raw::request("GET", &path, &[], "");
        let mut hanging = Vec::new();
        for _ in 0..40 {
            hanging.push(raw::send_and_keep(gateway.port, &request).await);
        }
        wait_until(
            Duration::from_secs(10),
            "every call to reach the bank",
            || async { bank.connections().await >= 40 },
        )
        .await;
        drop(hanging);
        // The gateway drops each abandoned call, and with it its upstream connection.
        wait_until(
            Duration::from_secs(10),
            "the abandoned calls to end",
            || async { bank.connections().await == 0 },
        )
        .await;
        let next = client()
            .get(gateway.url(&format!("{prefix}/echo")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            next.status(),
            200,
            "{prefix}: {}",
            next.text().await.unwrap()
        );
    }
    assert!(
        !gateway.metrics().await.contains("result=\"breaker_open\""),
        "no call was refused by the breaker"
    );
}

#[tokio::test]
async fn idle_upstream_connections_close_after_their_idle_timeout() {
    // Proves an upstream's idle keep-alive connections are closed after `idle_timeout_ms` even
    // when no traffic comes to prune them (before, they stayed open for as long as the process).
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(routes(&bank.base(), "idle_timeout_ms = 300"))
        .start()
        .await;
    let calls: Vec<_> = (0..8)
        .map(|_| client().get(gateway.url("/echo?delay_ms=50")).send())
        .collect();
    for answer in futures_util::future::join_all(calls).await {
        assert_eq!(answer.unwrap().status(), 200);
    }
    assert!(bank.connections().await > 0, "the pool kept some open");
    wait_until(
        Duration::from_secs(5),
        "the idle connections to close",
        || async { bank.connections().await == 0 },
    )
    .await;
}

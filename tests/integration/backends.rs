//! Backends that are gone, or that took a call the gateway lost track of: a step that never
//! reached its backend is not compensated, and one that may have is always compensated.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::sagas::transfer;
use crate::support::{Bank, GatewayBuilder, client, free_port, wait_until};
use crate::wasm;

fn two_steps(a: &str, b: &str, plugins: &str, b_attempts: u32) -> String {
    format!(
        r#"
{plugins}
[upstreams.bank_a]
url = "{a}"
max_attempts = 3
backoff_base_ms = 1
backoff_max_ms = 20
[upstreams.bank_b]
url = "{b}"
timeout_ms = 500
max_attempts = {b_attempts}
backoff_base_ms = 20
backoff_max_ms = 200
[[routes]]
name = "transfers"
path = "/transfers"
plugins = {route_plugins}
[routes.saga]
mode = "saga"
[[routes.saga.steps]]
name = "debit"
upstream = "bank_a"
action = "POST /debit"
compensate = "POST /debit/compensate"
[[routes.saga.steps]]
name = "credit"
upstream = "bank_b"
action = "POST /credit"
compensate = "POST /credit/compensate"
"#,
        route_plugins = if plugins.is_empty() {
            "[]"
        } else {
            r#"["failer"]"#
        },
    )
}

#[tokio::test]
async fn a_dead_second_upstream_gets_502_compensated_within_the_deadline() {
    // Proves a step whose backend refuses every connection is not compensated (it holds
    // nothing), so the first step is undone at once and the client gets 502 `compensated`
    // within request_timeout_ms, not 202.
    let a = Bank::start(&["alice=100"]).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gateway = GatewayBuilder::new(two_steps(&a.base(), &dead, "", 5))
        .server("request_timeout_ms = 5000")
        .start()
        .await;
    let started = Instant::now();
    let (status, answer) = transfer(&gateway, "/transfers", "dead-b", "alice", "carol", 30).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["status"], "compensated");
    assert_eq!(answer["failed_step"], "credit");
    assert_eq!(answer["steps"][0]["compensation"], "done");
    assert!(answer["steps"][1].get("compensation").is_none(), "{answer}");
    let calls: Vec<String> = a
        .requests("/debit")
        .await
        .into_iter()
        .chain(a.requests("/debit/compensate").await)
        .map(|r| {
            r["headers"]["idempotency-key"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].ends_with(".debit.action") && calls[1].ends_with(".debit.compensate"));
    assert_eq!(a.balance("alice").await, 100, "alice is whole again");
}

#[tokio::test]
async fn a_resumed_step_stays_compensable_when_its_plugin_fails_after_a_restart() {
    // Proves a step that may have been sent before a crash is compensated even when, after the
    // restart, its on-step-request fails and it is never sent again.
    let a = Bank::start(&["alice=100"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let failer = |step: &str| {
        format!(
            "[plugins.failer]\nmodule = \"{}\"\n[plugins.failer.config]\nfail_step = \"{step}\"\n",
            wasm::STEP_FAILER
        )
    };
    let mut gateway = GatewayBuilder::new(two_steps(&a.base(), &b.base(), &failer("none"), 100))
        .start()
        .await;
    // The bank applies the credit, then answers 503: the gateway keeps retrying it.
    b.fault(json!({"kind": "fail_after", "path_prefix": "/credit"}))
        .await;
    let url = gateway.url("/transfers");
    tokio::spawn(async move {
        let _ = client()
            .post(url)
            .header("x-request-id", "resumed")
            .json(&json!({"from": "alice", "to": "carol", "amount": 40}))
            .send()
            .await;
    });
    wait_until(
        Duration::from_secs(10),
        "the credit to be applied",
        || async { b.balance("carol").await == 40 },
    )
    .await;
    gateway.kill9();
    b.clear_faults().await;
    gateway.write_config(&two_steps(&a.base(), &b.base(), &failer("credit"), 5));
    gateway.restart().await;
    wait_until(Duration::from_secs(20), "the saga to finish", || {
        gateway.no_saga_unfinished()
    })
    .await;
    let (status, answer) = transfer(&gateway, "/transfers", "resumed", "alice", "carol", 40).await;
    assert_eq!(status, 503, "a plugin stopped it: {answer}");
    assert_eq!(answer["status"], "compensated");
    assert_eq!(answer["steps"][1]["compensation"], "done", "{answer}");
    assert_eq!(b.requests("/credit/compensate").await.len(), 1);
    assert_eq!(
        (a.balance("alice").await, b.balance("carol").await),
        (100, 0)
    );
}

//! The plugins shipped in `plugins/`, built from source and run in real gateways against real
//! banks: idempotency, rate limiting and compensation.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::crash::{Planned, send, wait_for_in_flight};
use crate::sagas::transfer;
use crate::support::{Bank, Gateway, GatewayBuilder, client};
use crate::wasm;

/// Upstreams, the three plugins, a saga route and a plain route, all with plugins.
pub fn config(a: &Bank, b: &Bank, compensation: &str, rate: &str) -> String {
    format!(
        r#"
[upstreams.bank_a]
url = "{a}"
timeout_ms = 1000
max_attempts = 2
backoff_base_ms = 1
backoff_max_ms = 10

[upstreams.bank_b]
url = "{b}"
timeout_ms = 1000
max_attempts = 2
backoff_base_ms = 1
backoff_max_ms = 10

[plugins.idempotency]
module = "{idempotency}"

[plugins.rate_limit]
module = "{rate_limit}"
state = "volatile"
[plugins.rate_limit.config]
{rate}

[plugins.compensation]
module = "{compensation_module}"
[plugins.compensation.config]
{compensation}

[[routes]]
name = "transfers"
methods = ["POST"]
path = "/transfers"
plugins = ["idempotency", "compensation"]
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

[[routes]]
name = "api"
path_prefix = "/api/"
strip_prefix = true
upstream = "bank_a"
plugins = ["rate_limit", "idempotency"]
"#,
        a = a.base(),
        b = b.base(),
        idempotency = wasm::IDEMPOTENCY,
        rate_limit = wasm::RATE_LIMIT,
        compensation_module = wasm::COMPENSATION,
    )
}

pub const GENEROUS: &str = "key = \"route\"\nper_second = 100000\nburst = 100000";

async fn start(compensation: &str, rate: &str) -> (Bank, Bank, Gateway) {
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=1000"]).await;
    let gateway = GatewayBuilder::new(config(&a, &b, compensation, rate))
        .server("request_timeout_ms = 2000")
        .start()
        .await;
    (a, b, gateway)
}

pub async fn post_echo(gateway: &Gateway, id: Option<&str>, body: &str) -> reqwest::Response {
    let mut request = client()
        .post(gateway.url("/api/echo"))
        .body(body.to_string());
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_retry_is_replayed_byte_for_byte_with_the_replayed_header() {
    // Proves the stored final response comes back unchanged, marked Idempotent-Replayed, and
    // the saga ran once.
    let (a, _b, gateway) = start("", GENEROUS).await;
    let first = client()
        .post(gateway.url("/transfers"))
        .header("x-request-id", "replay-1")
        .json(&json!({"from": "alice", "to": "carol", "amount": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.bytes().await.unwrap();
    let again = client()
        .post(gateway.url("/transfers"))
        .header("x-request-id", "replay-1")
        .json(&json!({"from": "alice", "to": "carol", "amount": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body, "byte for byte");
    assert_eq!(a.hits("/debit").await, 1);
}

#[tokio::test]
async fn the_same_key_with_a_changed_body_gets_422() {
    // Proves a fingerprint mismatch is refused with 422 and nothing runs again.
    let (a, _b, gateway) = start("", GENEROUS).await;
    transfer(&gateway, "/transfers", "changed-1", "alice", "carol", 10).await;
    let (status, body) = transfer(&gateway, "/transfers", "changed-1", "alice", "carol", 11).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["type"], "urn:txgate:problem:idempotency-key-reused");
    assert_eq!(a.hits("/debit").await, 1);
}

#[tokio::test]
async fn no_key_gets_400_and_never_reaches_the_bank() {
    // Proves the idempotency plugin refuses a covered request whose client sent no X-Request-ID.
    let (a, _b, gateway) = start("", GENEROUS).await;
    let response = post_echo(&gateway, None, "pay").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:txgate:problem:missing-request-id");
    assert_eq!(a.hits("/echo").await, 0);
}

#[tokio::test]
async fn fifty_concurrent_duplicates_execute_once() {
    // Proves the compare-and-swap claim: of 50 concurrent duplicates exactly one reaches the bank;
    // the others get 409 (still in flight) or the replay.
    let (a, _b, gateway) = start("", GENEROUS).await;
    a.fault(json!({"kind": "latency", "latency_ms": 200, "path_prefix": "/echo"}))
        .await;
    let gateway = std::sync::Arc::new(gateway);
    let racers: Vec<_> = (0..50)
        .map(|_| {
            let gateway = gateway.clone();
            tokio::spawn(async move {
                let response = post_echo(&gateway, Some("dup-50"), "pay once").await;
                let replayed = response.headers().contains_key("idempotent-replayed");
                let status = response.status().as_u16();
                if status != 200 && status != 409 {
                    eprintln!("unexpected: {}", response.text().await.unwrap_or_default());
                }
                (status, replayed)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap());
    }
    assert_eq!(a.hits("/echo").await, 1, "exactly one execution");
    let firsts = outcomes.iter().filter(|(s, r)| *s == 200 && !r).count();
    assert_eq!(firsts, 1, "{outcomes:?}");
    for (status, _) in &outcomes {
        assert!(*status == 409 || (*status == 200), "{outcomes:?}");
    }
}

#[tokio::test]
async fn the_replay_survives_a_graceful_restart_and_a_sigkill() {
    // Proves the stored response is durable: replayed after SIGTERM and restart, and after
    // SIGKILL and restart.
    let (a, _b, mut gateway) = start("", GENEROUS).await;
    let first = post_echo(&gateway, Some("durable-replay"), "once").await;
    let first_body = first.bytes().await.unwrap();
    gateway.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(gateway.wait_exit(Duration::from_secs(10)).await.success());
    gateway.restart().await;
    let after_term = post_echo(&gateway, Some("durable-replay"), "once").await;
    assert_eq!(after_term.headers()["idempotent-replayed"], "true");
    assert_eq!(after_term.bytes().await.unwrap(), first_body);
    gateway.kill9();
    gateway.restart().await;
    let after_kill = post_echo(&gateway, Some("durable-replay"), "once").await;
    assert_eq!(after_kill.headers()["idempotent-replayed"], "true");
    assert_eq!(after_kill.bytes().await.unwrap(), first_body);
    assert_eq!(a.hits("/echo").await, 1);
}

#[tokio::test]
async fn after_a_sigkill_with_100_sagas_in_flight_retries_get_final_answers_never_409() {
    // Proves a claim left by a crashed process is not "in flight": with the idempotency plugin
    // on the route, every retry after the restart gets its saga's final answer, never 409.
    let a = Bank::start(&["alice=1000000"]).await;
    let b = Bank::start(&["carol=1000000"]).await;
    a.fault(json!({"kind": "latency", "latency_ms": 80})).await;
    let mut gateway = GatewayBuilder::new(config(&a, &b, "", GENEROUS))
        .server("request_timeout_ms = 5000")
        .start()
        .await;
    let planned: Vec<Planned> = (0..150)
        .map(|n| Planned {
            id: format!("kill-{n}"),
            path: "/transfers".to_string(),
            body: json!({"from": "alice", "to": if n % 10 == 0 { "ghost" } else { "carol" }, "amount": 1}),
        })
        .collect();
    let clients: Vec<_> = planned
        .iter()
        .map(|p| tokio::spawn(send(gateway.url(&p.path), p.clone())))
        .collect();
    wait_for_in_flight(&gateway, 100.0, 0).await;
    gateway.kill9();
    for c in clients {
        let _ = c.await;
    }
    a.clear_faults().await;
    gateway.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut pending = planned;
    let mut finished = HashSet::new();
    while !pending.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} retries never got a final answer",
            pending.len()
        );
        let url = gateway.url("/transfers");
        let answers: Vec<_> = pending
            .drain(..)
            .map(|p| (p.clone(), tokio::spawn(send(url.clone(), p))))
            .collect();
        for (planned, answer) in answers {
            match answer.await.unwrap() {
                Some((409, body)) if !crate::crash::is_final(409, &body) => {
                    panic!("a crashed request must not count as in flight: {body}")
                }
                Some((202, _)) | None => pending.push(planned),
                Some((status, body)) => {
                    // On a loaded machine the restarted gateway may find bank A slow enough to
                    // open its breaker, or a call of before the crash still in progress there
                    // (409): a saga compensated for either is a final answer too.
                    let compensated =
                        matches!(status, 409 | 502) && body["status"] == "compensated";
                    assert!(
                        matches!(status, 200 | 404) || compensated,
                        "{status} {body}"
                    );
                    finished.insert(planned.id);
                }
            }
        }
    }
    assert_eq!(finished.len(), 150);
}

#[tokio::test]
async fn over_the_limit_is_429_with_headers_and_never_reaches_the_bank() {
    // Proves GCRA limiting at the edge: past the burst, 429 with Retry-After, RateLimit-Policy
    // and RateLimit; limited requests never reach the upstream; another client is unaffected.
    let rate = "key = \"header:x-client-id\"\nper_second = 0.5\nburst = 2";
    let (a, _b, gateway) = start("", rate).await;
    let hit = |client_id: &'static str| {
        let url = gateway.url("/api/accounts/alice");
        async move {
            client()
                .get(url)
                .header("x-client-id", client_id)
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..2 {
        assert_eq!(hit("acme").await.status(), 200);
    }
    for _ in 0..3 {
        let limited = hit("acme").await;
        assert_eq!(limited.status(), 429);
        let retry_after: u64 = limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry_after), "{retry_after}");
        assert_eq!(limited.headers()["ratelimit-policy"], "\"gcra\";q=2;w=4");
        assert!(
            limited.headers()["ratelimit"]
                .to_str()
                .unwrap()
                .starts_with("\"gcra\";r=0;t=")
        );
    }
    let stats: Value = client()
        .get(a.url("/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a.total_hits().await, 0, "{stats}");
    for _ in 0..2 {
        assert_eq!(
            hit("globex").await.status(),
            200,
            "another client has its own bucket"
        );
    }
    assert_eq!(hit("globex").await.status(), 429);
}

#[tokio::test]
async fn a_compensation_body_is_built_from_its_template() {
    // Proves the compensation plugin fills the template from the action's request and response
    // and the saga id, and the bank receives exactly that body.
    let template = r#"[plugins.compensation.config.steps.debit.compensate_body]
account = "$request.from"
refund = "$response.applied"
saga = "$saga_id"
reason = "credit refused""#;
    let (a, _b, gateway) = start(template, GENEROUS).await;
    let (status, answer) =
        transfer(&gateway, "/transfers", "templated-1", "alice", "nobody", 40).await;
    assert_eq!(status, 404, "{answer}");
    let received = a.requests("/debit/compensate").await;
    assert_eq!(received.len(), 1);
    let expected = json!({"account": "alice", "refund": -40, "saga": answer["saga_id"], "reason": "credit refused"});
    assert_eq!(received[0]["body"], expected);
    assert_eq!(received[0]["headers"]["content-type"], "application/json");
    assert_eq!(
        a.balance("alice").await,
        1000,
        "the bank still undid the step by its barrier"
    );
}

#[tokio::test]
async fn a_bad_template_path_makes_the_saga_stuck_and_sends_nothing() {
    // Proves a template path that does not exist fails loudly: counted, logged, the saga stuck,
    // and no half-filled compensation is ever sent.
    let template = r#"[plugins.compensation.config.steps.debit.compensate_body]
tx = "$response.transaction_id""#;
    let (a, _b, gateway) = start(template, GENEROUS).await;
    let (status, body) =
        transfer(&gateway, "/transfers", "bad-template", "alice", "nobody", 5).await;
    assert_eq!(status, 202, "{body}");
    let saga_id = body["saga_id"].as_str().unwrap().to_string();
    let view: Value = gateway.admin_json(&format!("/admin/sagas/{saga_id}")).await;
    assert_eq!(view["status"], "stuck", "{view}");
    let error = view["attempts"].as_array().unwrap().last().unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("transaction_id"), "{error}");
    assert!(
        a.requests("/debit/compensate").await.is_empty(),
        "nothing half-filled was sent"
    );
    let failures = gateway
        .metric("txgate_plugin_errors_total{plugin=\"compensation\",kind=\"failed\"}")
        .await;
    assert!(failures >= 1.0);
    assert!(gateway.log().contains("transaction_id"), "logged");
}

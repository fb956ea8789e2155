//! Saga and TCC routes against two real demo banks: outcomes, retries, deadlines, exactly-once
//! per X-Request-ID, and the operator's retry and resolve.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Bank, Gateway, GatewayBuilder, client, wait_until};

/// A saga route and a TCC route across bank A (debits) and bank B (credits), each step with
/// its status call.
pub fn transfer_routes(a: &Bank, b: &Bank, upstream_extra: &str) -> String {
    format!(
        r#"
[upstreams.bank_a]
url = "{a}"
timeout_ms = 1000
max_attempts = 3
backoff_base_ms = 1
backoff_max_ms = 20
{upstream_extra}

[upstreams.bank_b]
url = "{b}"
timeout_ms = 1000
max_attempts = 3
backoff_base_ms = 1
backoff_max_ms = 20
{upstream_extra}

[[routes]]
name = "transfers"
methods = ["POST"]
path = "/transfers"
[routes.saga]
mode = "saga"
[[routes.saga.steps]]
name = "debit"
upstream = "bank_a"
action = "POST /debit"
compensate = "POST /debit/compensate"
status = "GET /debit/status"
[[routes.saga.steps]]
name = "credit"
upstream = "bank_b"
action = "POST /credit"
compensate = "POST /credit/compensate"
status = "GET /credit/status"

[[routes]]
name = "tcc"
methods = ["POST"]
path = "/tcc"
[routes.saga]
mode = "tcc"
[[routes.saga.steps]]
name = "debit"
upstream = "bank_a"
try = "POST /tcc/debit/try"
confirm = "POST /tcc/debit/confirm"
cancel = "POST /tcc/debit/cancel"
status = "GET /tcc/debit/status"
[[routes.saga.steps]]
name = "credit"
upstream = "bank_b"
try = "POST /tcc/credit/try"
confirm = "POST /tcc/credit/confirm"
cancel = "POST /tcc/credit/cancel"
status = "GET /tcc/credit/status"
"#,
        a = a.base(),
        b = b.base()
    )
}

/// Sends a transfer; returns the status and the JSON body.
pub async fn transfer(
    gateway: &Gateway,
    path: &str,
    id: &str,
    from: &str,
    to: &str,
    amount: i64,
) -> (u16, Value) {
    let response = client()
        .post(gateway.url(path))
        .header("x-request-id", id)
        .json(&json!({"from": from, "to": to, "amount": amount}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn banks() -> (Bank, Bank) {
    (
        Bank::start(&["alice=1000"]).await,
        Bank::start(&["carol=1000"]).await,
    )
}

#[tokio::test]
async fn saga_happy_path_moves_money_once() {
    // Proves a two-step saga debits one bank, credits the other, and answers 200 with each
    // step's upstream status and body.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let (status, body) = transfer(&gateway, "/transfers", "happy-1", "alice", "carol", 100).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["steps"][0]["name"], "debit");
    assert_eq!(body["steps"][0]["status"], 200);
    assert_eq!(body["steps"][1]["body"]["balance"], 1100);
    assert_eq!(a.balance("alice").await, 900);
    assert_eq!(b.balance("carol").await, 1100);
}

#[tokio::test]
async fn rejection_at_the_first_step_moves_nothing() {
    // Proves a business rejection (insufficient funds) at the first step answers with that step's
    // status, names the failed step, and calls nothing else.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let (status, body) = transfer(&gateway, "/transfers", "poor-1", "alice", "carol", 5000).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["status"], "compensated");
    assert_eq!(body["failed_step"], "debit");
    assert_eq!(b.total_hits().await, 0, "the credit was never sent");
    assert_eq!(
        a.hits("/debit/compensate").await,
        0,
        "nothing to compensate"
    );
    assert_eq!(a.balance("alice").await, 1000);
}

#[tokio::test]
async fn rejection_at_the_last_step_compensates_the_first() {
    // Proves a rejection at the last step (unknown account) compensates the debit: the money
    // comes back and the client learns which step failed.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let (status, body) = transfer(&gateway, "/transfers", "ghost-1", "alice", "nobody", 100).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["failed_step"], "credit");
    assert_eq!(body["steps"][0]["compensation"], "done");
    assert_eq!(a.balance("alice").await, 1000);
    assert_eq!(a.hits("/debit/compensate").await, 1);
}

#[tokio::test]
async fn an_upstream_dead_after_its_retries_is_502_and_compensated() {
    // Proves an upstream that keeps failing is tried max_attempts times, the step counts as in
    // doubt and is compensated too, and the client gets 502.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    b.fault(json!({"kind": "fail_before", "path_prefix": "/credit", "count": 3}))
        .await;
    let (status, body) = transfer(&gateway, "/transfers", "dead-1", "alice", "carol", 100).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["failed_step"], "credit");
    assert_eq!(b.hits("/credit").await, 3, "max_attempts");
    assert_eq!(
        b.hits("/credit/compensate").await,
        1,
        "the in-doubt credit is compensated too"
    );
    assert_eq!(a.balance("alice").await, 1000);
    assert_eq!(b.balance("carol").await, 1000);
}

#[tokio::test]
async fn tcc_commits_with_tries_then_confirms() {
    // Proves a TCC transfer reserves at both banks, then confirms both.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let (status, body) = transfer(&gateway, "/tcc", "tcc-ok", "alice", "carol", 300).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(a.balance("alice").await, 700);
    assert_eq!(b.balance("carol").await, 1300);
    assert_eq!(a.hits("/tcc/debit/confirm").await, 1);
    assert_eq!(b.hits("/tcc/credit/confirm").await, 1);
}

#[tokio::test]
async fn tcc_cancels_everything_tried() {
    // Proves a TCC transfer whose second try is rejected cancels both tries, and the reserved
    // money is released.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let (status, body) = transfer(&gateway, "/tcc", "tcc-no", "alice", "nobody", 300).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(a.hits("/tcc/debit/cancel").await, 1);
    assert_eq!(a.balance("alice").await, 1000);
    assert_eq!(a.total().await, 1000, "nothing held any more");
}

#[tokio::test]
async fn a_duplicate_request_id_never_makes_a_second_saga() {
    // Proves exactly-once per (route, X-Request-ID): a retry gets the same saga, and 20
    // concurrent duplicates debit once.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let (_, first) = transfer(&gateway, "/transfers", "dup-1", "alice", "carol", 10).await;
    let (_, again) = transfer(&gateway, "/transfers", "dup-1", "alice", "carol", 10).await;
    assert_eq!(first["saga_id"], again["saga_id"]);
    let gateway = std::sync::Arc::new(gateway);
    let racers: Vec<_> = (0..20)
        .map(|_| {
            let gateway = gateway.clone();
            tokio::spawn(async move {
                transfer(&gateway, "/transfers", "dup-2", "alice", "carol", 10).await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for racer in racers {
        let (status, body) = racer.await.unwrap();
        assert!(status == 200 || status == 202, "{status} {body}");
        ids.insert(body["saga_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one saga for 20 duplicates");
    wait_until(
        Duration::from_secs(10),
        "the duplicate saga to finish",
        || async { a.hits("/debit").await == 2 },
    )
    .await;
    assert_eq!(
        a.balance("alice").await,
        980,
        "two transfers of 10, each applied once"
    );
}

#[tokio::test]
async fn a_saga_past_the_deadline_answers_202_then_the_final_answer() {
    // Proves request_timeout_ms: a slow saga answers 202 pending with its id, goes on in the
    // background, and a retry with the same X-Request-ID gets the final answer.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .server("request_timeout_ms = 300")
        .start()
        .await;
    b.fault(json!({"kind": "latency", "latency_ms": 700, "count": 1}))
        .await;
    let (status, pending) = transfer(&gateway, "/transfers", "slow-1", "alice", "carol", 50).await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["status"], "pending");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, done) = transfer(&gateway, "/transfers", "slow-1", "alice", "carol", 50).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["saga_id"], pending["saga_id"]);
    assert_eq!(b.balance("carol").await, 1050);
}

#[tokio::test]
async fn a_saga_route_requires_a_request_id() {
    // Proves saga routes refuse a request without X-Request-ID (400) and call nothing.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let response = client()
        .post(gateway.url("/transfers"))
        .json(&json!({"from": "alice", "to": "carol", "amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(a.total_hits().await, 0);
}

async fn stuck_saga(gateway: &Gateway, a: &Bank, id: &str) -> String {
    a.fault(json!({"kind": "fail_before", "path_prefix": "/debit/compensate"}))
        .await;
    let (status, body) = transfer(gateway, "/transfers", id, "alice", "nobody", 100).await;
    assert_eq!(status, 202, "compensation cannot finish: {body}");
    let saga_id = body["saga_id"].as_str().unwrap().to_string();
    wait_until(
        Duration::from_secs(20),
        "the saga to become stuck",
        || async {
            let view: Value = gateway.admin_json(&format!("/admin/sagas/{saga_id}")).await;
            view["status"] == "stuck"
        },
    )
    .await;
    saga_id
}

#[tokio::test]
async fn a_stuck_saga_is_listed_then_retried_by_an_operator() {
    // Proves a compensation failing 20 times makes the saga stuck (listed by the admin API with
    // its attempts), and an admin retry after the fix completes the compensation.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .server("request_timeout_ms = 300")
        .start()
        .await;
    let saga_id = stuck_saga(&gateway, &a, "stuck-1").await;
    let listed: Value = gateway.admin_json("/admin/sagas?status=stuck").await;
    assert_eq!(listed["sagas"][0]["saga_id"], saga_id.as_str(), "{listed}");
    let view: Value = gateway.admin_json(&format!("/admin/sagas/{saga_id}")).await;
    let attempts = view["attempts"].as_array().unwrap();
    assert!(view["attempts_total"].as_u64().unwrap() >= 20, "{view}");
    let refused = attempts
        .iter()
        .find(|a| a["phase"] == "compensate" && a["status"] == 503)
        .expect("a compensation attempt answered 503");
    assert_eq!(refused["step"], "debit");
    for attempt in attempts {
        assert!(attempt["at_ms"].as_u64().is_some() && attempt["latency_ms"].as_u64().is_some());
    }
    let last = attempts.last().unwrap();
    assert!(last["error"].is_string(), "failed attempts say why: {last}");
    a.clear_faults().await;
    let retry = gateway
        .admin(Method::POST, &format!("/admin/sagas/{saga_id}/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 202);
    wait_until(
        Duration::from_secs(10),
        "the retried compensation",
        || async {
            let (status, body) =
                transfer(&gateway, "/transfers", "stuck-1", "alice", "nobody", 100).await;
            status == 404 && body["status"] == "compensated"
        },
    )
    .await;
    assert_eq!(a.balance("alice").await, 1000);
}

#[tokio::test]
async fn a_stuck_saga_is_resolved_by_an_operator_with_a_note() {
    // Proves resolve marks a stuck saga compensated with the operator's note, stops its retries,
    // and refuses to resolve it twice.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .server("request_timeout_ms = 300")
        .start()
        .await;
    let saga_id = stuck_saga(&gateway, &a, "stuck-2").await;
    let note = json!({"by": "ops", "ticket": "INC-42", "fixed": "refunded by hand"});
    let resolved = gateway
        .admin(Method::POST, &format!("/admin/sagas/{saga_id}/resolve"))
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(resolved.status(), 200);
    let view: Value = resolved.json().await.unwrap();
    assert_eq!(view["status"], "compensated");
    assert_eq!(view["resolution"]["ticket"], "INC-42");
    let hits = a.hits("/debit/compensate").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(a.hits("/debit/compensate").await, hits, "retries stopped");
    let again = gateway
        .admin(Method::POST, &format!("/admin/sagas/{saga_id}/resolve"))
        .json(&note)
        .send()
        .await
        .unwrap();
    assert!(
        again.status() == 404 || again.status() == 409,
        "{}",
        again.status()
    );
}

#[tokio::test]
async fn sagas_survive_a_graceful_restart() {
    // Proves finished sagas are durable: after SIGTERM and a restart, a duplicate request gets
    // the stored answer and nothing is sent again.
    let (a, b) = banks().await;
    let mut gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let (_, first) = transfer(&gateway, "/transfers", "durable-1", "alice", "carol", 25).await;
    gateway.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(gateway.wait_exit(Duration::from_secs(10)).await.success());
    gateway.restart().await;
    let (status, again) = transfer(&gateway, "/transfers", "durable-1", "alice", "carol", 25).await;
    assert_eq!(status, 200);
    assert_eq!(again["saga_id"], first["saga_id"]);
    assert_eq!(a.hits("/debit").await, 1);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("txgate_store_commit_duration_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_damaged_or_old_store_refuses_to_start_and_names_the_file() {
    // Proves the start-up rules on the real binary: a database file SQLite cannot read, or a
    // directory of the old log format, stops the start (exit 1) with the file named and left
    // as it was; put back, the same store starts and still answers the sagas it holds.
    let (a, b) = banks().await;
    let mut gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let (_, first) = transfer(&gateway, "/transfers", "disk-1", "alice", "carol", 5).await;
    gateway.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(gateway.wait_exit(Duration::from_secs(10)).await.success());
    let file = gateway.store_dir().join("txgate.db");
    let pristine = std::fs::read(&file).unwrap();
    let mut damaged = pristine.clone();
    damaged[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&file, &damaged).unwrap();
    let (status, log) = gateway.restart_expecting_failure().await;
    assert_eq!(status.code(), Some(1));
    assert!(
        log.contains("txgate.db") && log.contains("not a SQLite database"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(std::fs::read(&file).unwrap(), damaged, "left as it was");
    let old = gateway.store_dir().join("wal-000000000001.log");
    std::fs::write(&old, b"TXG1").unwrap();
    let (status, log) = gateway.restart_expecting_failure().await;
    assert_eq!(status.code(), Some(1));
    assert!(log.contains("old log format"), "{log}");
    std::fs::remove_file(&old).unwrap();
    std::fs::write(&file, &pristine).unwrap();
    gateway.restart().await;
    let (status, again) = transfer(&gateway, "/transfers", "disk-1", "alice", "carol", 5).await;
    assert_eq!(status, 200);
    assert_eq!(
        again["saga_id"], first["saga_id"],
        "the first saga survived"
    );
}

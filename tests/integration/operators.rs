//! Careless operators: the config changes under running sagas, across a `kill -9` or through a
//! reload. A saga finishes with the plan it started with; a reload applies all it says, or
//! nothing, and never reports success for what it did not apply.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::sagas::{transfer, transfer_routes};
use crate::support::{Bank, Gateway, GatewayBuilder, client, wait_until};
use crate::wasm;

const IN_FLIGHT: usize = 20;

async fn saga_of(gateway: &Gateway, id: &str) -> Value {
    gateway.admin_json(&format!("/admin/sagas/{id}")).await
}

/// Starts `IN_FLIGHT` transfers whose credit hangs at bank B, and waits until every debit has
/// been applied. Returns the X-Request-IDs.
async fn hang_credits(gateway: &Gateway, a: &Bank, b: &Bank) -> Vec<String> {
    b.fault(json!({"kind": "fail_before", "path_prefix": "/credit"}))
        .await;
    let ids: Vec<String> = (0..IN_FLIGHT).map(|n| format!("plan-{n}")).collect();
    for id in &ids {
        let (gateway_url, id) = (gateway.url("/transfers"), id.clone());
        tokio::spawn(async move {
            let _ = client()
                .post(gateway_url)
                .header("x-request-id", id)
                .json(&json!({"from": "alice", "to": "carol", "amount": 1}))
                .send()
                .await;
        });
    }
    wait_until(
        Duration::from_secs(20),
        "every debit to be applied",
        || async { a.requests("/debit").await.len() == IN_FLIGHT },
    )
    .await;
    ids
}

/// The same two banks, under a renamed route whose steps are in the other order.
fn renamed_and_reordered(a: &Bank, b: &Bank) -> String {
    format!(
        r#"
[upstreams.bank_a]
url = "{}"
[upstreams.bank_b]
url = "{}"
backoff_base_ms = 1
backoff_max_ms = 20
[[routes]]
name = "payments"
path = "/payments"
[routes.saga]
mode = "saga"
[[routes.saga.steps]]
name = "credit"
upstream = "bank_b"
action = "POST /credit"
compensate = "POST /credit/compensate"
[[routes.saga.steps]]
name = "debit"
upstream = "bank_a"
action = "POST /debit"
compensate = "POST /debit/compensate"
"#,
        a.base(),
        b.base()
    )
}

fn slow_retries(a: &Bank, b: &Bank) -> String {
    transfer_routes(a, b, "").replace("max_attempts = 3", "max_attempts = 100")
}

#[tokio::test]
async fn sagas_finish_with_their_plan_after_kill_and_a_renamed_route() {
    // Proves sagas killed in flight finish after a restart whose config renamed their route and
    // reordered its steps: each call goes to the upstream of the saga's own plan.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let mut gateway = GatewayBuilder::new(slow_retries(&a, &b)).start().await;
    let ids = hang_credits(&gateway, &a, &b).await;
    gateway.kill9();
    gateway.write_config(&renamed_and_reordered(&a, &b));
    b.clear_faults().await;
    gateway.restart().await;
    wait_until(Duration::from_secs(30), "the sagas to finish", || {
        gateway.no_saga_unfinished()
    })
    .await;
    let finished: Value = gateway
        .admin_json("/admin/sagas?status=completed&limit=100")
        .await;
    let sagas = finished["sagas"].as_array().unwrap();
    assert_eq!(sagas.len(), IN_FLIGHT);
    assert!(
        sagas
            .iter()
            .all(|s| s["route"] == "transfers" && s["plan"][0]["name"] == "debit")
    );
    assert_eq!(a.balance("alice").await, 1000 - IN_FLIGHT as i64);
    assert_eq!(b.balance("carol").await, IN_FLIGHT as i64);
    assert!(a.requests("/credit").await.is_empty() && b.requests("/debit").await.is_empty());
    assert_eq!(ids.len(), IN_FLIGHT);
}

#[tokio::test]
async fn a_missing_upstream_makes_the_saga_stuck_by_name_until_a_reload_brings_it_back() {
    // Proves a saga whose upstream is gone from the config after a restart is stuck with a
    // reason naming it, nothing panics, and a reload that restores it lets the saga finish.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let mut gateway = GatewayBuilder::new(slow_retries(&a, &b)).start().await;
    hang_credits(&gateway, &a, &b).await;
    gateway.kill9();
    let without_b = format!(
        "[upstreams.bank_a]\nurl = \"{}\"\n[[routes]]\nname = \"other\"\npath = \"/other\"\nupstream = \"bank_a\"\n",
        a.base()
    );
    gateway.write_config(&without_b);
    b.clear_faults().await;
    gateway.restart().await;
    wait_until(Duration::from_secs(20), "the sagas to be stuck", || async {
        let stuck: Value = gateway
            .admin_json("/admin/sagas?status=stuck&limit=100")
            .await;
        stuck["sagas"]
            .as_array()
            .is_some_and(|s| s.len() == IN_FLIGHT)
    })
    .await;
    let stuck: Value = gateway
        .admin_json("/admin/sagas?status=stuck&limit=1")
        .await;
    let saga = &stuck["sagas"][0];
    assert!(
        saga["failure"]["error"]
            .as_str()
            .unwrap()
            .contains("`bank_b`"),
        "the reason names the upstream: {saga}"
    );
    assert!(!gateway.log().contains("panicked"));
    gateway.write_config(&slow_retries(&a, &b));
    let (status, body) = gateway.reload().await;
    assert_eq!(status, 200, "{body}");
    let id = saga["saga_id"].as_str().unwrap().to_string();
    gateway
        .admin(Method::POST, &format!("/admin/sagas/{id}/retry"))
        .send()
        .await
        .unwrap();
    wait_until(Duration::from_secs(30), "the sagas to finish", || {
        gateway.no_saga_unfinished()
    })
    .await;
    assert_eq!(saga_of(&gateway, &id).await["status"], "completed");
    assert_eq!(b.balance("carol").await, IN_FLIGHT as i64);
}

fn with_added_route(a: &Bank, b: &Bank) -> String {
    format!(
        "{}\n[plugins.tag]\nmodule = \"{}\"\n[plugins.tag.config]\nname = \"x-tag\"\nvalue = \"v2\"\n[[routes]]\nname = \"books\"\nmethods = [\"GET\"]\npath_prefix = \"/books/\"\nstrip_prefix = true\nupstream = \"bank_a\"\nplugins = [\"tag\"]\n",
        transfer_routes(a, b, ""),
        wasm::ADD_HEADER
    )
}

#[tokio::test]
async fn a_reload_applies_new_routes_at_once_and_refuses_a_listener_change_by_key() {
    // Proves a reload that adds a route (with a plugin) serves it on the next request; one that
    // moves a listener is refused with 422 naming the key, and the running config stays.
    let (a, b) = crate::sagas::banks().await;
    let mut gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    let before = client()
        .get(gateway.url("/books/accounts/alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), 404);
    gateway.write_config(&with_added_route(&a, &b));
    let (status, reloaded) = gateway.reload().await;
    assert_eq!(status, 200, "{reloaded}");
    assert!(
        reloaded["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "books"),
        "{reloaded}"
    );
    let after = client()
        .get(gateway.url("/books/accounts/alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(
        after.headers()["x-tag"],
        "v2",
        "the new route's plugin runs"
    );
    gateway.set_config_listen("127.0.0.1:1");
    gateway.write_config(&with_added_route(&a, &b));
    let (status, problem) = gateway.reload().await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("server.listen"),
        "{problem}"
    );
    let (status, _) = transfer(&gateway, "/transfers", "after-refusal", "alice", "carol", 1).await;
    assert_eq!(status, 200, "the running config still serves");
}

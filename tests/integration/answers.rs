//! Answers never ahead of outcomes (SPEC §8), on one gateway: a saga's id is given only once its
//! claim is on disk, its outcome only once that is, `on-response` sees exactly the answer the
//! client gets, and a saga resumed after a restart keeps the plugins it started with.

use std::time::Duration;

use serde_json::{Value, json};

use crate::sagas::transfer_routes;
use crate::support::{Bank, Gateway, GatewayBuilder, Tmpfs, client, wait_until};
use crate::wasm;

async fn post(gateway: &Gateway, id: &str, attempt: &str) -> (u16, Value, Option<String>) {
    let response = client()
        .post(gateway.url("/transfers"))
        .header("x-request-id", id)
        .header("x-attempt", attempt)
        .json(&json!({"from": "alice", "to": "carol", "amount": 25}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let calls = response
        .headers()
        .get("x-on-response-calls")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, response.json().await.unwrap_or(Value::Null), calls)
}

#[tokio::test]
async fn a_saga_not_yet_on_disk_at_the_deadline_gets_503_never_a_saga_id() {
    // Proves a 202 with a `saga_id` is never answered for a saga whose claim is still queued
    // (the disk is full): the client gets 503 and retries; once space is back, the claim commits
    // and the retry gets the one saga's answer, with the money moved once.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let mut gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .server("request_timeout_ms = 1000")
        .stopped();
    let tmpfs = Tmpfs::mount(&gateway.store_dir());
    gateway.restart().await;
    let filler = tmpfs.fill("filler");
    let (status, answer, _) = post(&gateway, "queued-claim", "1").await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer.get("saga_id").is_none(), "{answer}");
    assert_eq!(a.total_hits().await, 0, "nothing ran");
    std::fs::remove_file(filler).unwrap();
    wait_until(
        Duration::from_secs(20),
        "the retry to get the answer",
        || async { post(&gateway, "queued-claim", "2").await.0 == 200 },
    )
    .await;
    assert_eq!(
        (a.balance("alice").await, b.balance("carol").await),
        (975, 25)
    );
}

#[tokio::test]
async fn on_response_runs_once_on_the_answer_the_client_gets() {
    // Proves a saga's outcome goes through `on-response` only once it is on disk: when the
    // final save cannot be written by the deadline (another process holds the database's write
    // lock), the plugins see the 202 that is sent, once. Before, they saw the final answer
    // first, then the 202: twice for one request.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let counter = format!(
        "[plugins.counter]\nmodule = \"{}\"\nstate = \"volatile\"\n",
        wasm::COUNTER
    );
    let routes = transfer_routes(&a, &b, "").replace(
        "path = \"/transfers\"\n",
        "path = \"/transfers\"\nplugins = [\"counter\"]\n",
    );
    let gateway = GatewayBuilder::new(format!("{counter}{routes}"))
        .server("request_timeout_ms = 1500")
        .start()
        .await;
    b.fault(json!({"kind": "latency", "latency_ms": 500, "count": 1, "path_prefix": "/credit"}))
        .await;
    let url = gateway.url("/transfers");
    let pending = tokio::spawn(async move {
        let response = client()
            .post(url)
            .header("x-request-id", "held-at-the-end")
            .header("x-attempt", "1")
            .json(&json!({"from": "alice", "to": "carol", "amount": 25}))
            .send()
            .await
            .unwrap();
        let calls = response.headers()["x-on-response-calls"].clone();
        (response.status().as_u16(), calls)
    });
    // The credit is sent only once the step before it is on disk: take the write lock then,
    // so that only the saga's final save waits for it.
    wait_until(
        Duration::from_secs(10),
        "the credit to reach bank B",
        || async { b.hits("/credit").await == 1 },
    )
    .await;
    let database = gateway.store_dir().join("txgate.db");
    let lock = rusqlite::Connection::open(&database).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (status, calls) = pending.await.unwrap();
    lock.execute_batch("ROLLBACK").unwrap();
    assert_eq!(status, 202);
    assert_eq!(calls, "1", "on-response ran once, on the 202");
    wait_until(Duration::from_secs(20), "the saga to finish", || async {
        post(&gateway, "held-at-the-end", "2").await.0 == 200
    })
    .await;
    let (_, answer, calls) = post(&gateway, "held-at-the-end", "3").await;
    assert_eq!(answer["status"], "completed");
    assert_eq!(calls.as_deref(), Some("1"));
    assert_eq!(b.balance("carol").await, 25);
}

#[tokio::test]
async fn a_resumed_saga_keeps_its_plugins_after_its_route_is_renamed() {
    // Proves a saga runs its hooks with the plugins it started with, found by their names: its
    // route renamed across a crash, the resumed compensation is still built from its template.
    // Before, the plugins were looked up by the route's name, and the action's body was sent as
    // the undo.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let template = compensation_plugin("refund = \"$request.amount\"\nsaga = \"$saga_id\"\n");
    let (mut gateway, pending, routes) = pending_undo(&a, &b, &template, "renamed", 30).await;
    wait_until(
        Duration::from_secs(10),
        "a compensation to be tried",
        || async { a.hits("/debit/compensate").await >= 1 },
    )
    .await;
    gateway.kill9();
    a.clear_faults().await;
    gateway.write_config(&format!(
        "{template}{}",
        routes.replace("name = \"transfers\"", "name = \"payments\"")
    ));
    gateway.restart().await;
    wait_until(Duration::from_secs(20), "the saga to finish", || {
        gateway.no_saga_unfinished()
    })
    .await;
    let undo = a.requests("/debit/compensate").await;
    assert!(!undo.is_empty());
    assert_eq!(
        undo.last().unwrap()["body"],
        json!({"refund": 30, "saga": pending["saga_id"]}),
        "the template built the undo"
    );
    assert_eq!(a.balance("alice").await, 1000);
}

#[tokio::test]
async fn a_saga_whose_plugin_is_gone_waits_stuck_and_names_it_until_it_is_back() {
    // Proves a resumed saga never runs its hooks without one of its plugins: with the
    // compensation plugin gone from the config, its undo is not sent bare; the saga is stuck
    // with a reason that names the plugin, and finishes with the template once a reload brings
    // the plugin back.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let plugin = compensation_plugin("refund = \"$request.amount\"\n");
    let (mut gateway, pending, plugged) = pending_undo(&a, &b, &plugin, "unplugged", 20).await;
    gateway.kill9();
    a.clear_faults().await;
    gateway.write_config(&transfer_routes(&a, &b, ""));
    gateway.restart().await;
    let saga = format!("/admin/sagas/{}", pending["saga_id"].as_str().unwrap());
    wait_until(Duration::from_secs(20), "the saga to be stuck", || async {
        let view = gateway.admin_json(&saga).await;
        view["status"] == "stuck" && view.to_string().contains("plugin `compensation`")
    })
    .await;
    assert!(
        a.requests("/debit/compensate").await.is_empty(),
        "no bare undo"
    );
    gateway.write_config(&format!("{plugin}{plugged}"));
    assert_eq!(gateway.reload().await.0, 200);
    wait_until(Duration::from_secs(20), "the saga to finish", || {
        gateway.no_saga_unfinished()
    })
    .await;
    let undo = a.requests("/debit/compensate").await;
    assert_eq!(undo.last().unwrap()["body"], json!({"refund": 20}));
    assert_eq!(a.balance("alice").await, 1000);
}

/// The compensation plugin's config, with `body` as the debit's undo template.
fn compensation_plugin(body: &str) -> String {
    format!(
        "[plugins.compensation]\nmodule = \"{}\"\n[plugins.compensation.config.steps.debit.compensate_body]\n{body}",
        wasm::COMPENSATION
    )
}

/// A gateway whose transfer route runs `plugin` (the compensation plugin's config), and a transfer
/// to an unknown account on it, answered 202 while its undo fails at bank A. Returns the gateway,
/// the 202's body and the routes.
async fn pending_undo(
    a: &Bank,
    b: &Bank,
    plugin: &str,
    id: &str,
    amount: i64,
) -> (Gateway, Value, String) {
    let routes = transfer_routes(a, b, "").replace(
        "path = \"/transfers\"\n",
        "path = \"/transfers\"\nplugins = [\"compensation\"]\n",
    );
    let gateway = GatewayBuilder::new(format!("{plugin}{routes}"))
        .server("request_timeout_ms = 500")
        .start()
        .await;
    a.fault(json!({"kind": "fail_before", "path_prefix": "/debit/compensate"}))
        .await;
    let (status, pending) =
        crate::sagas::transfer(&gateway, "/transfers", id, "alice", "nobody", amount).await;
    assert_eq!(status, 202, "{pending}");
    (gateway, pending, routes)
}

//! Operators by name (SPEC §2, §6): roles, every action recorded with who, when and why (in the
//! saga's timeline and the audit stream), abort, and search, against a real gateway and banks.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::sagas::{banks, transfer, transfer_routes};
use crate::support::{Bank, Fleet, Gateway, GatewayBuilder, client, wait_until};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";

/// `[server]` lines: `admin_token` (the operator `admin`), alice who operates, bob who reads.
fn operators(audit: &std::path::Path) -> Vec<String> {
    vec![
        "admin_token = \"admin-token-0123456789\"".into(),
        format!(
            "[[server.admin_tokens]]\nname = \"alice\"\ntoken = \"{ALICE}\"\nrole = \"operate\""
        ),
        format!("[[server.admin_tokens]]\nname = \"bob\"\ntoken = \"{BOB}\"\nrole = \"read\""),
        format!("[audit]\nfile = {:?}", audit.display().to_string()),
    ]
}

fn with_operators(mut builder: GatewayBuilder, audit: &std::path::Path) -> GatewayBuilder {
    for line in operators(audit) {
        builder = builder.server(&line);
    }
    builder
}

async fn as_operator(
    gateway: &Gateway,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client()
        .request(method, gateway.admin_url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

/// A saga whose debit compensation keeps failing: stuck, with its id.
async fn stuck(gateway: &Gateway, a: &Bank, request_id: &str) -> String {
    a.fault(json!({"kind": "fail_before", "path_prefix": "/debit/compensate"}))
        .await;
    let (status, body) = transfer(gateway, "/transfers", request_id, "alice", "nobody", 100).await;
    assert_eq!(status, 202, "{body}");
    let id = body["saga_id"].as_str().unwrap().to_string();
    wait_until(Duration::from_secs(20), "the saga to be stuck", || async {
        gateway.admin_json(&format!("/admin/sagas/{id}")).await["status"] == "stuck"
    })
    .await;
    id
}

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[tokio::test]
async fn each_operator_acts_under_its_name_and_a_read_operator_only_looks() {
    // Proves named tokens identify operators, a `read` operator gets 403 on every change (and
    // the saga is untouched), and every action is in the saga's timeline and the audit stream
    // with the operator's name and reason.
    let (a, b) = banks().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let builder =
        GatewayBuilder::new(transfer_routes(&a, &b, "")).server("request_timeout_ms = 300");
    let gateway = with_operators(builder, &audit).start().await;
    let id = stuck(&gateway, &a, "named-1").await;
    let path = format!("/admin/sagas/{id}");

    let (status, view) = as_operator(&gateway, BOB, Method::GET, &path, None).await;
    assert_eq!((status, view["status"].as_str()), (200, Some("stuck")));
    for (call, body) in [
        ("retry", json!({"reason": "try"})),
        ("resolve", json!({"reason": "done"})),
        ("abort", json!({"reason": "stop"})),
    ] {
        let (status, problem) = as_operator(
            &gateway,
            BOB,
            Method::POST,
            &format!("{path}/{call}"),
            Some(body),
        )
        .await;
        assert_eq!(status, 403, "{call}: {problem}");
        assert_eq!(problem["type"], "urn:txgate:problem:forbidden", "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("`bob`"),
            "{problem}"
        );
    }
    let (status, _) = as_operator(&gateway, BOB, Method::POST, "/admin/reload", None).await;
    assert_eq!(status, 403);
    let (status, _) = as_operator(&gateway, "bob-token-wrong", Method::GET, &path, None).await;
    assert_eq!(status, 401);
    let (_, view) = as_operator(&gateway, BOB, Method::GET, &path, None).await;
    assert_eq!(view["actions"], json!([]), "refused calls record nothing");

    let retry = json!({"reason": "bank A says compensations work again"});
    let (status, asked) = as_operator(
        &gateway,
        ALICE,
        Method::POST,
        &format!("{path}/retry"),
        Some(retry),
    )
    .await;
    assert_eq!(status, 202, "{asked}");
    wait_until(
        Duration::from_secs(10),
        "alice's retry in the timeline",
        || async {
            let view = gateway.admin_json(&path).await;
            view["actions"][0]["operator"] == "alice" && view["actions"][0]["outcome"] == "applied"
        },
    )
    .await;
    let note = json!({"reason": "refunded by hand", "ticket": "INC-7"});
    let (status, view) = as_operator(
        &gateway,
        ALICE,
        Method::POST,
        &format!("{path}/resolve"),
        Some(note),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "compensated");
    let actions = view["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{view}");
    assert_eq!(
        (&actions[0]["action"], &actions[0]["reason"]),
        (
            &json!("retry"),
            &json!("bank A says compensations work again")
        )
    );
    assert_eq!(actions[1]["action"], "resolve");
    assert_eq!(actions[1]["operator"], "alice");
    assert_eq!(actions[1]["reason"], "refunded by hand");
    assert_eq!(actions[1]["note"]["ticket"], "INC-7");
    assert!(actions[1]["at_ms"].as_u64().unwrap() >= actions[0]["at_ms"].as_u64().unwrap());

    wait_until(
        Duration::from_secs(10),
        "the actions in the audit stream",
        || async {
            let lines = audit_lines(&audit);
            let ours = |event: &str| {
                lines.iter().any(|l| {
                    l["event"] == event
                        && l["fields"]["operator"] == "alice"
                        && l["saga_id"] == id.as_str()
                })
            };
            ours("operator.retry") && ours("operator.resolve")
        },
    )
    .await;
}

/// Routes whose credit upstream retries for a long while, so a saga waits there going forward.
fn slow_credit_routes(a: &Bank, credit_url: &str) -> String {
    format!(
        r#"
[upstreams.bank_a]
url = "{a}"
timeout_ms = 1000
max_attempts = 3
backoff_base_ms = 1
backoff_max_ms = 20
[upstreams.bank_b]
url = "{credit_url}"
timeout_ms = 1000
max_attempts = 100
backoff_base_ms = 200
backoff_max_ms = 200
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
[[routes.saga.steps]]
name = "credit"
upstream = "bank_b"
action = "POST /credit"
compensate = "POST /credit/compensate"
"#,
        a = a.base()
    )
}

/// Starts a transfer in the background and waits until the saga is at its credit (the debit
/// applied).
async fn pending_at_credit(
    gateway: &Gateway,
    request_id: &str,
) -> (String, tokio::task::JoinHandle<(u16, Value)>) {
    let (url, rid) = (gateway.url("/transfers"), request_id.to_string());
    let answer = tokio::spawn(async move {
        let response = client()
            .post(url)
            .header("x-request-id", rid)
            .json(&json!({"from": "alice", "to": "carol", "amount": 100}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    });
    let search = format!("/admin/sagas?q={request_id}");
    wait_until(
        Duration::from_secs(20),
        "the saga to be at its credit",
        || async {
            let found = gateway.admin_json(&search).await;
            found["sagas"][0]["stage"] == "Forward(1)"
        },
    )
    .await;
    let found = gateway.admin_json(&search).await;
    let id = found["sagas"][0]["saga_id"].as_str().unwrap().to_string();
    (id, answer)
}

#[tokio::test]
async fn an_abort_compensates_the_steps_that_may_hold_an_effect_and_answers_the_client() {
    // Proves abort needs a reason, stops a saga retrying its credit, compensates the applied
    // debit and the credit whose attempts reached bank B, answers the waiting client 409, and
    // is refused once the saga has finished.
    let (a, b) = banks().await;
    b.fault(json!({"kind": "fail_before", "path_prefix": "/credit"}))
        .await;
    let gateway = GatewayBuilder::new(slow_credit_routes(&a, &b.base()))
        .server("request_timeout_ms = 30000")
        .start()
        .await;
    let (id, answer) = pending_at_credit(&gateway, "abort-1").await;
    wait_until(
        Duration::from_secs(10),
        "a credit to reach bank B",
        || async { b.hits("/credit").await > 0 },
    )
    .await;
    assert_eq!(a.balance("alice").await, 900, "the debit is applied");
    let path = format!("/admin/sagas/{id}/abort");
    let no_reason = gateway.admin(Method::POST, &path).send().await.unwrap();
    assert_eq!(no_reason.status(), 400);
    let aborted = gateway
        .admin(Method::POST, &path)
        .json(&json!({"reason": "customer cancelled by phone"}))
        .send()
        .await
        .unwrap();
    assert_eq!(aborted.status(), 200);
    // Bank B's fault matched its compensation path too: it takes compensations again.
    b.clear_faults().await;
    let view: Value = aborted.json().await.unwrap();
    assert!(
        view["status"] == "compensating" || view["status"] == "compensated",
        "{view}"
    );
    assert_eq!(view["failure"]["cause"], "aborted", "{view}");
    assert_eq!(view["actions"][0]["action"], "abort");
    assert_eq!(view["actions"][0]["operator"], "admin");
    assert_eq!(view["actions"][0]["reason"], "customer cancelled by phone");
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .expect("the client is answered")
        .unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["status"], "compensated", "{body}");
    assert_eq!(a.balance("alice").await, 1000, "the debit is undone");
    assert!(
        b.hits("/credit/compensate").await >= 1,
        "its attempts reached bank B, so it is compensated"
    );
    let credits = b.hits("/credit").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        b.hits("/credit").await,
        credits,
        "no credit is tried after the abort"
    );
    let again = gateway
        .admin(Method::POST, &path)
        .json(&json!({"reason": "twice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn an_abort_leaves_a_step_that_never_reached_its_backend_alone() {
    // Proves a credit whose every attempt was refused before a byte was sent (nothing listens)
    // is not compensated by an abort: only the debit is, and the saga finishes at once.
    let a = Bank::start(&["alice=1000"]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gateway = GatewayBuilder::new(slow_credit_routes(&a, &dead))
        .server("request_timeout_ms = 30000")
        .start()
        .await;
    let (id, answer) = pending_at_credit(&gateway, "abort-2").await;
    let aborted = gateway
        .admin(Method::POST, &format!("/admin/sagas/{id}/abort"))
        .json(&json!({"reason": "bank B is gone"}))
        .send()
        .await
        .unwrap();
    let status = aborted.status();
    assert_eq!(status, 200, "{}", aborted.text().await.unwrap());
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .expect("the client is answered")
        .unwrap();
    assert_eq!(
        (status, body["status"].as_str()),
        (409, Some("compensated")),
        "{body}"
    );
    let view = gateway.admin_json(&format!("/admin/sagas/{id}")).await;
    let compensations: Vec<&Value> = view["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["phase"] == "compensate")
        .collect();
    assert!(
        compensations.iter().all(|a| a["step"] == "debit") && !compensations.is_empty(),
        "{view}"
    );
    assert_eq!(a.balance("alice").await, 1000);
}

#[tokio::test]
async fn a_search_finds_sagas_by_request_id_saga_id_or_client() {
    // Proves `?q=` finds a saga by its X-Request-ID, its id and its client (exactly, through
    // the store's indexes), and nothing for a prefix.
    let (a, b) = banks().await;
    let routes = transfer_routes(&a, &b, "").replace(
        "[routes.saga]\nmode = \"saga\"",
        "[routes.saga]\nmode = \"saga\"\nclient_key = \"header:X-Client-ID\"",
    );
    let gateway = GatewayBuilder::new(routes).start().await;
    let mut ids = Vec::new();
    for (request_id, client_id) in [
        ("order/7", "acme"),
        ("order-8", "acme"),
        ("order-9", "zeta"),
    ] {
        let response = client()
            .post(gateway.url("/transfers"))
            .header("x-request-id", request_id)
            .header("x-client-id", client_id)
            .json(&json!({"from": "alice", "to": "carol", "amount": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        ids.push(body["saga_id"].as_str().unwrap().to_string());
    }
    let found = |q: &str| {
        let path = format!("/admin/sagas?q={q}");
        let gateway = &gateway;
        async move {
            let body = gateway.admin_json(&path).await;
            body["sagas"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["saga_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("order%2F7").await, [ids[0].clone()]);
    assert_eq!(found("acme").await, [ids[1].clone(), ids[0].clone()]);
    assert_eq!(found(&ids[2]).await, [ids[2].clone()]);
    assert!(found("order").await.is_empty());
    assert_eq!(
        found("acme&status=completed&limit=1").await,
        [ids[1].clone()]
    );
    let long = "x".repeat(600);
    let refused = gateway
        .admin(Method::GET, &format!("/admin/sagas?q={long}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn an_abort_through_another_gateway_of_the_fleet_is_taken_by_the_one_running_the_saga() {
    // Proves abort and search work across a fleet: gw2 finds a saga gw1 runs, aborts it with a
    // reason, gw1 (which alone writes the saga) takes the abort between two credit attempts,
    // compensates the debit, answers its client 409, and both show the action in the timeline.
    let (a, b) = banks().await;
    b.fault(json!({"kind": "fail_before", "path_prefix": "/credit"}))
        .await;
    let fleet = Fleet::start(
        2,
        4000,
        &slow_credit_routes(&a, &b.base()),
        &["request_timeout_ms = 30000"],
    )
    .await;
    let (id, answer) = pending_at_credit(fleet.gw(1), "fleet-abort-1").await;
    let found = fleet.gw(2).admin_json("/admin/sagas?q=fleet-abort-1").await;
    assert_eq!(found["sagas"][0]["saga_id"], id.as_str(), "{found}");
    let aborted = fleet
        .gw(2)
        .admin(Method::POST, &format!("/admin/sagas/{id}/abort"))
        .json(&json!({"reason": "duplicate order"}))
        .send()
        .await
        .unwrap();
    assert_eq!(aborted.status(), 200);
    b.clear_faults().await;
    let view: Value = aborted.json().await.unwrap();
    assert_eq!(view["actions"][0]["action"], "abort", "{view}");
    assert_eq!(view["actions"][0]["outcome"], "applied", "{view}");
    assert_eq!(view["actions"][0]["reason"], "duplicate order", "{view}");
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .expect("the client is answered")
        .unwrap();
    assert_eq!(
        (status, body["status"].as_str()),
        (409, Some("compensated")),
        "{body}"
    );
    assert_eq!(a.balance("alice").await, 1000, "the debit is undone");
    let owner = fleet.gw(1).admin_json(&format!("/admin/sagas/{id}")).await;
    assert_eq!(owner["actions"][0]["reason"], "duplicate order", "{owner}");
}

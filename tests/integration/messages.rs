//! Transactional messages (SPEC §9) against real banks: prepare, submit and abort as the service
//! sends them; the back-check after `prepare_timeout_ms`, decided by status code only; delivery
//! to every step, retried until it is taken, across a SIGKILL; a consumer's refusal stuck for
//! an operator; steps delivered at once. The back-check's service is the demo bank's `/echo`,
//! whose status and plain-text body the route's `check` call chooses (`?status=`, `?text=`), and
//! its faults make it answer 425 or 503 first.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Bank, Gateway, GatewayBuilder, client, wait_until};

/// Message routes whose back-check answers `status`: `/msg/<name>` for each.
fn routes(bank: &Bank, orders: &Bank) -> String {
    let mut config = format!(
        "[upstreams.bank]\nurl = \"{}\"\ntimeout_ms = 1000\nmax_attempts = 3\nbackoff_base_ms = 5\nbackoff_max_ms = 100\n\n\
         [upstreams.orders]\nurl = \"{}\"\ntimeout_ms = 1000\nbackoff_base_ms = 5\nbackoff_max_ms = 100\n\n",
        bank.base(),
        orders.base()
    );
    // DTM's trap, both ways: a 200 whose plain-text body says "FAILURE", and a 500 whose body
    // says "SUCCESS".
    for (name, answer) in [
        ("commit", "status=200"),
        ("rollback", "status=409"),
        ("failure_text", "status=200&text=FAILURE"),
        ("odd", "status=500&text=SUCCESS"),
    ] {
        config.push_str(&format!(
            "[[routes]]\nname = \"{name}\"\npath_prefix = \"/msg/{name}\"\n[routes.msg]\n\
             check = \"POST /echo/check-{name}?{answer}\"\ncheck_upstream = \"orders\"\n\
             prepare_timeout_ms = 300\n\
             [[routes.msg.steps]]\nname = \"ledger\"\nupstream = \"bank\"\naction = \"POST /credit\"\nstatus = \"GET /credit/status\"\n\
             [[routes.msg.steps]]\nname = \"notify\"\nupstream = \"orders\"\naction = \"POST /echo/notify-{name}\"\n\n"
        ));
    }
    // Delivered to both steps at once: the first one down does not hold back the second.
    config.push_str(
        "[[routes]]\nname = \"fanout\"\npath_prefix = \"/msg/fanout\"\n[routes.msg]\n\
         check = \"POST /echo/check-fanout\"\ncheck_upstream = \"orders\"\n\
         prepare_timeout_ms = 60000\nparallel = true\n\
         [[routes.msg.steps]]\nname = \"notify\"\nupstream = \"orders\"\naction = \"POST /echo/notify-fanout\"\n\
         [[routes.msg.steps]]\nname = \"ledger\"\nupstream = \"bank\"\naction = \"POST /credit\"\n\n",
    );
    // The orders service's own barrier answers this one's back-check (the bank's `orders.rs`).
    config.push_str(
        "[[routes]]\nname = \"orders\"\npath_prefix = \"/msg/orders\"\n[routes.msg]\n\
         check = \"POST /orders/check\"\ncheck_upstream = \"orders\"\nprepare_timeout_ms = 600\n\
         [[routes.msg.steps]]\nname = \"ledger\"\nupstream = \"bank\"\naction = \"POST /credit\"\n",
    );
    config
}

async fn setup() -> (Gateway, Bank, Bank) {
    let bank = Bank::start(&["carol=1000"]).await;
    let orders = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(routes(&bank, &orders)).start().await;
    (gateway, bank, orders)
}

async fn post(gateway: &Gateway, path: &str, id: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(gateway.url(path))
        .header("x-request-id", id)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The service's `submit` or `abort` of the message `id` on `/msg/<route>`.
async fn tell(gateway: &Gateway, route: &str, id: &str, call: &str) -> (u16, Value) {
    post(
        gateway,
        &format!("/msg/{route}/{id}/{call}"),
        id,
        &json!({}),
    )
    .await
}

/// The message's state as the admin API shows it.
async fn state(gateway: &Gateway, msg_id: &str) -> Value {
    gateway.admin_json(&format!("/admin/sagas/{msg_id}")).await
}

async fn wait_state(gateway: &Gateway, msg_id: &str, want: &str) -> Value {
    wait_until(
        Duration::from_secs(20),
        &format!("message {want}"),
        || async { state(gateway, msg_id).await["msg_state"] == want },
    )
    .await;
    state(gateway, msg_id).await
}

fn credit(amount: i64) -> Value {
    json!({"account": "carol", "amount": amount, "note": "SUCCESS"})
}

#[tokio::test]
async fn a_submitted_message_is_delivered_to_every_step_once() {
    // Proves prepare (201, a repeat the same, another body 422), submit (200, idempotent),
    // delivery to both steps with the backend contract's headers, each applied once, and an
    // abort after the submit refused.
    let (gateway, bank, orders) = setup().await;
    let (status, prepared) = post(&gateway, "/msg/commit", "order-1", &credit(10)).await;
    assert_eq!(status, 201, "{prepared}");
    assert_eq!(prepared["status"], "prepared");
    let msg_id = prepared["msg_id"].as_str().unwrap().to_string();
    let (status, again) = post(&gateway, "/msg/commit", "order-1", &credit(10)).await;
    assert_eq!((status, &again["msg_id"]), (201, &prepared["msg_id"]));
    let (status, other) = post(&gateway, "/msg/commit", "order-1", &credit(99)).await;
    assert_eq!(status, 422, "{other}");
    let (status, submitted) = tell(&gateway, "commit", "order-1", "submit").await;
    assert_eq!(status, 200, "{submitted}");
    let shown = wait_state(&gateway, &msg_id, "delivered").await;
    assert_eq!(shown["mode"], "msg");
    assert_eq!(shown["status"], "completed");
    assert_eq!(
        shown["plan"][0]["undo"],
        Value::Null,
        "a message is never undone"
    );
    let (status, repeat) = tell(&gateway, "commit", "order-1", "submit").await;
    assert_eq!((status, &repeat["status"]), (200, &json!("delivered")));
    let (status, late) = tell(&gateway, "commit", "order-1", "abort").await;
    assert_eq!(status, 409, "{late}");
    assert_eq!(bank.balance("carol").await, 1010, "the credit applied once");
    assert_eq!(bank.hits("/credit").await, 1);
    assert_eq!(orders.hits("/echo/notify-commit").await, 1);
    assert_eq!(
        orders.hits("/echo/check-commit").await,
        0,
        "no back-check after a submit"
    );
    let sent = bank.requests("/credit").await;
    assert_eq!(sent[0]["headers"]["x-saga-id"], json!(msg_id));
    assert_eq!(sent[0]["headers"]["x-saga-step"], "ledger");
    let key = sent[0]["headers"]["idempotency-key"].as_str().unwrap();
    assert!(key.starts_with("txgate-"), "{key}");
}

#[tokio::test]
async fn an_aborted_message_is_never_delivered_and_a_submit_after_it_is_refused() {
    // Proves abort (200, idempotent), a submit after it (409), and nothing sent: no delivery,
    // and no back-check once the prepare timeout has passed.
    let (gateway, bank, orders) = setup().await;
    let (_, prepared) = post(&gateway, "/msg/commit", "order-2", &credit(10)).await;
    let msg_id = prepared["msg_id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let (status, aborted) = tell(&gateway, "commit", "order-2", "abort").await;
        assert_eq!(
            (status, &aborted["status"]),
            (200, &json!("aborted")),
            "{aborted}"
        );
    }
    let (status, refused) = tell(&gateway, "commit", "order-2", "submit").await;
    assert_eq!(status, 409, "{refused}");
    let (status, unknown) = tell(&gateway, "commit", "nobody", "submit").await;
    assert_eq!(status, 404, "{unknown}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(state(&gateway, &msg_id).await["msg_state"], "aborted");
    assert_eq!(bank.hits("/credit").await, 0);
    assert_eq!(
        orders.total_hits().await,
        0,
        "no back-check, no notification"
    );
}

#[tokio::test]
async fn the_back_check_decides_by_status_code_only() {
    // Proves a message its service never submitted is delivered when the back-check answers
    // 200 (even with "FAILURE" as its plain-text body), rolled back on 409, asked again on 425,
    // and kept prepared (asked again, counted) on a 500 whose plain-text body says "SUCCESS".
    let (gateway, bank, orders) = setup().await;
    for (path, status, text) in [
        ("/echo/x?status=200&text=FAILURE", 200, "FAILURE"),
        ("/echo/x?status=500&text=SUCCESS", 500, "SUCCESS"),
    ] {
        let answer = client().post(orders.url(path)).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), status);
        assert_eq!(answer.headers()["content-type"], "text/plain");
        assert_eq!(
            answer.text().await.unwrap(),
            text,
            "the answers the checks get"
        );
    }
    orders
        .fault(json!({"kind": "fail_before", "path_prefix": "/echo/check-commit", "status": 425, "count": 2}))
        .await;
    let (_, committed) = post(&gateway, "/msg/commit", "order-3", &credit(5)).await;
    let (_, rolled_back) = post(&gateway, "/msg/rollback", "order-4", &credit(7)).await;
    let (_, odd) = post(&gateway, "/msg/odd", "order-5", &credit(9)).await;
    let (_, failure_text) = post(&gateway, "/msg/failure_text", "order-5b", &credit(20)).await;
    let id = |v: &Value| v["msg_id"].as_str().unwrap().to_string();
    wait_state(&gateway, &id(&committed), "delivered").await;
    wait_state(&gateway, &id(&rolled_back), "aborted").await;
    wait_state(&gateway, &id(&failure_text), "delivered").await;
    assert_eq!(
        orders.hits("/echo/check-commit").await,
        3,
        "425 twice, then 200"
    );
    assert_eq!(orders.hits("/echo/check-failure_text").await, 1);
    wait_until(
        Duration::from_secs(20),
        "the odd back-check asked again",
        || async {
            gateway
                .metric("txgate_message_checks_total{route=\"odd\",outcome=\"other\"}")
                .await
                >= 3.0
        },
    )
    .await;
    assert_eq!(state(&gateway, &id(&odd)).await["msg_state"], "prepared");
    assert_eq!(
        gateway
            .metric("txgate_message_checks_total{route=\"commit\",outcome=\"running\"}")
            .await,
        2.0
    );
    assert_eq!(
        gateway
            .metric("txgate_message_checks_total{route=\"failure_text\",outcome=\"committed\"}")
            .await,
        1.0
    );
    assert_eq!(
        bank.balance("carol").await,
        1025,
        "only the two committed messages"
    );
    assert_eq!(orders.hits("/echo/notify-rollback").await, 0);
    assert_eq!(orders.hits("/echo/notify-odd").await, 0);
    let (status, _) = tell(&gateway, "odd", "order-5", "abort").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn steps_delivered_at_once_do_not_wait_for_each_other_across_a_sigkill() {
    // Proves `parallel = true`: while the first step's consumer is down, the second takes the
    // message; the gateway killed then resends only the step still to take it, and the message
    // is delivered with each step applied once.
    let (mut gateway, bank, orders) = setup().await;
    orders
        .fault(json!({"kind": "fail_before", "path_prefix": "/echo/notify-fanout", "count": 1000}))
        .await;
    let (_, prepared) = post(&gateway, "/msg/fanout", "order-20", &credit(6)).await;
    let msg_id = prepared["msg_id"].as_str().unwrap().to_string();
    let (status, _) = tell(&gateway, "fanout", "order-20", "submit").await;
    assert_eq!(status, 200);
    wait_until(Duration::from_secs(10), "the second step taken", || async {
        bank.balance("carol").await == 1006
    })
    .await;
    // The step that took it is on disk once the next refusal of the other one is.
    wait_until(Duration::from_secs(10), "the second step saved", || async {
        state(&gateway, &msg_id).await["steps"][1]["status"] == 200
    })
    .await;
    let shown = state(&gateway, &msg_id).await;
    assert_eq!(shown["msg_state"], "submitted", "{shown}");
    let refused = orders.hits("/echo/notify-fanout").await;
    assert!(refused >= 1);
    gateway.kill9();
    orders.clear_faults().await;
    gateway.restart().await;
    wait_state(&gateway, &msg_id, "delivered").await;
    assert_eq!(
        bank.hits("/credit").await,
        1,
        "the step that took it is not sent again"
    );
    assert_eq!(bank.balance("carol").await, 1006);
    assert!(
        orders.hits("/echo/notify-fanout").await > refused,
        "the step still to take it was sent again after the restart"
    );
    let shown = state(&gateway, &msg_id).await;
    assert_eq!(shown["status"], "completed", "{shown}");
}

#[tokio::test]
async fn a_consumer_down_gets_the_message_once_it_is_back_and_one_that_refuses_is_stuck() {
    // Proves delivery is retried until the consumer takes it (applied once), and that a 4xx
    // makes the message stuck, shown in the admin API, without touching the other message.
    let (gateway, bank, _orders) = setup().await;
    bank.fault(json!({"kind": "fail_before", "path_prefix": "/credit", "count": 8}))
        .await;
    let (_, down) = post(&gateway, "/msg/commit", "order-6", &credit(3)).await;
    tell(&gateway, "commit", "order-6", "submit").await;
    wait_state(&gateway, down["msg_id"].as_str().unwrap(), "delivered").await;
    assert_eq!(bank.balance("carol").await, 1003);
    assert_eq!(bank.hits("/credit").await, 9, "8 failures, then taken once");
    let deliveries = |outcome: &str| {
        format!("txgate_message_deliveries_total{{route=\"commit\",outcome=\"{outcome}\"}}")
    };
    assert_eq!(gateway.metric(&deliveries("retried")).await, 8.0);
    assert_eq!(
        gateway.metric(&deliveries("taken")).await,
        2.0,
        "ledger and notify"
    );

    let refused = json!({"account": "nobody", "amount": 1});
    let (_, stuck) = post(&gateway, "/msg/commit", "order-7", &refused).await;
    tell(&gateway, "commit", "order-7", "submit").await;
    let shown = wait_state(&gateway, stuck["msg_id"].as_str().unwrap(), "stuck").await;
    assert_eq!(shown["status"], "stuck");
    assert_eq!(shown["failure"]["step"], "ledger");
    assert!(gateway.metric(&deliveries("refused")).await >= 1.0);
    let listed = gateway.admin_json("/admin/sagas?status=stuck").await;
    assert_eq!(listed["sagas"][0]["request_id"], "order-7");
}

#[tokio::test]
async fn a_gateway_killed_mid_delivery_delivers_after_its_restart_once() {
    // Proves a submitted message survives SIGKILL during its delivery: after the restart it is
    // delivered, and the consumer applied it once (the same Idempotency-Key).
    let (mut gateway, bank, _orders) = setup().await;
    bank.fault(json!({"kind": "latency", "path_prefix": "/credit", "latency_ms": 800, "count": 1}))
        .await;
    let (_, prepared) = post(&gateway, "/msg/commit", "order-8", &credit(4)).await;
    tell(&gateway, "commit", "order-8", "submit").await;
    wait_until(Duration::from_secs(10), "the credit in flight", || async {
        bank.hits("/credit").await >= 1
    })
    .await;
    gateway.kill9();
    gateway.restart().await;
    wait_state(&gateway, prepared["msg_id"].as_str().unwrap(), "delivered").await;
    assert_eq!(bank.balance("carol").await, 1004, "applied once");
}

#[tokio::test]
async fn reconcile_finds_a_delivered_message_its_consumer_lost() {
    // Proves reconcile checks messages like sagas: the consumer that acknowledged a delivery and
    // lost it is a `message_not_delivered`; the aborted message and the one delivered agree.
    let (gateway, bank, _orders) = setup().await;
    bank.fault(json!({"kind": "ack", "path_prefix": "/credit", "count": 1}))
        .await;
    let (_, lost) = post(&gateway, "/msg/commit", "order-9", &credit(2)).await;
    tell(&gateway, "commit", "order-9", "submit").await;
    wait_state(&gateway, lost["msg_id"].as_str().unwrap(), "delivered").await;
    let (_, kept) = post(&gateway, "/msg/commit", "order-10", &credit(3)).await;
    tell(&gateway, "commit", "order-10", "submit").await;
    wait_state(&gateway, kept["msg_id"].as_str().unwrap(), "delivered").await;
    post(&gateway, "/msg/commit", "order-11", &credit(4)).await;
    tell(&gateway, "commit", "order-11", "abort").await;
    let run = crate::reconcile::reconcile(
        gateway.config_path(),
        &["--since", "1h", "--format", "jsonl"],
    );
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert_eq!(lines[0]["category"], "message_not_delivered");
    assert_eq!(lines[0]["request_id"], "order-9");
    assert_eq!(lines[0]["step"], "ledger");
    assert!(run.stderr.contains("3 finished sagas"), "{}", run.stderr);
}

#[tokio::test]
async fn the_services_barrier_decides_for_a_service_that_crashed_before_its_submit() {
    // Proves, against the orders service's barrier in SQLite: an order committed whose service
    // never submitted is delivered by the back-check; one that never committed (rolled back) is
    // aborted and never delivered; and a back-check meeting a transaction still open gets 425,
    // asks again, and delivers once it commits. The rolled-back order can no longer commit.
    let (gateway, bank, orders) = setup().await;
    let commit = |id: &str, hold_ms: u64| {
        client()
            .post(orders.url(&format!("/orders/{id}/commit?hold_ms={hold_ms}")))
            .send()
    };
    // order-c1 commits, and its service crashes before the submit.
    let (_, crashed) = post(&gateway, "/msg/orders", "order-c1", &credit(10)).await;
    assert_eq!(commit("order-c1", 0).await.unwrap().status(), 200);
    // order-o1's transaction is still open when its back-check comes; order-r1 never commits.
    let (_, open) = post(&gateway, "/msg/orders", "order-o1", &credit(30)).await;
    let holding = tokio::spawn(commit("order-o1", 1500));
    let (_, rolled_back) = post(&gateway, "/msg/orders", "order-r1", &credit(20)).await;
    let id = |v: &Value| v["msg_id"].as_str().unwrap().to_string();
    wait_state(&gateway, &id(&crashed), "delivered").await;
    wait_state(&gateway, &id(&rolled_back), "aborted").await;
    assert_eq!(
        commit("order-r1", 0).await.unwrap().status(),
        409,
        "the back-check's row bars the late commit"
    );
    assert_eq!(holding.await.unwrap().unwrap().status(), 200);
    wait_state(&gateway, &id(&open), "delivered").await;
    assert!(
        gateway
            .metric("txgate_message_checks_total{route=\"orders\",outcome=\"running\"}")
            .await
            >= 1.0,
        "the open transaction was met with 425"
    );
    assert_eq!(
        bank.balance("carol").await,
        1040,
        "order-c1 and order-o1, once each"
    );
}

#[tokio::test]
async fn a_consumer_down_for_thirty_seconds_gets_the_message_once_it_is_back() {
    // Proves the delivery outlasts an outage: every connection to the consumer dropped for 30 s,
    // then the message is delivered, once (retried with capped backoff all along).
    let (gateway, bank, _orders) = setup().await;
    bank.fault(json!({"kind": "drop", "path_prefix": "/credit"}))
        .await;
    let (_, prepared) = post(&gateway, "/msg/commit", "order-12", &credit(6)).await;
    tell(&gateway, "commit", "order-12", "submit").await;
    let down = std::time::Instant::now();
    wait_until(Duration::from_secs(20), "the delivery retried", || async {
        bank.hits("/credit").await >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    let msg_id = prepared["msg_id"].as_str().unwrap();
    assert_eq!(state(&gateway, msg_id).await["msg_state"], "submitted");
    bank.clear_faults().await;
    wait_state(&gateway, msg_id, "delivered").await;
    assert_eq!(bank.balance("carol").await, 1006, "applied once");
    let tried = bank.hits("/credit").await;
    assert!(tried > 10, "retried through the outage: {tried}");
}

//! Decisions the gateway reuses (`decisions.reuse`), with a test plugin that counts its own calls
//! (`tests/programs/reuser`): a request with the same `x-key` on the same route gets an earlier
//! call's edits without a call; another key, another route, a call that answered or emitted an
//! audit event, and a reload all make the plugin decide again. The same for `on-response`
//! changes declared reusable (`decisions.reuse-response`), except those with a new body.

use serde_json::Value;

use crate::support::{Bank, Gateway, GatewayBuilder, client};
use crate::wasm;

const CALLS: &str = "txgate_plugin_calls_total{plugin=\"reuser\",hook=\"on-request\"}";
const REUSED: &str = "txgate_plugin_decisions_reused_total{plugin=\"reuser\",hook=\"on-request\"}";

fn config(bank: &Bank) -> String {
    let mut config = format!(
        "[upstreams.bank]\nurl = \"{}\"\n[plugins.reuser]\nmodule = \"{}\"\nstate = \"volatile\"\n",
        bank.base(),
        wasm::REUSER
    );
    for route in ["one", "two"] {
        config += &format!(
            "[[routes]]\nname = \"{route}\"\npath_prefix = \"/{route}/\"\nstrip_prefix = true\n\
             upstream = \"bank\"\nplugins = [\"reuser\"]\n"
        );
    }
    config
}

/// The status and the `x-decided` the upstream saw (or the plugin answered with), and what the
/// upstream saw of `x-reuse-refused`.
async fn send(gateway: &Gateway, route: &str, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let mut request = client().get(gateway.url(&format!("/{route}/echo/r")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        let decided = response.headers()["x-decided"]
            .to_str()
            .unwrap()
            .to_string();
        return (status, decided, Value::Null);
    }
    let body: Value = response.json().await.unwrap();
    let headers = body["headers"].clone();
    let decided = headers["x-decided"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, decided, headers)
}

#[tokio::test]
async fn only_the_same_header_values_on_the_same_route_reuse_a_decision() {
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(config(&bank)).start().await;
    let (_, first, _) = send(&gateway, "one", &[("x-key", "a")]).await;
    let (_, again, _) = send(&gateway, "one", &[("x-key", "a"), ("x-other", "1")]).await;
    assert_eq!(first, again, "the same x-key: the first call's edits");
    assert_eq!(gateway.metric(CALLS).await, 1.0);
    assert_eq!(gateway.metric(REUSED).await, 1.0);

    let (_, other_key, _) = send(&gateway, "one", &[("x-key", "b")]).await;
    let (_, no_key, _) = send(&gateway, "one", &[]).await;
    let (_, other_route, _) = send(&gateway, "two", &[("x-key", "a")]).await;
    let (_, both, _) = send(&gateway, "one", &[("x-key", "a"), ("x-key", "b")]).await;
    let decided = [&first, &other_key, &no_key, &other_route, &both];
    let mut distinct: Vec<&String> = decided.to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "each decided by a call: {decided:?}");
    assert_eq!(gateway.metric(CALLS).await, 5.0);

    // Reload: the new version starts with nothing remembered.
    let (status, body) = gateway.reload().await;
    assert_eq!(status, 200, "{body}");
    let (_, after, _) = send(&gateway, "one", &[("x-key", "a")]).await;
    assert_ne!(after, first, "a reload forgets the decision");
}

#[tokio::test]
async fn a_call_that_answered_or_emitted_an_event_is_never_reused() {
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(config(&bank)).start().await;
    let answered = [("x-key", "k"), ("x-answer", "1")];
    let (status, one, _) = send(&gateway, "one", &answered).await;
    let (_, two, _) = send(&gateway, "one", &answered).await;
    assert_eq!(status, 403);
    assert_ne!(one, two, "an answer is decided afresh");

    let emitting = [("x-key", "e"), ("x-emit", "1")];
    let (_, one, _) = send(&gateway, "one", &emitting).await;
    let (_, two, _) = send(&gateway, "one", &emitting).await;
    assert_ne!(one, two, "a call that emitted is decided afresh");
    let events = "txgate_audit_events_total{plugin=\"reuser\",event=\"decided\"}";
    assert_eq!(gateway.metric(events).await, 2.0, "every event written");
    assert_eq!(gateway.metric(REUSED).await, 0.0);

    let (_, _, seen) = send(&gateway, "one", &[("x-bad-vary", "1")]).await;
    let refused = seen["x-reuse-refused"][0].as_str().unwrap();
    assert!(refused.contains("lower-case header names"), "{refused}");
}

const RESPONSES: &str = "txgate_plugin_calls_total{plugin=\"reuser\",hook=\"on-response\"}";
const RESPONSES_REUSED: &str =
    "txgate_plugin_decisions_reused_total{plugin=\"reuser\",hook=\"on-response\"}";

/// The `x-responded` the client got, and the body.
async fn responded(gateway: &Gateway, route: &str, headers: &[(&str, &str)]) -> (String, String) {
    let mut request = client().get(gateway.url(&format!("/{route}/echo/r")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let responded = response.headers()["x-responded"]
        .to_str()
        .unwrap()
        .to_string();
    let length: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.text().await.unwrap();
    assert_eq!(length, body.len(), "the length is the body's");
    (responded, body)
}

#[tokio::test]
async fn response_changes_declared_reusable_are_given_again_without_a_call() {
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(config(&bank)).start().await;
    let (first, _) = responded(&gateway, "one", &[("x-key", "a")]).await;
    let (again, body) = responded(&gateway, "one", &[("x-key", "a")]).await;
    assert_eq!(first, again, "the same x-key: the first call's changes");
    let echoed: Value = serde_json::from_str(&body).expect("the upstream's body, untouched");
    assert_eq!(echoed["headers"]["x-key"][0], "a");
    assert_eq!(gateway.metric(RESPONSES).await, 1.0);
    assert_eq!(gateway.metric(RESPONSES_REUSED).await, 1.0);

    let (other_key, _) = responded(&gateway, "one", &[("x-key", "b")]).await;
    let (other_route, _) = responded(&gateway, "two", &[("x-key", "a")]).await;
    assert_ne!(other_key, first, "another key is decided by a call");
    assert_ne!(other_route, first, "another route is decided by a call");
    assert_ne!(other_key, other_route);

    // A new body is never remembered, even with the same key.
    let with_body = [("x-key", "c"), ("x-body", "1")];
    let (one, one_body) = responded(&gateway, "one", &with_body).await;
    let (two, two_body) = responded(&gateway, "one", &with_body).await;
    assert_ne!(one, two, "a change with a body is decided afresh");
    assert_eq!(one_body, format!("response {one}"));
    assert_eq!(two_body, format!("response {two}"));
    // Nor is one that emitted an audit event (emitted again on every request).
    let emitting = [("x-key", "e"), ("x-emit", "1")];
    let (one, _) = responded(&gateway, "one", &emitting).await;
    let (two, _) = responded(&gateway, "one", &emitting).await;
    assert_ne!(one, two, "a call that emitted is decided afresh");
    let events = "txgate_audit_events_total{plugin=\"reuser\",event=\"responded\"}";
    assert_eq!(gateway.metric(events).await, 2.0, "every event written");
    assert_eq!(gateway.metric(RESPONSES).await, 7.0);
    assert_eq!(gateway.metric(RESPONSES_REUSED).await, 1.0);

    let (status, body) = gateway.reload().await;
    assert_eq!(status, 200, "{body}");
    let (after, _) = responded(&gateway, "one", &[("x-key", "a")]).await;
    assert_ne!(after, first, "a reload forgets the changes");
}

#[tokio::test]
async fn an_operator_who_turns_reuse_off_gets_a_call_for_every_request() {
    let bank = Bank::start(&[]).await;
    let config = config(&bank).replace(
        "state = \"volatile\"\n",
        "state = \"volatile\"\nreuse_decisions = false\n",
    );
    let gateway = GatewayBuilder::new(config).start().await;
    let (_, one, _) = send(&gateway, "one", &[("x-key", "a")]).await;
    let (_, two, _) = send(&gateway, "one", &[("x-key", "a")]).await;
    assert_ne!(one, two, "every on-request decided by a call");
    let (first, _) = responded(&gateway, "one", &[("x-key", "a")]).await;
    let (again, _) = responded(&gateway, "one", &[("x-key", "a")]).await;
    assert_ne!(first, again, "every on-response change made by a call");
    assert_eq!(gateway.metric(CALLS).await, 4.0);
    assert_eq!(gateway.metric(RESPONSES).await, 4.0);
    assert_eq!(gateway.metric(REUSED).await, 0.0);
    assert_eq!(gateway.metric(RESPONSES_REUSED).await, 0.0);
}

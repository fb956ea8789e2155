//! The plugin against the SDK's fake host: what one request's event holds.

use super::*;
use txgate_plugin_sdk::Response;
use txgate_plugin_sdk::serde_json::json;
use txgate_plugin_sdk::testing::Harness;

fn transfer() -> Request<'static> {
    Request::new("POST", "/transfers")
        .with_route("transfers")
        .with_header("x-request-id", "r-1")
        .with_header("x-user-id", "alice")
        .with_header("x-tenant", "acme")
        .with_body(r#"{"amount": 125, "to": {"iban": "DE89"}, "tags": ["a", "b"]}"#)
        .with_elapsed_ms(42)
}

/// Runs `on-response` once; returns the one event it must have emitted, and the response.
fn audit(host: &Harness, request: Request<'static>, response: Response) -> (Value, Response) {
    let out = host.on_response::<Audit>(request, response).unwrap();
    let events = host.audit_events();
    assert_eq!(events.len(), 1, "exactly one event per request: {events:?}");
    let (name, fields) = events.into_iter().next().unwrap();
    assert_eq!(name, EVENT);
    (fields, out)
}

#[test]
fn a_plain_request_gets_the_standard_fields_and_an_untouched_response() {
    let host = Harness::new();
    let response = Response::new(201)
        .with_header("x-upstream", "1")
        .with_body("done");
    let (fields, out) = audit(&host, transfer(), response.clone());
    assert_eq!(
        fields,
        json!({
            "route": "transfers", "method": "POST", "status": 201, "latency_ms": 42,
            "client": null, "claims": {}, "saga_id": null, "outcome": null,
        })
    );
    assert_eq!(out, response, "the plugin only looks");
}

#[test]
fn a_saga_request_gets_its_saga_id_outcome_and_client() {
    let host = Harness::new();
    let request = transfer()
        .on_saga_route()
        .with_client("acme")
        .with_saga_id("s-9");
    let answer = json!({"saga_id": "s-9", "status": "compensated", "steps": [{"name": "debit"}]});
    let response = Response::json(409, &answer);
    let (fields, _) = audit(&host, request, response);
    assert_eq!(fields["saga_id"], "s-9");
    assert_eq!(fields["outcome"], "compensated");
    assert_eq!(fields["client"], "acme");
    assert_eq!(fields["status"], 409);
}

#[test]
fn no_outcome_when_the_response_is_not_a_saga_answer() {
    let request = || transfer().on_saga_route().with_saga_id("s-9");
    let problem = Response::problem(503, "plugin-failed", "Plugin failed", "x", "r-1");
    for response in [problem, Response::new(200).with_body("not json")] {
        let host = Harness::new();
        let (fields, _) = audit(&host, request(), response);
        assert_eq!(fields["saga_id"], "s-9");
        assert_eq!(fields["outcome"], Value::Null, "{fields}");
    }
    let host = Harness::new();
    let before_the_saga = transfer().on_saga_route();
    let (fields, _) = audit(
        &host,
        before_the_saga,
        Response::json(200, &json!({"status": "x"})),
    );
    assert_eq!(fields["outcome"], Value::Null, "no saga ran, so no outcome");
}

#[test]
fn claims_come_from_the_configured_headers() {
    let host =
        Harness::new().with_config(json!({"claims": {"sub": "X-User-ID", "org": "x-org-id"}}));
    let (fields, _) = audit(&host, transfer(), Response::new(200));
    assert_eq!(fields["claims"], json!({"sub": "alice", "org": null}));
}

#[test]
fn extra_fields_come_from_headers_and_body_paths() {
    let host = Harness::new().with_config(json!({"fields": {
        "amount": "$.amount", "iban": "$.to.iban", "tag": "$.tags[1]", "to": "$.to",
        "tenant": "header:X-Tenant", "absent": "$.nope", "no_header": "header:x-nope",
    }}));
    let (fields, _) = audit(&host, transfer(), Response::new(200));
    assert_eq!(fields["amount"], 125);
    assert_eq!(fields["iban"], "DE89");
    assert_eq!(fields["tag"], "b");
    assert_eq!(fields["to"], json!({"iban": "DE89"}));
    assert_eq!(fields["tenant"], "acme");
    assert_eq!(fields["absent"], Value::Null);
    assert_eq!(fields["no_header"], Value::Null);
    let names: Vec<&String> = fields.as_object().unwrap().keys().collect();
    assert_eq!(
        names.len(),
        settings::STANDARD_FIELDS.len() + 7,
        "{names:?}"
    );
}

#[test]
fn a_body_that_is_not_json_gives_null_to_body_fields_only() {
    let host = Harness::new()
        .with_config(json!({"fields": {"amount": "$.amount", "tenant": "header:x-tenant"}}));
    let request = transfer().with_body("amount=125");
    let (fields, _) = audit(&host, request, Response::new(200));
    assert_eq!(fields["amount"], Value::Null);
    assert_eq!(fields["tenant"], "acme");
}

#[test]
fn long_values_are_cut_to_one_kib() {
    let host = Harness::new().with_config(json!({"fields": {"note": "$.note", "h": "header:x-h"}}));
    let long = "n".repeat(5000);
    let request = transfer()
        .with_header("x-h", &long)
        .with_body(json!({"note": long}).to_string());
    let (fields, _) = audit(&host, request, Response::new(200));
    for name in ["note", "h"] {
        let text = fields[name].as_str().unwrap();
        assert!(long.starts_with(text));
        assert_eq!(fields[name].to_string().len(), value::VALUE_BYTES_MAX);
    }
}

#[test]
fn the_largest_possible_event_fits_the_gateway_limit() {
    let name = |i: usize| format!("{i}{}", "n".repeat(settings::NAME_BYTES_MAX - 1));
    let huge = "\u{1}".repeat(4 * value::VALUE_BYTES_MAX);
    let claims: Map<String, Value> = (0..settings::ENTRIES_MAX / 2)
        .map(|i| (name(i), Value::from(format!("x-c{i}"))))
        .collect();
    let fields: Map<String, Value> = (settings::ENTRIES_MAX / 2..settings::ENTRIES_MAX)
        .map(|i| (name(i), Value::from(format!("header:x-c{i}"))))
        .collect();
    let host = Harness::new().with_config(json!({"claims": claims, "fields": fields}));
    let mut request = Request::new(&huge, "/")
        .with_route(&huge)
        .with_client(&huge)
        .with_saga_id(&huge)
        .with_elapsed_ms(u64::MAX);
    for i in 0..settings::ENTRIES_MAX {
        request = request.with_header(&format!("x-c{i}"), &huge);
    }
    let response = Response::json(599, &json!({"status": huge}));
    let (fields, _) = audit(&host, request, response);
    let size = fields.to_string().len();
    assert!(size <= audit::FIELDS_BYTES_MAX, "{size} bytes");
    assert!(
        size > audit::FIELDS_BYTES_MAX / 2,
        "{size}: the values were really large"
    );
}

#[test]
fn a_config_mistake_is_logged_naming_its_key_and_refuses_to_load() {
    let host = Harness::new().with_config(json!({"fields": {"amount": "body.amount"}}));
    let loading = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        host.calls::<Audit>(Hook::OnResponse)
    }));
    assert!(
        loading.is_err(),
        "hooks() must trap, so the gateway refuses the config"
    );
    let logged = host.logs();
    assert!(
        logged.iter().any(|(level, m)| *level == log::Level::Error
            && m.contains("fields.amount")
            && m.contains("body.amount")),
        "{logged:?}"
    );
}

#[test]
fn only_on_response_is_called() {
    let host = Harness::new();
    for hook in [
        Hook::OnRequest,
        Hook::OnStepRequest,
        Hook::OnStepResponse,
        Hook::OnCompensate,
    ] {
        assert!(!host.calls::<Audit>(hook), "{hook:?}");
    }
}

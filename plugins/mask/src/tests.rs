//! The plugin through the SDK's test harness: config in, response in, response out, as the
//! gateway would call it.

use std::panic::AssertUnwindSafe;

use txgate_plugin_sdk::log::Level;
use txgate_plugin_sdk::serde_json::{self, Value, json};
use txgate_plugin_sdk::testing::Harness;
use txgate_plugin_sdk::{Hook, Request, Response};

use super::MaskPlugin;

const ACCOUNT: &str = r#"{"owner":{"name":"Alice","email":"alice@example.com","phone":"+49 151 12345678"},"iban":"DE89370400440532013000","pin":1234,"number":4111111111111111,"cards":[{"pan":"4111111111111111","cvv":"123"},{"pan":"5500000000000004","cvv":"456"}],"note":"paid with 4111111111111111","ok":true}"#;

fn answered(config: Value, body: &str) -> Response {
    let upstream = Response::new(200)
        .with_header("content-type", "application/json")
        .with_header("x-upstream", "bank")
        .with_body(body.to_string());
    Harness::new()
        .with_config(config)
        .on_response::<MaskPlugin>(
            Request::new("GET", "/accounts/1").with_header("x-request-id", "r-1"),
            upstream,
        )
        .unwrap()
}

fn body_of(response: &Response) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

#[test]
fn every_masker_changes_only_its_values() {
    let config = json!({"rules": [
        {"path": "$.owner.email", "mask": "email"},
        {"path": "$.owner.phone", "mask": "phone"},
        {"path": "$.iban", "mask": "keep_last"},
        {"path": "$.pin", "mask": "redact"},
        {"path": "$.number", "mask": "keep_last", "keep": 2},
        {"path": "$.cards[*].cvv", "mask": "redact"},
        {"path": "$.cards[0].pan", "mask": "keep_last"},
    ]});
    let response = answered(config, ACCOUNT);
    assert_eq!(
        std::str::from_utf8(&response.body).unwrap(),
        r#"{"owner":{"name":"Alice","email":"a***@example.com","phone":"+** *** ******78"},"iban":"******************3000","pin":"[redacted]","number":"**************11","cards":[{"pan":"************1111","cvv":"[redacted]"},{"pan":"5500000000000004","cvv":"[redacted]"}],"note":"paid with 4111111111111111","ok":true}"#
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-upstream"), Some("bank"));
    assert_eq!(response.header("content-type"), Some("application/json"));
}

#[test]
fn recursive_descent_and_wildcards_reach_every_depth() {
    let config = json!({"rules": [
        {"path": "$..pan", "mask": "keep_last"},
        {"path": "$.owner[*]", "mask": "keep_last", "keep": 1},
    ]});
    let body = body_of(&answered(config, ACCOUNT));
    assert_eq!(body["cards"][0]["pan"], "************1111");
    assert_eq!(body["cards"][1]["pan"], "************0004");
    assert_eq!(body["owner"]["name"], "****e");
    assert_eq!(body["owner"]["email"], "****************m");
    assert_eq!(body["note"], "paid with 4111111111111111");
}

#[test]
fn luhn_scan_masks_card_numbers_in_strings_when_asked() {
    let body = r#"{"note":"paid with 4111111111111111, ref 4111111111111112"}"#;
    let scanned = answered(json!({"luhn_scan": true}), body);
    assert_eq!(
        body_of(&scanned)["note"],
        "paid with ************1111, ref 4111111111111112"
    );
    let plain = answered(json!({"rules": [{"path": "$.x", "mask": "redact"}]}), body);
    assert_eq!(plain.body, body.as_bytes());
}

#[test]
fn a_body_that_is_not_json_passes_or_is_refused() {
    let rules = json!([{"path": "$..pan", "mask": "redact"}]);
    let passed = answered(json!({ "rules": rules }), "pan=4111111111111111");
    assert_eq!(passed.status, 200);
    assert_eq!(passed.body, b"pan=4111111111111111");
    let refused = answered(
        json!({ "rules": rules, "non_json": "reject" }),
        "pan=4111111111111111",
    );
    assert_eq!(refused.status, 502);
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    let problem = body_of(&refused);
    assert_eq!(problem["type"], "urn:txgate:problem:response-not-json");
    assert_eq!(problem["status"], 502);
    assert_eq!(problem["request_id"], "r-1");
    // Empty bodies hold nothing to hide.
    let empty = answered(json!({ "rules": rules, "non_json": "reject" }), "");
    assert_eq!(empty.status, 200);
}

#[test]
fn what_cannot_be_masked_is_never_passed() {
    let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
    let refused = answered(json!({"luhn_scan": true}), &deep);
    assert_eq!(refused.status, 502);
    assert_eq!(
        body_of(&refused)["type"],
        "urn:txgate:problem:response-not-maskable"
    );
    let large = format!("[\"{}\"]", "x".repeat(100));
    let refused = answered(json!({"luhn_scan": true, "body_bytes_max": 100}), &large);
    assert_eq!(refused.status, 502);
    assert!(
        body_of(&refused)["detail"]
            .as_str()
            .unwrap()
            .contains("100 bytes")
    );
}

#[test]
fn a_bad_rule_stops_the_load_and_the_log_names_it() {
    let harness = Harness::new().with_config(json!({"rules": [
        {"path": "$.ok", "mask": "redact"},
        {"path": "$.cards[", "mask": "redact"},
    ]}));
    let loaded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        harness.calls::<MaskPlugin>(Hook::OnResponse)
    }));
    assert!(loaded.is_err(), "hooks() must refuse the config");
    let logs = harness.logs();
    assert!(
        logs.iter().any(|(level, message)| *level == Level::Error
            && message.contains("rules[1].path: `[` at character 7 is never closed")),
        "{logs:?}"
    );
    let good = Harness::new().with_config(json!({"rules": [{"path": "$.ok", "mask": "redact"}]}));
    assert!(good.calls::<MaskPlugin>(Hook::OnResponse));
}

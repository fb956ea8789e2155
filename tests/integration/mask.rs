//! The mask plugin, built twice — from Rust (`plugins/mask`) and from Python with
//! componentize-py (`plugins/mask-py`) — and put through one behaviour suite in real gateways,
//! in front of a real document server and real banks: each case below runs against each build,
//! with the same plugin config and the same expected bytes.
//!
//! Each build gets one gateway for the whole suite, its cases run in turn: compiling the
//! CPython component takes the gateway half a minute, so a gateway per case would cost minutes
//! and crowd the machine. The suite prints each case's name before it runs it.

mod fixtures;
mod upstream;
mod wire;
mod world;

use std::time::Duration;

use serde_json::{Value, json};

use crate::sagas::transfer;
use fixtures::{ACCOUNT_MASKED, BAD_PLUGIN, LEDGER_MASKED, NOTES, NOTES_SCANNED, PLUGINS, TEXT};
use wire::Connection;
use world::{Build, World, plugins};

/// Runs each case against `world`, naming it first so a failure says which case it was.
macro_rules! cases {
    ($world:expr, $($case:ident),+ $(,)?) => {
        $(
            eprintln!("mask suite, {:?} build: {}", $world.build, stringify!($case));
            $case(&$world).await;
        )+
    };
}

async fn suite(build: Build) {
    let world = World::start(build).await;
    cases!(
        world,
        every_masker_changes_only_its_values,
        wildcards_and_recursive_descent_reach_every_depth,
        luhn_scan_masks_valid_card_numbers_only_when_on,
        a_body_that_is_not_json_passes_or_gets_502,
        a_saga_answer_is_masked_and_the_books_are_untouched,
        content_length_is_the_masked_length_and_keep_alive_holds,
        a_bad_rule_is_refused_naming_it_and_the_running_config_stays,
    );
}

#[tokio::test]
async fn the_rust_build_passes_the_suite() {
    suite(Build::Rust).await;
}

#[tokio::test]
async fn the_python_build_passes_the_suite() {
    suite(Build::Python).await;
}

async fn every_masker_changes_only_its_values(world: &World) {
    // Proves keep_last, email, phone and redact, a number masked by keep_last becoming a
    // string, [*] and [n], and that every byte not masked comes back as the upstream sent it
    // (same bytes from both builds), with the status and headers kept.
    let response = world.get("/doc/account", "mask-account").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-document"], "/account");
    let body = response.text().await.unwrap();
    assert_eq!(body, ACCOUNT_MASKED);
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert!(parsed["number"].is_string(), "a masked number is a string");
    assert_eq!(parsed["limit"], json!(1.5));
}

async fn wildcards_and_recursive_descent_reach_every_depth(world: &World) {
    // Proves [*] over an object's members, ..name at every depth (an object value redacted
    // whole), and [n] on an array.
    assert_eq!(
        world.text("/doc/ledger").await,
        (200, LEDGER_MASKED.to_string())
    );
}

async fn luhn_scan_masks_valid_card_numbers_only_when_on(world: &World) {
    // Proves the scan masks a Luhn-valid number inside a string and leaves an invalid one and
    // a JSON number; off, nothing changes.
    assert_eq!(
        world.text("/luhn/notes").await,
        (200, NOTES_SCANNED.to_string())
    );
    assert_eq!(world.text("/doc/notes").await, (200, NOTES.to_string()));
}

async fn a_body_that_is_not_json_passes_or_gets_502(world: &World) {
    // Proves a text body passes unchanged by default, and with non_json = "reject" becomes a
    // 502 problem+json, the same bytes from both builds; JSON on that route is still masked.
    let passed = world.get("/doc/text", "mask-text").await;
    assert_eq!(passed.status(), 200);
    assert_eq!(passed.headers()["content-type"], "text/plain");
    assert_eq!(passed.text().await.unwrap(), TEXT);
    let refused = world.get("/reject/text", "mask-reject-1").await;
    assert_eq!(refused.status(), 502);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        refused.text().await.unwrap(),
        r#"{"detail":"the upstream's answer is not JSON, and this route passes only masked JSON","request_id":"mask-reject-1","status":502,"title":"Bad gateway","type":"urn:txgate:problem:response-not-json"}"#
    );
    let json: Value = world
        .get("/reject/account", "mask-reject-2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["cards"][1]["pan"], "************0004");
}

async fn a_saga_answer_is_masked_and_the_books_are_untouched(world: &World) {
    // Proves on-response masks the saga's own answer (each step's upstream body), while the
    // saga completes and the banks hold exactly the transfer: masking is the client's view only.
    let id = format!("mask-saga-{:?}", world.build);
    let (status, answer) = transfer(&world.gateway, "/transfers", &id, "alice", "carol", 10).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "completed");
    assert!(answer["saga_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(answer["steps"][0]["body"]["account"], "***ce");
    assert_eq!(answer["steps"][0]["body"]["applied"], -10);
    assert_eq!(answer["steps"][0]["body"]["balance"], "[redacted]");
    assert_eq!(answer["steps"][1]["body"]["account"], "***ol");
    assert_eq!(answer["steps"][1]["body"]["balance"], "[redacted]");
    assert_eq!(world.a.balance("alice").await, 990);
    assert_eq!(world.b.balance("carol").await, 1010);
    assert_eq!(world.a.hits("/debit").await, 1);
    // A retry gets the same saga's answer, masked the same way; nothing runs again.
    let (again_status, again) =
        transfer(&world.gateway, "/transfers", &id, "alice", "carol", 10).await;
    assert_eq!((again_status, &again), (200, &answer));
    assert_eq!(world.a.hits("/debit").await, 1);
}

async fn content_length_is_the_masked_length_and_keep_alive_holds(world: &World) {
    // Proves the client's Content-Length is the masked body's length on a plain route and on a
    // saga route, and that the connection carries the next request after each.
    let mut connection = Connection::open(world.gateway.port).await;
    let plain = connection
        .send(
            "GET",
            "/doc/account",
            &[("x-request-id", "mask-wire-1")],
            "",
        )
        .await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.text(), ACCOUNT_MASKED);
    assert_eq!(
        plain.header("content-length"),
        Some(ACCOUNT_MASKED.len().to_string().as_str())
    );
    let transfer = r#"{"from":"alice","to":"carol","amount":1}"#;
    let id = format!("mask-wire-saga-{:?}", world.build);
    let saga = connection
        .send(
            "POST",
            "/transfers",
            &[("x-request-id", &id), ("content-type", "application/json")],
            transfer,
        )
        .await;
    assert_eq!(saga.status, 200, "{}", saga.text());
    let answer: Value = serde_json::from_slice(&saga.body).unwrap();
    assert_eq!(answer["steps"][1]["body"]["account"], "***ol");
    let after = connection
        .send("GET", "/luhn/notes", &[("x-request-id", "mask-wire-2")], "")
        .await;
    assert_eq!((after.status, after.text()), (200, NOTES_SCANNED));
}

async fn a_bad_rule_is_refused_naming_it_and_the_running_config_stays(world: &World) {
    // Proves a config whose rule has a bad path is refused when the plugin loads (a reload
    // here), the plugin's log naming the rule, and the running config keeps masking.
    let bad = format!(
        "{}{}{}",
        plugins(PLUGINS, world.build),
        plugins(BAD_PLUGIN, world.build),
        world.routes
    );
    world.gateway.write_config(&bad);
    let reply = world
        .gateway
        .admin(reqwest::Method::POST, "/admin/reload")
        .timeout(Duration::from_secs(180))
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let detail = reply.text().await.unwrap();
    assert_ne!(status, 200, "{detail}");
    assert!(detail.contains("plugins.mask_bad"), "{detail}");
    let log = world.gateway.log();
    assert!(
        log.contains("mask: plugin config: rules[1].path: `[` at character 7 is never closed"),
        "the plugin's reason is not in the log:\n{log}"
    );
    assert_eq!(
        world.text("/doc/account").await,
        (200, ACCOUNT_MASKED.to_string())
    );
}

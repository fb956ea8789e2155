//! Fleets on PostgreSQL (SPEC §8): three gateways on one private database, the real shipped
//! plugins, real banks. Exactly once across the fleet, replays and 422 from any gateway, one rate
//! limit for all, admin from any gateway, and the database's own operations: migrate, an
//! unreachable database, the gateways as a DBA sees them.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use std::collections::HashSet;

use crate::sagas::{transfer, transfer_routes};
use crate::shipped_plugins::{GENEROUS, config, post_echo};
use crate::support::postgres::Postgres;
use crate::support::{Bank, Fleet, GatewayBuilder, bin, client, free_port, wait_until};

/// The lease of these tests' gateways.
const LEASE_MS: u64 = 2000;

async fn fleet_of_three(a: &Bank, b: &Bank, rate: &str, server: &[&str]) -> Fleet {
    Fleet::start(3, LEASE_MS, &config(a, b, "", rate), server).await
}

#[tokio::test]
async fn twenty_duplicates_spread_over_three_gateways_run_one_saga() {
    // Proves exactly once across the fleet: 20 concurrent requests with one X-Request-ID, spread
    // over three gateways, make one saga at the banks, and every answer names that saga. With
    // the idempotency plugin on the route, the same holds, and a duplicate the plugin sees in
    // flight on another gateway gets 409 instead.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=1000"]).await;
    a.fault(json!({"kind": "latency", "latency_ms": 300, "path_prefix": "/debit"}))
        .await;
    let fleet = Fleet::start(3, LEASE_MS, &transfer_routes(&a, &b, ""), &[]).await;
    let answers = duplicates(&fleet, "/transfers", "fleet-dup-1").await;
    let ids: HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            assert_eq!(body["status"], "completed", "{body}");
            body["saga_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one saga id in every answer: {ids:?}");
    assert_eq!(a.hits("/debit").await, 1, "one debit at the bank");
    assert_eq!(b.hits("/credit").await, 1, "one credit at the bank");
    assert_eq!(a.balance("alice").await, 993);
    assert_eq!(fleet.db.sql("SELECT count(*) FROM sagas"), "1");
    let (status, problem) = transfer(
        fleet.gw(3),
        "/transfers",
        "fleet-dup-1",
        "alice",
        "carol",
        8,
    )
    .await;
    assert_eq!(status, 422, "a changed body on another gateway: {problem}");
    assert_eq!(a.hits("/debit").await, 1, "nothing ran for it");
    drop(fleet);

    let fleet = fleet_of_three(&a, &b, GENEROUS, &[]).await;
    let answers = duplicates(&fleet, "/transfers", "fleet-dup-2").await;
    let mut ids = HashSet::new();
    for (status, body) in &answers {
        match status {
            200 => ids.insert(body["saga_id"].as_str().unwrap().to_string()),
            409 => true,
            _ => panic!("{status} {body}"),
        };
    }
    assert_eq!(ids.len(), 1, "one saga id in every 200: {ids:?}");
    assert_eq!(a.hits("/debit").await, 2, "one more debit at the bank");
}

/// 20 concurrent transfers with one X-Request-ID, over the fleet's three gateways in turn.
async fn duplicates(fleet: &Fleet, path: &str, id: &str) -> Vec<(u16, Value)> {
    join_all((0..20).map(|i| transfer(fleet.gw(1 + i % 3), path, id, "alice", "carol", 7))).await
}

#[tokio::test]
async fn a_replay_from_another_gateway_is_byte_for_byte_and_a_changed_body_there_is_422() {
    // Proves the idempotency record is the fleet's: a retry that reaches another gateway gets
    // the first answer byte for byte (saga route and plain route), and a changed body gets 422
    // there, with nothing sent again.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=1000"]).await;
    let fleet = fleet_of_three(&a, &b, GENEROUS, &[]).await;
    let send = |n: usize, amount: i64| {
        client()
            .post(fleet.gw(n).url("/transfers"))
            .header("x-request-id", "fleet-replay-1")
            .json(&json!({"from": "alice", "to": "carol", "amount": amount}))
            .send()
    };
    let first = send(1, 10).await.unwrap();
    assert_eq!(first.status(), 200);
    let first = first.bytes().await.unwrap();
    let again = send(2, 10).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first, "byte for byte");
    let changed = send(3, 11).await.unwrap();
    assert_eq!(changed.status(), 422);
    let problem: Value = changed.json().await.unwrap();
    assert_eq!(problem["type"], "urn:txgate:problem:idempotency-key-reused");
    assert_eq!(a.hits("/debit").await, 1);

    let echo = post_echo(fleet.gw(2), Some("fleet-echo-1"), "{\"n\":1}").await;
    assert_eq!(echo.status(), 200);
    let echo = echo.bytes().await.unwrap();
    let replayed = post_echo(fleet.gw(3), Some("fleet-echo-1"), "{\"n\":1}").await;
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(replayed.bytes().await.unwrap(), echo, "byte for byte");
    let changed = post_echo(fleet.gw(1), Some("fleet-echo-1"), "{\"n\":2}").await;
    assert_eq!(changed.status(), 422);
    assert_eq!(a.hits("/echo").await, 1, "the plain route ran once");
}

#[tokio::test]
async fn one_rate_limit_holds_across_the_fleet() {
    // Proves the GCRA state is shared: a client allowed a burst of 4 gets 4 requests through the
    // whole fleet, not 4 per gateway, whichever gateways its requests reach.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=1000"]).await;
    let rate = "key = \"header:x-client-id\"\nper_second = 0.1\nburst = 4";
    let fleet = fleet_of_three(&a, &b, rate, &[]).await;
    let mut allowed = 0;
    for i in 0..12 {
        let response = client()
            .get(fleet.gw(1 + i % 3).url("/api/echo"))
            .header("x-client-id", "acme")
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => allowed += 1,
            429 => assert!(response.headers().contains_key("retry-after")),
            other => panic!("request {i}: {other}"),
        }
    }
    // At 0.1/s, at most one more token can come back while the test runs.
    assert!((4..=5).contains(&allowed), "{allowed} allowed by the fleet");
    assert_eq!(
        a.total_hits().await,
        allowed,
        "only allowed requests reached the bank"
    );
}

async fn saga_view(gateway: &crate::support::Gateway, id: &str) -> Value {
    gateway.admin_json(&format!("/admin/sagas/{id}")).await
}

#[tokio::test]
async fn admin_on_another_gateway_shows_retries_and_resolves_a_saga() {
    // Proves any gateway's admin API acts on any saga of the fleet: a saga started on gw1 and
    // stuck there is listed and shown by gw2, resolved through gw2 (gw1 applies it and stops
    // calling), and another one retried through gw3 finishes once the bank is fixed.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=1000"]).await;
    a.fault(json!({"kind": "fail_before", "path_prefix": "/debit/compensate"}))
        .await;
    let fleet = fleet_of_three(&a, &b, GENEROUS, &["request_timeout_ms = 300"]).await;
    // Both at once: the failing compensations open the breaker for later debits.
    let started = join_all(
        ["fleet-stuck-1", "fleet-stuck-2"]
            .map(|id| transfer(fleet.gw(1), "/transfers", id, "alice", "nobody", 100)),
    )
    .await;
    let sagas: Vec<String> = started
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            body["saga_id"].as_str().unwrap().to_string()
        })
        .collect();
    for saga in &sagas {
        wait_until(Duration::from_secs(30), "gw2 to show it stuck", || async {
            saga_view(fleet.gw(2), saga).await["status"] == "stuck"
        })
        .await;
    }
    let listed = fleet.gw(2).admin_json("/admin/sagas?status=stuck").await;
    let listed: Vec<&str> = listed["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["saga_id"].as_str())
        .collect();
    assert!(
        sagas.iter().all(|s| listed.contains(&s.as_str())),
        "{listed:?}"
    );

    let note = json!({"by": "ops", "ticket": "INC-7"});
    let resolved = fleet
        .gw(2)
        .admin(Method::POST, &format!("/admin/sagas/{}/resolve", sagas[0]))
        .json(&note)
        .send()
        .await
        .unwrap();
    assert_eq!(resolved.status(), 200);
    let view: Value = resolved.json().await.unwrap();
    assert_eq!(view["status"], "compensated", "{view}");
    assert_eq!(view["resolution"]["ticket"], "INC-7");
    // gw1 shows its saga from memory, updated once its own write has returned: that can come a
    // moment after gw2 read the committed row (seen once in a loaded run). The promise is that
    // gw1 applies the resolution, not that its memory is ahead of the database.
    wait_until(
        Duration::from_secs(10),
        "gw1 to show it resolved",
        || async { saga_view(fleet.gw(1), &sagas[0]).await["status"] == "compensated" },
    )
    .await;

    a.clear_faults().await;
    let retry = fleet
        .gw(3)
        .admin(Method::POST, &format!("/admin/sagas/{}/retry", sagas[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 202);
    wait_until(
        Duration::from_secs(10),
        "the retried saga to finish",
        || async { saga_view(fleet.gw(3), &sagas[1]).await["status"] == "compensated" },
    )
    .await;
    assert_eq!(
        a.balance("alice").await,
        900,
        "the retried debit undone; the resolved one left to the operator's note"
    );
    let compensations = a.hits("/debit/compensate").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        a.hits("/debit/compensate").await,
        compensations,
        "retries stopped"
    );
}

#[tokio::test]
async fn migrate_creates_the_schema_alone_and_gateways_show_their_names_to_the_database() {
    // Proves `txgate migrate` creates the schema without serving, says so, finds it current the
    // second time, and that a serving gateway names itself in pg_stat_activity.
    let db = Postgres::start();
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=1000"]).await;
    let gateway =
        GatewayBuilder::new(config(&a, &b, "", GENEROUS)).fleet(&db.url(), "gw-named", LEASE_MS);
    let stopped = gateway.stopped();
    let migrate = |config: &std::path::Path| {
        std::process::Command::new(bin("txgate"))
            .args(["migrate", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    let first = migrate(stopped.config_path());
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("schema created"));
    let tables = db.sql(
        "SELECT string_agg(relname || ':' || relpersistence::TEXT, ',' ORDER BY relname) FROM pg_class
         WHERE relname IN ('sagas', 'kv', 'kv_volatile', 'holds', 'gateways', 'usage')",
    );
    assert_eq!(
        tables, "gateways:p,holds:u,kv:p,kv_volatile:u,sagas:p,usage:p",
        "durable keys logged, volatile keys and holds UNLOGGED"
    );
    let second = migrate(stopped.config_path());
    assert!(String::from_utf8_lossy(&second.stdout).contains("already current"));
    let mut gateway = stopped;
    gateway.restart().await;
    let names = db.sql("SELECT string_agg(DISTINCT application_name, ',') FROM pg_stat_activity");
    assert!(names.contains("txgate gw-named"), "{names}");
}

#[tokio::test]
async fn an_unreachable_database_at_start_is_an_error_that_names_it() {
    // Proves a gateway whose database cannot be reached refuses to start (exit 1) and names the
    // database and the key, never the password.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=1000"]).await;
    let port = free_port();
    let url = format!("postgres://txgate:s3cret@127.0.0.1:{port}/ledger");
    let mut gateway = GatewayBuilder::new(config(&a, &b, "", GENEROUS))
        .fleet(&url, "gw-lonely", LEASE_MS)
        .stopped();
    let (status, log) = gateway.restart_expecting_failure().await;
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{port}/ledger")), "{log}");
    assert!(log.contains("store.url"), "{log}");
    assert!(
        !log.contains("s3cret"),
        "the password never reaches a log: {log}"
    );
}

//! A fleet under ordinary operations (SPEC §8): keys that expire give their quota back, a
//! rolling change of `lease_ms` takes nothing over from a live gateway, a twin `gateway_id` is
//! refused, a silent database wedges nobody, gateways claiming the same ids in opposite orders
//! never call the database down, a gateway paused inside a transaction gets a fresh session and
//! not an outage, sessions commit synchronously whatever the server's default, and
//! a stored answer is never visible before the outcome it reports is durable.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::sagas::{transfer, transfer_routes};
use crate::support::postgres::Postgres;
use crate::support::{Bank, Blackhole, Fleet, GatewayBuilder, client, wait_until};
use crate::wasm;
use nix::sys::signal::Signal;

/// These tests' lease.
const LEASE_MS: u64 = 2000;
/// Batches that failed as the database being unavailable.
const UNREACHABLE: &str = "txgate_store_errors_total{kind=\"unreachable\"}";

/// Lease renewals of each gateway so far: each is followed by a fresh read of the usage counts.
async fn renewals(fleet: &Fleet) -> Vec<f64> {
    let mut counts = Vec::new();
    for gateway in &fleet.gateways {
        counts.push(
            gateway
                .metric("txgate_fleet_lease_renewal_seconds_count")
                .await,
        );
    }
    counts
}

#[tokio::test]
async fn keys_that_expire_give_their_quota_back_across_the_fleet() {
    // Proves SPEC §8's quotas count the keys that exist: a rate limit allowed 3 keys, with never
    // more than 2 alive at once, keeps answering round after round as its old keys expire (the
    // issue's own run: from the third round, every request got 503).
    let bank = Bank::start(&[]).await;
    let config = format!(
        r#"
[plugins.rate_limit]
module = "{module}"
state = "volatile"
kv_keys_max = 3
[plugins.rate_limit.config]
key = "header:x-user"
per_second = 100
burst = 10

[upstreams.bank]
url = "{bank}"

[[routes]]
name = "api"
path_prefix = "/api/"
strip_prefix = true
upstream = "bank"
plugins = ["rate_limit"]
"#,
        module = wasm::RATE_LIMIT,
        bank = bank.base()
    );
    let fleet = Fleet::start(2, LEASE_MS, &config, &[]).await;
    for round in 0..4 {
        for (n, user) in ["a", "b"].iter().enumerate() {
            for _ in 0..3 {
                let answer = client()
                    .get(fleet.gw(1 + n % 2).url("/api/echo"))
                    .header("x-user", format!("round-{round}-{user}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    answer.status(),
                    200,
                    "round {round}: {}",
                    answer.text().await.unwrap()
                );
            }
        }
        // The round's keys expire a second after their last use, and the sweeper removes them;
        // the database's count goes down with them ...
        let counted =
            "SELECT coalesce(sum(keys), 0) FROM kv_volatile_usage WHERE namespace = 'rate_limit'";
        wait_until(
            Duration::from_secs(20),
            "the round's keys to give their room back",
            || async { fleet.db.sql(counted) == "0" },
        )
        .await;
        // ... and every gateway reads it after its next renewal.
        let before = renewals(&fleet).await;
        wait_until(
            Duration::from_secs(10),
            "every gateway to read the count",
            || async {
                let now = renewals(&fleet).await;
                now.iter()
                    .zip(&before)
                    .all(|(now, before)| *now >= before + 2.0)
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_rolling_change_of_lease_ms_takes_nothing_over_from_a_live_gateway() {
    // Proves takeover is judged against the lease the owner declared: gw2 restarted with a lease
    // of 500 ms while gw1 runs with 3000 ms (renewing every 750 ms) takes none of gw1's sagas.
    // Before, gw2 judged gw1 by its own 500 ms, and took 48 live sagas.
    let a = Bank::start(&["alice=100000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    for bank in [&a, &b] {
        bank.fault(json!({"kind": "latency", "latency_ms": 1000}))
            .await;
    }
    let routes = transfer_routes(&a, &b, "").replace("timeout_ms = 1000", "timeout_ms = 5000");
    let mut fleet = Fleet::start(2, 3000, &routes, &["request_timeout_ms = 10000"]).await;
    let gw2 = fleet.gw_mut(2);
    gw2.kill9();
    gw2.set_store_line("lease_ms = 500");
    gw2.write_config(&routes);
    gw2.restart().await;
    let ids: Vec<String> = (0..40).map(|n| format!("rolling-{n}")).collect();
    let sends: Vec<_> = ids
        .iter()
        .map(|id| transfer(fleet.gw(1), "/transfers", id, "alice", "carol", 1))
        .collect();
    let observed = Instant::now();
    let answers = join_all(sends).await;
    // Several of gw2's takeover rounds passed while gw1's sagas ran.
    assert!(observed.elapsed() >= Duration::from_millis(1500));
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    assert_eq!(
        fleet.gw(2).metric("txgate_fleet_takeovers_total").await,
        0.0
    );
    assert_eq!(
        fleet
            .db
            .sql("SELECT count(*) FROM sagas WHERE owner <> 'gw1' OR epoch <> 1"),
        "0",
        "every saga ran on gw1 at its first epoch"
    );
    assert_eq!(
        (a.balance("alice").await, b.balance("carol").await),
        (99960, 40)
    );
}

#[tokio::test]
async fn a_twin_gateway_id_is_refused_and_a_dead_gateways_id_starts_again() {
    // Proves `gateway_id` is unique among live gateways: a second process with gw1's id refuses
    // to start and names the id (before, it started, and the twins shared one heartbeat); once
    // gw1 is killed, its id starts again as soon as its lease has run out, and resumes its sagas.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    // The credit is retried for long enough to be under way at the kill.
    let routes = transfer_routes(&a, &b, "")
        .replace("max_attempts = 3", "max_attempts = 100")
        .replace("backoff_max_ms = 20", "backoff_max_ms = 200");
    let mut fleet = Fleet::start(1, LEASE_MS, &routes, &[]).await;
    let (mut twin, log) = fleet.gw(1).spawn_twin();
    let exited = tokio::task::spawn_blocking(move || twin.wait())
        .await
        .unwrap()
        .unwrap();
    let said = std::fs::read_to_string(log).unwrap();
    assert!(!exited.success(), "{said}");
    assert!(said.contains("`gw1` is in use by a live gateway"), "{said}");
    assert_eq!(fleet.gw(1).readyz().await, 200, "the live one is untouched");
    b.fault(json!({"kind": "fail_before", "path_prefix": "/credit"}))
        .await;
    let url = fleet.gw(1).url("/transfers");
    tokio::spawn(async move {
        let _ = client()
            .post(url)
            .header("x-request-id", "resumed-by-its-own")
            .json(&json!({"from": "alice", "to": "carol", "amount": 10}))
            .send()
            .await;
    });
    wait_until(
        Duration::from_secs(10),
        "the credit to be tried",
        || async { b.hits("/credit").await >= 1 },
    )
    .await;
    fleet.gw_mut(1).kill9();
    b.clear_faults().await;
    let restarted = Instant::now();
    fleet.gw_mut(1).restart().await;
    assert!(
        restarted.elapsed() < Duration::from_millis(2 * LEASE_MS),
        "a dead gateway's id waits for its lease, no longer: {:?}",
        restarted.elapsed()
    );
    wait_until(
        Duration::from_secs(20),
        "gw1 to finish its saga",
        || async { fleet.unfinished() == 0 },
    )
    .await;
    assert_eq!(
        (a.balance("alice").await, b.balance("carol").await),
        (990, 10)
    );
}

#[tokio::test]
async fn a_gateway_killed_while_the_database_is_silent_starts_again() {
    // Proves a dead gateway's id can be taken again even when its death went unseen: killed
    // while every packet to the database is dropped, its session is left open on the server, with
    // the id's lock. Restarted once the packets flow, it waits for its old lease to run out, ends
    // that session, and runs (before, it could refuse itself as its own twin).
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let mut fleet = Fleet::start(1, LEASE_MS, &transfer_routes(&a, &b, ""), &[]).await;
    let silence = Blackhole::start(fleet.db.port);
    fleet.gw_mut(1).kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(silence);
    fleet.gw_mut(1).restart().await;
    let (status, body) = transfer(
        fleet.gw(1),
        "/transfers",
        "after-the-unseen-death",
        "alice",
        "carol",
        5,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_database_gone_silent_wedges_no_gateway() {
    // Proves SPEC §8's deadlines: every packet to and from PostgreSQL is dropped for 15 s under
    // traffic (a failover to another host looks like this); both gateways turn unready, and
    // within lease_ms plus 5 s of the packets flowing again both are ready and running sagas.
    // Before, the gateway that had traffic ran no saga 10 s after.
    let a = Bank::start(&["alice=1000000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let fleet = Fleet::start(
        2,
        LEASE_MS,
        &transfer_routes(&a, &b, ""),
        &["request_timeout_ms = 3000"],
    )
    .await;
    let traffic: Vec<_> = (0..60)
        .map(|n| {
            let url = fleet.gw(1 + n % 2).url("/transfers");
            tokio::spawn(async move {
                let id = format!("silent-{n}");
                for _ in 0..200 {
                    let sent = client()
                        .post(&url)
                        .header("x-request-id", &id)
                        .json(&json!({"from": "alice", "to": "carol", "amount": 1}))
                        .send()
                        .await;
                    if let Ok(answer) = sent
                        && answer.status() == 200
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                panic!("{id} never completed");
            })
        })
        .collect();
    wait_until(Duration::from_secs(10), "traffic to flow", || async {
        b.balance("carol").await > 0
    })
    .await;
    let silence = Blackhole::start(fleet.db.port);
    for gateway in &fleet.gateways {
        wait_until(
            Duration::from_secs(15),
            "the gateway to turn unready",
            || async { gateway.readyz().await == 503 },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    drop(silence);
    let back = Instant::now();
    let bound = Duration::from_millis(LEASE_MS) + Duration::from_secs(5);
    for (n, gateway) in fleet.gateways.iter().enumerate() {
        wait_until(
            bound.saturating_sub(back.elapsed()),
            "the gateway to be ready again",
            || async { gateway.readyz().await == 200 },
        )
        .await;
        let (status, body) = transfer(
            gateway,
            "/transfers",
            &format!("after-{n}"),
            "alice",
            "carol",
            1,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        back.elapsed() <= bound,
        "ready and running {:?} after",
        back.elapsed()
    );
    for sender in traffic {
        sender.await.unwrap();
    }
    wait_until(Duration::from_secs(30), "every saga to finish", || async {
        fleet.unfinished() == 0
    })
    .await;
    let moved = b.balance("carol").await;
    assert_eq!(a.balance("alice").await + moved, 1000000, "money conserved");
    assert_eq!(moved, 62, "each transfer once");
}

#[tokio::test]
async fn gateways_claiming_the_same_ids_in_opposite_orders_never_call_the_database_down() {
    // Proves claims of one batch take their locks in one order on every gateway: ids go in
    // groups of 16 to both gateways at once, to gw1 from first to last and to gw2 from last to
    // first; nobody gets 503 or sees the store as unavailable, and each id is one saga. Before,
    // the pipelined claims deadlocked, and the loser reported the database failing.
    let a = Bank::start(&["alice=1000000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    // The banks are slow under this load, and none of that is what this test looks at.
    let routes = transfer_routes(&a, &b, "breaker_failures = 100000")
        .replace("timeout_ms = 1000", "timeout_ms = 20000");
    let fleet = Fleet::start(2, LEASE_MS, &routes, &["request_timeout_ms = 30000"]).await;
    let ids: Vec<String> = (0..320).map(|n| format!("crossed-{n:03}")).collect();
    for group in ids.chunks(16) {
        let forward = group
            .iter()
            .map(|id| transfer(fleet.gw(1), "/transfers", id, "alice", "carol", 1));
        let backward = group
            .iter()
            .rev()
            .map(|id| transfer(fleet.gw(2), "/transfers", id, "alice", "carol", 1));
        let (ones, twos) = tokio::join!(join_all(forward), join_all(backward));
        for (status, body) in ones.iter().chain(&twos) {
            assert!(matches!(status, 200 | 202), "{status} {body}");
        }
    }
    for gateway in &fleet.gateways {
        assert_eq!(
            gateway.metric(UNREACHABLE).await,
            0.0,
            "the store never failed"
        );
    }
    wait_until(Duration::from_secs(30), "every saga to finish", || async {
        fleet.unfinished() == 0
    })
    .await;
    assert_eq!(fleet.db.sql("SELECT count(*) FROM sagas"), "320");
    assert_eq!(b.balance("carol").await, 320);
}

#[tokio::test]
async fn a_gateway_paused_inside_a_transaction_gets_a_fresh_session_not_an_outage() {
    // Proves a session the server ends because its gateway stalled inside a transaction (SIGSTOP
    // past `idle_in_transaction_session_timeout`, half the lease) is not reported as the database
    // failing: the batch runs again at once on a fresh connection, counted as `session_lost`.
    // Before, one such stall on a loaded host counted the store unreachable and refused new work.
    // The pause (3.4 s) is longer than the session's idle limit (3 s) and shorter than both the
    // statement deadline (5 s) and the lease (6 s); pauses repeat, under traffic, until one has
    // caught the writer inside a transaction (bounded). On a loaded host the traffic reaches
    // the writer later, so the pauses start anywhere from 5 to 170 ms into it.
    const LEASE_MS: u64 = 6000;
    const PAUSES_MAX: usize = 30;
    let a = Bank::start(&["alice=1000000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let routes = transfer_routes(&a, &b, "").replace("timeout_ms = 1000", "timeout_ms = 20000");
    let fleet = Fleet::start(1, LEASE_MS, &routes, &["request_timeout_ms = 30000"]).await;
    let gateway = fleet.gw(1);
    let lost = "txgate_store_errors_total{kind=\"session_lost\"}";
    let mut sent = 0;
    let mut pauses = 0;
    while gateway.metric(lost).await == 0.0 {
        assert!(
            pauses < PAUSES_MAX,
            "no pause caught the writer in a transaction"
        );
        pauses += 1;
        let ids: Vec<String> = (sent..sent + 32).map(|n| format!("paused-{n}")).collect();
        sent += 32;
        let traffic = join_all(
            ids.iter()
                .map(|id| transfer(gateway, "/transfers", id, "alice", "carol", 1)),
        );
        // A different moment of the traffic each time.
        let into_traffic = Duration::from_millis(5 + 11 * (pauses as u64 % 16));
        let pause = async {
            tokio::time::sleep(into_traffic).await;
            gateway.signal(Signal::SIGSTOP);
            tokio::time::sleep(Duration::from_millis(3400)).await;
            gateway.signal(Signal::SIGCONT);
        };
        let (answers, ()) = tokio::join!(traffic, pause);
        for (status, body) in answers {
            assert!(matches!(status, 200 | 202), "{status} {body}");
        }
    }
    assert_eq!(
        gateway.metric(UNREACHABLE).await,
        0.0,
        "the store was never unavailable"
    );
    wait_until(Duration::from_secs(30), "every saga to finish", || async {
        fleet.unfinished() == 0
    })
    .await;
    assert_eq!(b.balance("carol").await, sent, "each transfer once");
    assert_eq!(a.balance("alice").await + sent, 1000000, "money conserved");
}

#[tokio::test]
async fn sessions_commit_synchronously_whatever_the_servers_default() {
    // Proves the gateway forces `synchronous_commit = on` on its own sessions: a database whose
    // default is `off` would acknowledge saga writes a crash of the server could still lose.
    let db = Postgres::start();
    db.sql("ALTER DATABASE postgres SET synchronous_commit = off");
    let a = Bank::start(&[]).await;
    let b = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .fleet(&db.url(), "gw1", LEASE_MS)
        .start()
        .await;
    assert_eq!(
        gateway.admin_json("/admin/store").await["synchronous_commit"],
        "on"
    );
    assert_eq!(
        db.sql("SELECT current_setting('synchronous_commit')"),
        "off"
    );
}

#[tokio::test]
async fn a_stored_answer_is_never_visible_before_the_outcome_it_reports_is_durable() {
    // Proves SPEC §8's last rule: the idempotency plugin stores a saga's answer only once the
    // saga's final save is durable. Here that save waits on a row lock another session holds;
    // meanwhile no answer is stored (before, the plugin's own write committed first, unfenced,
    // and a crash in that window left an answer for an outcome that never was).
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let config = crate::shipped_plugins::config(&a, &b, "", crate::shipped_plugins::GENEROUS);
    let fleet = Fleet::start(1, LEASE_MS, &config, &[]).await;
    b.fault(json!({"kind": "latency", "latency_ms": 500, "count": 1, "path_prefix": "/credit"}))
        .await;
    let gateway = fleet.gw(1);
    let url = gateway.url("/transfers");
    let client_waits = tokio::spawn(async move {
        client()
            .post(url)
            .header("x-request-id", "stored-after")
            .json(&json!({"from": "alice", "to": "carol", "amount": 30}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    wait_until(
        Duration::from_secs(10),
        "the credit to reach bank B",
        || async { b.hits("/credit").await == 1 },
    )
    .await;
    let lock = fleet
        .db
        .lock_rows("SELECT 1 FROM sagas WHERE request_id = 'stored-after'")
        .await;
    let stored = "SELECT count(*) FROM kv WHERE namespace = 'idempotency' \
                  AND position('stored-after' in key) > 0";
    wait_until(
        Duration::from_secs(10),
        "the credit to be answered",
        || async { b.requests("/credit").await.len() == 1 },
    )
    .await;
    // The saga's outcome is known now, and its save waits on the lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fleet.db.sql(stored),
        "0",
        "no answer before its outcome is durable"
    );
    lock.release().await;
    assert_eq!(client_waits.await.unwrap(), 200);
    assert_eq!(fleet.db.sql(stored), "1", "the answer, once the outcome is");
    let saga: Value = serde_json::from_str(&fleet.db.sql(
        "SELECT json_build_object('status', status) FROM sagas WHERE request_id = 'stored-after'",
    ))
    .unwrap();
    assert_eq!(saga["status"], "completed");
}

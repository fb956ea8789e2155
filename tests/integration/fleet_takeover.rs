//! A fleet losing a member or its database: a gateway killed with sagas in flight (the others
//! take them over), a gateway paused past its lease and woken (fencing, read from the banks'
//! request logs), and the database restarted mid-traffic.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::crash::{
    ACCOUNTS, OPENING_BALANCE, Planned, accounts, check_books, plan, send, settle,
    wait_for_in_flight,
};
use crate::sagas::transfer_routes;
use crate::support::{Bank, Fleet, Gateway, wait_until};

/// These tests' lease.
const LEASE_MS: u64 = 2000;
/// Once a gateway is gone, its sagas must all be finished within `LEASE_MS` plus this.
const TAKEOVER_BOUND: Duration = Duration::from_secs(3);
/// How long every client may take to get a final answer after a fault.
const SETTLE_BOUND: Duration = Duration::from_secs(60);

/// Two banks with some latency, and a fleet of three on them.
async fn setup(latency_ms: u64, server: &[&str]) -> (Bank, Bank, Fleet) {
    let a_accounts = accounts("a");
    let b_accounts = accounts("b");
    let a = Bank::start(&a_accounts.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let b = Bank::start(&b_accounts.iter().map(String::as_str).collect::<Vec<_>>()).await;
    for bank in [&a, &b] {
        bank.fault(json!({"kind": "latency", "latency_ms": latency_ms, "probability": 1.0}))
            .await;
    }
    let fleet = Fleet::start(3, LEASE_MS, &transfer_routes(&a, &b, ""), server).await;
    (a, b, fleet)
}

/// Sends every planned transfer to `gateway`, in the background.
fn launch(gateway: &Gateway, planned: &[Planned]) -> Vec<tokio::task::JoinHandle<()>> {
    planned
        .iter()
        .map(|p| {
            let (url, p) = (gateway.url(&p.path), p.clone());
            tokio::spawn(async move {
                let _ = send(url, p).await;
            })
        })
        .collect()
}

/// Every final answer is one a transfer may end with.
fn assert_final(finals: &std::collections::HashMap<String, (u16, serde_json::Value)>) {
    for (id, (status, body)) in finals {
        assert!(
            crate::crash::is_outcome(*status),
            "{id} got {status} {body}"
        );
    }
}

#[tokio::test]
async fn the_others_finish_a_killed_gateways_sagas_within_the_lease_and_a_bound() {
    // Proves takeover: gw1 is killed (SIGKILL) with at least 100 sagas in flight; gw2 and gw3
    // take every one over and finish it within lease_ms plus TAKEOVER_BOUND; every client's
    // retry, sent to the survivors, gets a final answer; the books are exact, no saga is
    // half-applied and no X-Request-ID ran twice.
    let (a, b, mut fleet) = setup(40, &["request_timeout_ms = 2000"]).await;
    let mut rng = fastrand::Rng::with_seed(11);
    let planned = plan(&mut rng, 11);
    let clients = launch(fleet.gw(1), &planned);
    // The gauge is read a moment before the kill, so it waits for a margin above 100.
    wait_for_in_flight(fleet.gw(1), 110.0, 11).await;
    fleet.gw_mut(1).kill9();
    let killed = Instant::now();
    let in_flight: u64 = fleet
        .db
        .sql("SELECT count(*) FROM sagas WHERE expires_at_ms IS NULL AND owner = 'gw1'")
        .parse()
        .unwrap();
    assert!(in_flight >= 100, "{in_flight} sagas in flight at the kill");
    let bound = Duration::from_millis(LEASE_MS) + TAKEOVER_BOUND;
    wait_until(bound, "the survivors to finish gw1's sagas", || async {
        fleet.unfinished() == 0
    })
    .await;
    let took = killed.elapsed();
    eprintln!(
        "takeover: {in_flight} sagas finished {} ms after the kill",
        took.as_millis()
    );
    let taken: u64 = fleet
        .db
        .sql("SELECT count(*) FROM sagas WHERE owner IN ('gw2', 'gw3') AND epoch > 1")
        .parse()
        .unwrap();
    assert_eq!(taken, in_flight, "every saga in flight was taken over");
    let takeovers = fleet.gw(2).metric("txgate_fleet_takeovers_total").await
        + fleet.gw(3).metric("txgate_fleet_takeovers_total").await;
    assert_eq!(takeovers as u64, in_flight);
    for client in clients {
        let _ = client.await;
    }
    let replay = "fleet takeover";
    let finals = settle(&[fleet.gw(2), fleet.gw(3)], &planned, SETTLE_BOUND, replay).await;
    assert_final(&finals);
    let opening = 2 * ACCOUNTS as i64 * OPENING_BALANCE;
    check_books(&[&a, &b], opening, 11, replay).await;
}

#[tokio::test]
async fn a_gateway_paused_past_its_lease_sends_nothing_for_the_sagas_taken_from_it() {
    // Proves fencing: gw1 is stopped (SIGSTOP) with sagas in flight until gw2 and gw3 have taken
    // every one over, then woken (SIGCONT). In the banks' request logs, no call for a taken-over
    // saga comes from gw1 after the takeover, while the new owners' calls do; the books are
    // exact and every client gets a final answer.
    let (a, b, fleet) = setup(60, &["request_timeout_ms = 2000"]).await;
    let mut rng = fastrand::Rng::with_seed(12);
    let planned = plan(&mut rng, 12);
    let clients = launch(fleet.gw(1), &planned);
    wait_for_in_flight(fleet.gw(1), 60.0, 12).await;
    // Some sagas at their second step too, so that both banks hear from gw1 before the pause.
    wait_until(Duration::from_secs(20), "credits from gw1", || async {
        b.request_log().await.1 >= 10
    })
    .await;
    fleet.gw(1).signal(Signal::SIGSTOP);
    wait_until(
        Duration::from_secs(30),
        "gw1's sagas to be taken over",
        || async {
            fleet
                .db
                .sql("SELECT count(*) FROM sagas WHERE expires_at_ms IS NULL AND owner = 'gw1'")
                == "0"
        },
    )
    .await;
    let taken: HashSet<String> = fleet
        .db
        .sql("SELECT string_agg(id, ',') FROM sagas WHERE owner <> 'gw1'")
        .split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    assert!(taken.len() >= 30, "{} sagas taken over", taken.len());
    let mark_a = a.request_log().await.1;
    let mark_b = b.request_log().await.1;
    fleet.gw(1).signal(Signal::SIGCONT);
    wait_until(Duration::from_secs(30), "every saga to finish", || async {
        fleet.unfinished() == 0
    })
    .await;
    for client in clients {
        let _ = client.await;
    }
    let finals = settle(
        &fleet.gateways.iter().collect::<Vec<_>>(),
        &planned,
        SETTLE_BOUND,
        "fencing",
    )
    .await;
    assert_final(&finals);
    let mut new_owner_calls = 0;
    for (bank, mark) in [(&a, mark_a), (&b, mark_b)] {
        let (log, received) = bank.request_log().await;
        assert!(
            received - mark <= log.len() as u64,
            "the log holds every call since the mark: {received} {mark} {}",
            log.len()
        );
        for call in log.iter().filter(|c| c["seq"].as_u64() > Some(mark)) {
            let saga = call["headers"]["x-saga-id"].as_str().unwrap_or_default();
            if !taken.contains(saga) {
                continue;
            }
            let sender = call["headers"]["x-txgate-gateway"]
                .as_str()
                .unwrap_or_default();
            assert_ne!(
                sender, "gw1",
                "gw1 called for saga {saga} after it was taken over: {call}"
            );
            new_owner_calls += 1;
        }
    }
    assert!(
        new_owner_calls > 0,
        "the new owners called the banks after the takeover"
    );
    let opening = 2 * ACCOUNTS as i64 * OPENING_BALANCE;
    check_books(&[&a, &b], opening, 12, "fencing").await;
}

#[tokio::test]
async fn a_database_restart_mid_traffic_loses_nothing_and_doubles_nothing() {
    // Proves the fleet rides out its database: `pg_ctl restart -m immediate` (a crash, no
    // checkpoint) with transfers in flight on all three gateways. Readiness comes back on its
    // own; every client gets a final answer; the books are exact, no saga is half-applied and no
    // X-Request-ID ran twice (`check_books`, from the banks' records). Readiness while the
    // database is gone is the next test's.
    let (a, b, fleet) = setup(20, &["request_timeout_ms = 2000"]).await;
    let mut rng = fastrand::Rng::with_seed(13);
    let planned = plan(&mut rng, 13);
    let clients: Vec<_> = planned
        .iter()
        .enumerate()
        .map(|(n, p)| {
            let (url, p) = (fleet.gw(1 + n % 3).url(&p.path), p.clone());
            tokio::spawn(async move {
                let _ = send(url, p).await;
            })
        })
        .collect();
    wait_for_in_flight(fleet.gw(1), 20.0, 13).await;
    fleet.db.restart_immediately();
    for client in clients {
        let _ = client.await;
    }
    for gateway in &fleet.gateways {
        wait_until(
            Duration::from_secs(30),
            "readiness to come back",
            || async { gateway.readyz().await == 200 },
        )
        .await;
    }
    let gateways: Vec<&Gateway> = fleet.gateways.iter().collect();
    let finals = settle(&gateways, &planned, SETTLE_BOUND, "database restart").await;
    assert_final(&finals);
    wait_until(Duration::from_secs(30), "every saga to finish", || async {
        fleet.unfinished() == 0
    })
    .await;
    let opening = 2 * ACCOUNTS as i64 * OPENING_BALANCE;
    check_books(&[&a, &b], opening, 13, "database restart").await;
    let recovered = fleet
        .gateways
        .iter()
        .filter(|g| g.log().contains("the database takes writes again"))
        .count();
    assert!(
        recovered > 0,
        "the restart hit the gateways' writes, and they recovered"
    );
}

#[tokio::test]
async fn a_lost_database_makes_readiness_and_new_work_503_until_it_returns() {
    // Proves the fleet's fail-stop: with the database stopped, every gateway's /readyz turns
    // 503 and a new transfer gets 503 problem+json; a saga already running waits. Once the
    // database is back, readiness returns on its own, the running saga finishes, and the
    // refused transfer runs when retried.
    let (a, b, fleet) = setup(300, &["request_timeout_ms = 5000"]).await;
    let running = tokio::spawn(send(
        fleet.gw(1).url("/transfers"),
        Planned {
            id: "lost-db-running".into(),
            path: "/transfers".into(),
            body: json!({"from": "a1", "to": "b1", "amount": 5}),
        },
    ));
    wait_for_in_flight(fleet.gw(1), 1.0, 14).await;
    fleet.db.stop_immediately();
    for gateway in &fleet.gateways {
        wait_until(Duration::from_secs(10), "/readyz to turn 503", || async {
            gateway.readyz().await == 503
        })
        .await;
    }
    let refused = Planned {
        id: "lost-db-new".into(),
        path: "/transfers".into(),
        body: json!({"from": "a2", "to": "b2", "amount": 6}),
    };
    let (status, problem) = send(fleet.gw(2).url("/transfers"), refused.clone())
        .await
        .unwrap();
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["status"], 503, "problem+json: {problem}");
    fleet.db.start_again();
    for gateway in &fleet.gateways {
        wait_until(Duration::from_secs(30), "/readyz to come back", || async {
            gateway.readyz().await == 200
        })
        .await;
    }
    let _ = running.await;
    let planned = [
        Planned {
            id: "lost-db-running".into(),
            path: "/transfers".into(),
            body: json!({"from": "a1", "to": "b1", "amount": 5}),
        },
        refused,
    ];
    let finals = settle(&[fleet.gw(3)], &planned, SETTLE_BOUND, "lost database").await;
    for (id, (status, body)) in &finals {
        assert_eq!(*status, 200, "{id}: {body}");
    }
    assert_eq!(a.balance("a1").await, OPENING_BALANCE - 5);
    assert_eq!(a.balance("a2").await, OPENING_BALANCE - 6);
    assert_eq!(a.hits("/debit").await, 2, "each ran once");
    let opening = 2 * ACCOUNTS as i64 * OPENING_BALANCE;
    check_books(&[&a, &b], opening, 14, "lost database").await;
}

//! Crash-proofing: SIGKILL the gateway with transfers in flight, restart it, and check that
//! nothing was lost and nothing applied twice. Seeded: a failing round prints its seed and the
//! command that replays it.
//!
//! `TXGATE_CRASH_SEEDS=7,8` replays chosen seeds; `TXGATE_CRASH_ROUNDS=200` runs more rounds.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::sagas::transfer_routes;
use crate::support::{Bank, Gateway, GatewayBuilder, client};

pub const ACCOUNTS: usize = 10;
pub const OPENING_BALANCE: i64 = 1_000_000;
const TRANSFERS: usize = 200;
/// Sagas that must be in flight when the gateway is killed.
const IN_FLIGHT_MIN: f64 = 100.0;
/// How long every client may take, after the restart, to get a final answer.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The seeds to run: from `TXGATE_CRASH_SEEDS`, or `1..=TXGATE_CRASH_ROUNDS` (default 10).
pub fn seeds() -> Vec<u64> {
    if let Ok(list) = std::env::var("TXGATE_CRASH_SEEDS") {
        return list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
    }
    let rounds = std::env::var("TXGATE_CRASH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    (1..=rounds).collect()
}

pub fn accounts(prefix: &str) -> Vec<String> {
    (0..ACCOUNTS)
        .map(|i| format!("{prefix}{i}={OPENING_BALANCE}"))
        .collect()
}

/// One planned transfer.
#[derive(Clone, Debug)]
pub struct Planned {
    pub id: String,
    pub path: String,
    pub body: Value,
}

/// Transfers between the two banks' accounts; about one in ten is credited to an unknown
/// account, so it is rejected at the last step and compensated.
pub fn plan(rng: &mut fastrand::Rng, seed: u64) -> Vec<Planned> {
    (0..TRANSFERS)
        .map(|n| {
            let from = format!("a{}", rng.usize(..ACCOUNTS));
            let to = if rng.u8(..10) == 0 {
                "ghost".to_string()
            } else {
                format!("b{}", rng.usize(..ACCOUNTS))
            };
            Planned {
                id: format!("crash-{seed}-{n}"),
                path: if rng.bool() { "/transfers" } else { "/tcc" }.to_string(),
                body: json!({"from": from, "to": to, "amount": rng.i64(1..=500)}),
            }
        })
        .collect()
}

/// Sends a transfer once; connection errors (the gateway was killed) are expected.
pub async fn send(url: String, planned: Planned) -> Option<(u16, Value)> {
    let response = client()
        .post(url)
        .header("x-request-id", &planned.id)
        .json(&planned.body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

/// Whether a saga route's answer is final: not a 202 (still running), a 503 (try again), or a
/// 409 from the idempotency plugin (in flight). A saga compensated after a backend's own 409
/// ("in progress", SPEC §4) answers 409 too, and that one is final.
pub fn is_final(status: u16, body: &Value) -> bool {
    match status {
        202 | 503 => false,
        409 => body["status"] == "compensated",
        _ => true,
    }
}

/// Whether a final answer is one a transfer may end with: done, refused by a bank (400, 404,
/// 409 "in progress", 422), or undone after a bank stayed unavailable (502).
pub fn is_outcome(status: u16) -> bool {
    matches!(status, 200 | 400 | 404 | 409 | 422 | 502)
}

/// Retries each transfer with its X-Request-ID until it has a final answer (see [`is_final`]),
/// each round on the next of `gateways`, within `bound`.
pub async fn settle(
    gateways: &[&Gateway],
    planned: &[Planned],
    bound: Duration,
    replay: &str,
) -> HashMap<String, (u16, Value)> {
    let deadline = Instant::now() + bound;
    let mut finals = HashMap::new();
    let mut last = HashMap::new();
    for round in 0.. {
        if finals.len() == planned.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} transfers never got a final answer within {bound:?}; their last answers: {last:?} ({replay})",
            planned.len() - finals.len()
        );
        let retries: Vec<_> = planned
            .iter()
            .enumerate()
            .filter(|(_, p)| !finals.contains_key(&p.id))
            .map(|(n, p)| {
                let gateway = gateways[(n + round) % gateways.len()];
                (
                    p.id.clone(),
                    tokio::spawn(send(gateway.url(&p.path), p.clone())),
                )
            })
            .collect();
        last.clear();
        for (id, retry) in retries {
            match retry.await {
                Ok(Some((status, body))) if is_final(status, &body) => {
                    finals.insert(id, (status, body));
                }
                answer => {
                    last.insert(id, format!("{answer:?}"));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    finals
}

/// The invariants of a bank transfer system, checked on the banks' own books.
pub async fn check_books(banks: &[&Bank], opening_total: i64, seed: u64, replay: &str) {
    let mut total = 0;
    let mut applied: HashMap<String, Vec<bool>> = HashMap::new();
    let mut sagas_per_request: HashMap<String, HashSet<String>> = HashMap::new();
    for (index, bank) in banks.iter().enumerate() {
        total += bank.total().await;
        for (key, barrier) in bank.barriers().await {
            let saga = key.split('/').next().unwrap_or_default().to_string();
            let state = barrier["state"].as_str().unwrap_or_default();
            let holds = matches!(state, "applied" | "confirmed" | "tried");
            let slot = applied
                .entry(saga.clone())
                .or_insert_with(|| vec![false; banks.len()]);
            slot[index] = slot[index] || holds;
            assert_ne!(
                state, "tried",
                "seed {seed}: saga {saga} left a reservation open ({replay})"
            );
            if let Some(request) = barrier["request_id"].as_str() {
                sagas_per_request
                    .entry(request.to_string())
                    .or_default()
                    .insert(saga);
            }
        }
    }
    assert_eq!(
        total, opening_total,
        "seed {seed}: money was created or lost ({replay})"
    );
    for (saga, at) in &applied {
        // Finished, a saga holds money at every bank or at none.
        let all = at.iter().all(|held| *held);
        let none = at.iter().all(|held| !*held);
        assert!(
            all || none,
            "seed {seed}: saga {saga} is half-applied: {at:?} ({replay})"
        );
    }
    for (request, sagas) in &sagas_per_request {
        assert_eq!(
            sagas.len(),
            1,
            "seed {seed}: request {request} ran under {sagas:?} ({replay})"
        );
    }
}

async fn round(seed: u64) -> u64 {
    let replay =
        format!("replay: TXGATE_CRASH_SEEDS={seed} cargo nextest run -p txgate-tests crash");
    eprintln!("crash round, seed {seed} ({replay})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let a_accounts = accounts("a");
    let b_accounts = accounts("b");
    let a = Bank::start(&a_accounts.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let b = Bank::start(&b_accounts.iter().map(String::as_str).collect::<Vec<_>>()).await;
    a.fault(json!({"kind": "latency", "latency_ms": 15, "probability": 0.5}))
        .await;
    b.fault(json!({"kind": "latency", "latency_ms": 25, "probability": 0.5}))
        .await;
    let mut gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .server("request_timeout_ms = 2000")
        .start()
        .await;
    let planned = plan(&mut rng, seed);
    let clients: Vec<_> = planned
        .iter()
        .map(|p| tokio::spawn(send(gateway.url(&p.path), p.clone())))
        .collect();
    // Kill at a random moment once at least IN_FLIGHT_MIN sagas are running.
    wait_for_in_flight(&gateway, IN_FLIGHT_MIN, seed).await;
    tokio::time::sleep(Duration::from_millis(rng.u64(0..40))).await;
    gateway.kill9();
    for c in clients {
        let _ = c.await;
    }
    gateway.restart().await;
    let resumed = resumed_sagas(&gateway.log());
    let finals = settle(&[&gateway], &planned, SETTLE_TIMEOUT, &replay).await;
    for (id, (status, body)) in &finals {
        assert!(
            is_outcome(*status),
            "seed {seed}: {id} got {status} {body} ({replay})"
        );
    }
    check_books(
        &[&a, &b],
        2 * ACCOUNTS as i64 * OPENING_BALANCE,
        seed,
        &replay,
    )
    .await;
    resumed
}

/// Polls the in-flight gauge until it reaches `minimum`.
pub async fn wait_for_in_flight(gateway: &Gateway, minimum: f64, seed: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while gateway.metric("txgate_sagas_in_flight").await < minimum {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: never {minimum} sagas in flight"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many unfinished sagas the restarted gateway said it resumed.
pub fn resumed_sagas(log: &str) -> u64 {
    log.lines()
        .filter(|line| line.contains("unfinished sagas resumed"))
        .filter_map(|line| line.split("resumed=").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test]
async fn sigkill_with_transfers_in_flight_loses_nothing_and_applies_nothing_twice() {
    // Proves crash safety: for each seed, ~120 saga and TCC transfers are in flight when the
    // gateway is killed with SIGKILL; after a restart every client retry gets a final answer,
    // the sum of all balances is unchanged, no saga is half-applied, and no X-Request-ID ran
    // under two sagas.
    let mut resumed = Vec::new();
    for seed in seeds() {
        resumed.push(round(seed).await);
    }
    eprintln!("sagas resumed after each kill: {resumed:?}");
    assert!(
        resumed.iter().all(|n| *n as f64 >= IN_FLIGHT_MIN * 0.8),
        "every kill must catch about {IN_FLIGHT_MIN} sagas in flight: {resumed:?}"
    );
}

//! The seeded fault-injection suite on a fleet: the transfers, banks and backend faults of
//! `faults.rs`, sent to three gateways on one PostgreSQL, each request to any of them, some by
//! clients that hang up. The disruptions are a fleet's, crashes and ordinary operations alike: a
//! gateway killed (restarted at once, or left dead so the others take its sagas over), a gateway
//! paused past its lease and woken, the database restarted as in a crash, the database's packets
//! dropped for tens of seconds, a gateway restarted with another `lease_ms`, a twin started with a
//! live gateway's id (refused), banks slower than the gateways' timeout (so repeats meet 409 "in
//! progress"), two gateways sent the same transfers in opposite orders, a bank restarted, and a
//! reload of every gateway. The invariants are the same: balanced books, no half-applied saga,
//! one execution per X-Request-ID, a final answer for every client, and every saga finished
//! within a bound once the faults stop.
//!
//! CI runs seeds 1 to 3. A soak runs any number:
//!
//! ```text
//! TXGATE_FLEET_FAULT_SEEDS=1-100 cargo nextest run -p txgate-tests fleet_faults --no-capture
//! ```

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::crash::{Planned, send, settle};
use crate::faults::{
    BANKS, FINISH_BOUND, TRANSFERS, break_bank, check, plan, routes, seeds, start_banks,
    wait_all_finished,
};
use crate::support::{Bank, Blackhole, Fleet, Gateway, wait_until};

/// The lease of the suite's gateways.
const LEASE_MS: u64 = 1500;
/// The fleet's size.
const GATEWAYS: usize = 3;

/// One disruption in the middle of the traffic.
#[derive(Debug, Clone, Copy)]
enum Disruption {
    /// SIGKILL a gateway; restart it at once, or only once the waves are over.
    Kill {
        gateway: usize,
        restart_now: bool,
    },
    /// SIGSTOP a gateway for longer than its lease, then SIGCONT.
    Pause(usize),
    /// `pg_ctl restart -m immediate`.
    RestartDatabase,
    RestartBank(usize),
    /// A reload of every gateway under traffic.
    Reload,
    /// Every packet to and from the database dropped for this many seconds.
    Silence(u64),
    /// A gateway restarted with another `lease_ms`, while the others keep theirs.
    RollingLease {
        gateway: usize,
        lease_ms: u64,
    },
    /// A second process started with a live gateway's `gateway_id`: it must refuse to start.
    Twin(usize),
    /// Banks slower than the gateways' timeout for a while: retries meet 409 "in progress".
    InProgress,
    /// The wave's transfers sent again to another gateway, in the opposite order.
    Crossed(usize),
}

async fn disrupt(
    disruption: Disruption,
    fleet: &mut Fleet,
    banks: &mut [Bank],
    config: &str,
    wave: &[Planned],
) {
    match disruption {
        Disruption::Kill {
            gateway,
            restart_now,
        } => {
            fleet.gw_mut(gateway).kill9();
            if restart_now {
                fleet.gw_mut(gateway).restart().await;
            }
        }
        Disruption::Pause(chosen) => {
            // The chosen one, or the next one alive (an earlier kill may have left it dead).
            let gateway = (0..GATEWAYS)
                .map(|i| 1 + (chosen - 1 + i) % GATEWAYS)
                .find(|&n| fleet.gw(n).running())
                .expect("a gateway alive");
            fleet.gw(gateway).signal(Signal::SIGSTOP);
            // The fault itself: asleep past the lease, so the others take its sagas over.
            tokio::time::sleep(Duration::from_millis(LEASE_MS + 500)).await;
            fleet.gw(gateway).signal(Signal::SIGCONT);
        }
        Disruption::RestartDatabase => fleet.db.restart_immediately(),
        Disruption::RestartBank(i) => banks[i].restart().await,
        Disruption::Reload => {
            for gateway in &fleet.gateways {
                if !gateway.running() {
                    continue;
                }
                gateway.write_config(config);
                let (status, body) = gateway.reload().await;
                assert_eq!(status, 200, "reload under traffic: {body}");
            }
        }
        Disruption::Silence(secs) => {
            let silence = Blackhole::start(fleet.db.port);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            drop(silence);
        }
        Disruption::RollingLease { gateway, lease_ms } => {
            let gateway = fleet.gw_mut(gateway);
            if gateway.running() {
                gateway.kill9();
            }
            gateway.set_store_line(&format!("lease_ms = {lease_ms}"));
            gateway.write_config(config);
            gateway.restart().await;
        }
        Disruption::Twin(chosen) => {
            let Some(gateway) = fleet.gateways.iter().skip(chosen - 1).find(|g| g.running()) else {
                return;
            };
            // Alive by the fleet's rules: renewing its lease (after a silence, a gateway is
            // dead until it has renewed, and then a process with its id may take over).
            wait_until(
                Duration::from_secs(30),
                "the gateway to be ready",
                || async { gateway.readyz().await == 200 },
            )
            .await;
            let (mut twin, log) = gateway.spawn_twin();
            let exited = tokio::task::spawn_blocking(move || twin.wait())
                .await
                .unwrap()
                .unwrap();
            let said = std::fs::read_to_string(log).unwrap_or_default();
            assert!(
                !exited.success() && said.contains("is in use by a live gateway"),
                "{said}"
            );
        }
        Disruption::InProgress => {
            for bank in banks.iter() {
                let slow =
                    json!({"kind": "latency", "probability": 0.3, "count": 15, "latency_ms": 800});
                bank.fault(slow).await;
            }
        }
        Disruption::Crossed(gateway) => {
            let other = fleet.gw(gateway);
            let again: Vec<_> = wave
                .iter()
                .rev()
                .map(|p| tokio::spawn(send(other.url(&p.path), p.clone())))
                .collect();
            for client in again {
                let _ = client.await;
            }
        }
    }
}

/// Sends a wave, each transfer to a random gateway (dead or alive: a client does not know); one
/// client in five hangs up before its answer.
fn wave(
    fleet: &Fleet,
    planned: &[Planned],
    rng: &mut fastrand::Rng,
) -> Vec<tokio::task::JoinHandle<()>> {
    planned
        .iter()
        .map(|p| {
            let gateway = fleet.gw(1 + rng.usize(..GATEWAYS));
            let (url, p) = (gateway.url(&p.path), p.clone());
            let patience = (rng.u8(..5) == 0).then(|| Duration::from_millis(rng.u64(5..200)));
            tokio::spawn(async move {
                match patience {
                    Some(patience) => {
                        let _ = tokio::time::timeout(patience, send(url, p)).await;
                    }
                    None => {
                        let _ = send(url, p).await;
                    }
                }
            })
        })
        .collect()
}

async fn run(seed: u64) {
    let replay = format!(
        "replay: TXGATE_FLEET_FAULT_SEEDS={seed} cargo nextest run -p txgate-tests fleet_faults --no-capture"
    );
    eprintln!("fleet fault run, seed {seed} ({replay})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let journals = tempfile::tempdir().unwrap();
    let mut banks = start_banks(journals.path()).await;
    let config = routes(&banks);
    let server = ["request_timeout_ms = 1500", "shutdown_grace_ms = 3000"];
    let mut fleet = Fleet::start(GATEWAYS, LEASE_MS, &config, &server).await;
    for bank in &banks {
        break_bank(bank, &mut rng).await;
    }
    let planned = plan(&mut rng, seed);
    let messages = crate::fault_messages::plan(&mut rng, seed);
    let mut disruptions = vec![
        Disruption::Kill {
            gateway: 1 + rng.usize(..GATEWAYS),
            restart_now: rng.bool(),
        },
        Disruption::Pause(1 + rng.usize(..GATEWAYS)),
        Disruption::RestartDatabase,
        Disruption::RestartBank(rng.usize(..BANKS)),
        Disruption::Reload,
        Disruption::Silence(rng.u64(10..=25)),
        Disruption::RollingLease {
            gateway: 1 + rng.usize(..GATEWAYS),
            lease_ms: [LEASE_MS / 3, LEASE_MS * 2][rng.usize(..2)],
        },
        Disruption::Twin(1 + rng.usize(..GATEWAYS)),
        Disruption::InProgress,
        Disruption::Crossed(1 + rng.usize(..GATEWAYS)),
    ];
    rng.shuffle(&mut disruptions);
    let message_waves = messages.chunks(messages.len().div_ceil(disruptions.len()));
    for ((wave_planned, disruption), sent) in planned
        .chunks(TRANSFERS.div_ceil(disruptions.len()))
        .zip(disruptions.iter().copied())
        .zip(message_waves.chain(std::iter::repeat(&[][..])))
    {
        let mut clients = wave(&fleet, wave_planned, &mut rng);
        for m in sent {
            // Each call of a message's service to a gateway of the fleet, dead or alive.
            let gateway = fleet.gw(1 + rng.usize(..GATEWAYS)).url("");
            let drive = crate::fault_messages::drive(gateway, banks[0].base(), m.clone(), 5);
            clients.push(tokio::spawn(async move {
                drive.await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(20..150))).await;
        eprintln!("seed {seed}: {disruption:?}");
        disrupt(disruption, &mut fleet, &mut banks, &config, wave_planned).await;
        for client in clients {
            let _ = client.await;
        }
    }
    for gateway in &mut fleet.gateways {
        if !gateway.running() {
            gateway.restart().await;
        }
    }
    for bank in &banks {
        bank.clear_faults().await;
    }
    let gateways: Vec<&Gateway> = fleet.gateways.iter().collect();
    let finals = settle(&gateways, &planned, FINISH_BOUND, &replay).await;
    let outcomes =
        crate::fault_messages::settle(&fleet.gw(1).url(""), &banks[0], &messages, &replay).await;
    wait_all_finished(fleet.gw(1 + rng.usize(..GATEWAYS)), seed, &replay).await;
    assert_eq!(
        fleet.unfinished(),
        0,
        "seed {seed}: the database agrees ({replay})"
    );
    let added =
        crate::fault_messages::check(&banks, fleet.gw(1), &outcomes, &messages, seed, &replay)
            .await;
    check(&banks, &finals, added, seed, &replay).await;
    crate::reconcile::books_agree(fleet.gw(1).config_path(), seed, &replay);
}

#[tokio::test]
async fn seeded_fleet_fault_runs_keep_every_invariant() {
    // Proves the guarantees hold for a fleet under every fault kind at once, for each seed:
    // balanced books, no half-applied saga, at most one execution per X-Request-ID across the
    // gateways, a final answer for every client, and every saga finished within a bound.
    for seed in seeds("TXGATE_FLEET_FAULT_SEEDS", 1..=3) {
        run(seed).await;
    }
}

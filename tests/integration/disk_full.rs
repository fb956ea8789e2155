//! A full disk, for real: the store lives on a small tmpfs that a filler file fills while sagas
//! run. The gateway stops taking work it could not record (503, `/readyz` 503), keeps what it
//! acknowledged, holds its memory, and finishes everything once space is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::sagas::transfer_routes;
use crate::support::{Bank, Gateway, GatewayBuilder, Tmpfs, client, wait_until};

/// How far RSS may grow while the store refuses writes.
const RSS_GROWTH_MAX_BYTES: u64 = 64 * 1024 * 1024;

fn rss_bytes(gateway: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gateway.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

type Answers = Arc<Mutex<Vec<(String, i64, u16, Value)>>>;

/// Sends transfers one after another until `stop`, keeping every answer.
async fn traffic(url: String, worker: usize, answers: Answers, stop: Arc<AtomicBool>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("full-{worker}-{n}");
        let amount = 1 + (n % 5) as i64;
        let sent = client()
            .post(&url)
            .header("x-request-id", &id)
            .json(&json!({"from": "alice", "to": "carol", "amount": amount}))
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(Value::Null);
            answers.lock().await.push((id, amount, status, body));
        }
        n += 1;
    }
}

#[tokio::test]
async fn a_full_disk_refuses_new_work_keeps_what_it_acknowledged_and_recovers() {
    // Proves SPEC §7's fail-stop on a real full disk: 503 for new sagas and on /readyz, no
    // acknowledged saga lost, bounded memory, and every saga finished with exact books once
    // space is freed.
    let a = Bank::start(&["alice=100000000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let mut gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .server("request_timeout_ms = 2000")
        .stopped();
    let tmpfs = Tmpfs::mount(&gateway.store_dir());
    gateway.restart().await;
    let answers: Answers = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            tokio::spawn(traffic(
                gateway.url("/transfers"),
                w,
                answers.clone(),
                stop.clone(),
            ))
        })
        .collect();
    wait_until(
        Duration::from_secs(20),
        "some sagas to complete",
        || async { answers.lock().await.iter().filter(|a| a.2 == 200).count() > 50 },
    )
    .await;
    let rss_before = rss_bytes(&gateway);
    let filler = tmpfs.fill("filler");
    wait_until(Duration::from_secs(30), "/readyz to turn 503", || async {
        gateway.readyz().await == 503
    })
    .await;
    wait_until(
        Duration::from_secs(30),
        "new sagas to be refused with 503",
        || async {
            answers
                .lock()
                .await
                .iter()
                .rev()
                .take(8)
                .all(|a| a.2 == 503)
        },
    )
    .await;
    let refused = answers.lock().await.last().cloned().unwrap();
    assert_eq!(
        refused.3["type"], "urn:txgate:problem:store-unavailable",
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_full = rss_bytes(&gateway);
    assert!(
        rss_full < rss_before + RSS_GROWTH_MAX_BYTES,
        "memory grew from {rss_before} to {rss_full} bytes while the disk was full"
    );
    std::fs::remove_file(&filler).unwrap();
    wait_until(
        Duration::from_secs(30),
        "/readyz to turn 200 again",
        || async { gateway.readyz().await == 200 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    wait_until(Duration::from_secs(60), "every saga to finish", || {
        gateway.no_saga_unfinished()
    })
    .await;
    let answers = answers.lock().await.clone();
    let mut credited = 0;
    for wave in answers.chunks(64) {
        let retries = wave.iter().map(|(id, amount, _, _)| {
            let url = gateway.url("/transfers");
            async move {
                let retry = client()
                    .post(url)
                    .header("x-request-id", id)
                    .json(&json!({"from": "alice", "to": "carol", "amount": amount}))
                    .send()
                    .await
                    .unwrap();
                (
                    retry.status().as_u16(),
                    retry.json::<Value>().await.unwrap(),
                )
            }
        });
        let finals = futures_util::future::join_all(retries).await;
        for ((id, amount, status, first), (again, body)) in wave.iter().zip(finals) {
            assert_eq!(again, 200, "{id}: {body}");
            if matches!(status, 200 | 202) {
                assert_eq!(
                    body["saga_id"], first["saga_id"],
                    "{id} was acknowledged and kept"
                );
            }
            credited += amount;
        }
    }
    assert_eq!(
        b.balance("carol").await,
        credited,
        "every transfer applied once"
    );
    assert_eq!(a.balance("alice").await, 100_000_000 - credited);
    assert!(
        gateway.log().contains("the store cannot write"),
        "the failure is logged"
    );
    let errors = gateway
        .metric("txgate_store_errors_total{kind=\"full\"}")
        .await;
    assert!(errors >= 1.0, "and counted");
}

//! Durable writes per second through the store (SQLite, WAL, `synchronous = FULL`): many
//! concurrent writers sharing group commits, against one writer waiting for each commit in turn,
//! on the same disk in the same run. The ratio is what group commit buys.
//!
//! Run: `cargo bench -p txgate --bench store_write` (env `WRITERS`, `SECONDS`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use txgate::store::{Durability, Embedded, EmbeddedLimits, Mutation, Quota, Store};

const VALUE_BYTES: usize = 400;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Durable writes per second with `writers` concurrent writers.
fn writes_per_second(writers: u64, run: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let limits = EmbeddedLimits {
        cache_entries_max: 10_000,
        sagas: Quota::UNLIMITED,
        retention_ms: 0,
    };
    let store = Arc::new(Embedded::open(dir.path(), limits, None).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let (store, done) = (store.clone(), done.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while started.elapsed() < run {
                        let put = Mutation::Put {
                            value: Bytes::from(vec![7u8; VALUE_BYTES]),
                            ttl_ms: None,
                        };
                        store
                            .mutate("bench", &format!("{w}-{n}"), put, Durability::Durable)
                            .await
                            .unwrap();
                        n += 1;
                    }
                    done.fetch_add(n, Ordering::Relaxed);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    store.close();
    rate
}

fn main() {
    // `cargo test --benches` runs this binary too; only a real `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let writers = env("WRITERS", 64);
    let run = Duration::from_secs(env("SECONDS", 5));
    let shared = writes_per_second(writers, run);
    let alone = writes_per_second(1, run);
    println!("store_write: {writers} writers, {VALUE_BYTES}-byte values, {run:?} each");
    println!("  group commit ({writers} writers): {shared:.0} durable writes/s");
    println!("  one writer, one commit per write: {alone:.0} durable writes/s");
    println!("  ratio: {:.1}x", shared / alone);
}

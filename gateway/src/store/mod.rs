//! The store: every saga's state and every plugin key lives here.
//!
//! [`Store`] is the small trait a backend implements. It speaks in namespaced keys, values with an
//! optional expiry, and four atomic mutations (put, delete, compare-and-swap, increment), each
//! durable or volatile. Nothing in it assumes one process: every read-modify-write is a single
//! atomic mutation a shared backend (PostgreSQL, Redis) can run server-side.
//!
//! [`EmbeddedStore`] is the built-in backend: a memory layer (`memory.rs`, dashmap) that serves
//! every read.

mod memory;

use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

pub use memory::EmbeddedStore;

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

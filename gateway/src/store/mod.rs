//! The store: every saga's state and every plugin key lives here, behind one small trait.
//!
//! [`Store`] speaks in two shapes, the same in every backend:
//!
//! - **sagas**, one row per (route, client, X-Request-ID): a claim that only one request can
//!   win, updates of the saga's record, and the reads the engine and the admin API need;
//! - **plugin keys**, namespaced per plugin, with expiry: get, and four atomic mutations (put,
//!   delete, compare-and-swap, increment), each durable or volatile. Every read-modify-write is
//!   one mutation, so a shared backend can run it as one statement.
//!
//! Besides these, a **hold** marks a key as taken by a request under way (the idempotency
//! plugin's "in flight"); it ends with the request, never outlives its gateway, and is not a
//! stored value.
//!
//! The embedded backend ([`Embedded`]) keeps durable state in SQLite (`sqlite/`) and volatile
//! keys and holds in memory (`volatile.rs`, `holds.rs`); quotas bound both (`quota.rs`).
//!
//! **Why SQLite.** The store used to be a write-ahead log of our own. It was fast, but it held
//! every record in memory for the whole retention, decided "torn tail or damage" by scanning for
//! magic bytes, stalled writers during compaction, and no SIGKILL test could show that it
//! fsynced. SQLite in WAL mode with `synchronous = FULL` is crash-safe by a far larger body of
//! testing than ours could ever be, keeps memory bounded by its page cache, and still lets many
//! concurrent writers share one fsync: one writer thread commits whatever has queued as one
//! transaction (group commit). The figures are in `bench/RESULTS.md`.

pub mod books;
pub mod cache;
pub mod embedded;
mod holds;
pub mod postgres;
mod progress;
mod quota;
mod sqlite;
mod volatile;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;

pub use embedded::{Embedded, EmbeddedLimits};
pub use postgres::{FleetSettings, Postgres};
pub use progress::Progress;
pub use quota::Quota;

/// A boxed future, so the trait stays object-safe (`Arc<dyn Store>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a plugin key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk before the call returns.
    Durable,
    /// In memory only (shared by the fleet, with `postgres`).
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
    /// A namespace is at its quota of keys or bytes; the write was refused.
    #[error("`{namespace}` holds its limit of {limit} {what}")]
    LimitReached {
        /// The namespace (a plugin's name, or `sagas`).
        namespace: String,
        /// `keys` or `bytes`.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// `increment` on a value that is not a decimal number.
    #[error("the value is not a decimal number")]
    NotANumber,
    /// The store cannot write now (disk full, I/O error, database unreachable). Nothing was
    /// acknowledged; retry later.
    #[error("the store cannot write: {0}")]
    Unavailable(String),
    /// A hold was asked for outside a request.
    #[error("a hold needs a request under way")]
    NoRequest,
    /// The saga is not this gateway's to write any more: another gateway of the fleet owns it
    /// now, or its row is gone. This one must not act on it again.
    #[error("the saga belongs to another gateway now, or its row is gone")]
    Fenced,
}

/// The identity of a saga: at most one exists per (route, client, X-Request-ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SagaKey {
    /// The route's name.
    pub route: Arc<str>,
    /// The client (`client_key`'s value; empty when the route has none).
    pub client: Arc<str>,
    /// The client's X-Request-ID.
    pub request_id: Arc<str>,
}

/// A saga as the store keeps it: the columns it indexes, and the engine's record as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaRow {
    /// The saga id (a UUID v7: it sorts by creation time).
    pub id: Arc<str>,
    /// Its identity.
    pub key: SagaKey,
    /// `pending`, `compensating`, `stuck`, `completed` or `compensated`.
    pub status: &'static str,
    /// Created, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last changed.
    pub updated_ms: u64,
    /// When a finished saga may be removed, ms since the Unix epoch; `None` while unfinished.
    pub expires_at_ms: Option<u64>,
    /// The engine's encoded record.
    pub record: Bytes,
    /// The length of the record this row replaces (0 for a new saga): the store books the
    /// difference without reading the old row.
    pub replaces_bytes: usize,
    /// The fencing token: 1 when claimed, bumped by every takeover (fleets).
    pub epoch: u64,
    /// An operator's action waiting for the gateway that runs the saga, in JSON (fleets).
    pub admin: Option<String>,
}

/// What a claim came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The row is new: this request's saga exists now, durably.
    Won,
    /// A saga with this key already exists; here it is.
    Exists(SagaRow),
}

/// Which sagas an admin listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SagaFilter {
    /// Only this status.
    pub status: Option<&'static str>,
    /// Only this route's.
    pub route: Option<String>,
    /// Only those created before this time (ms since the epoch), found through the id.
    pub before_ms: Option<u64>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl SagaFilter {
    /// The `WHERE` clause of a listing (empty when nothing is filtered) and its values in
    /// order, numbered by `mark` from 1; the limit is for the caller to add. Each filter goes
    /// through its index: status and route through `(status, id)` and `(route, id)`, the time
    /// through the primary key, as a UUID v7 starts with its creation time.
    pub(crate) fn conditions(&self, mark: impl Fn(usize) -> String) -> (String, Vec<String>) {
        let mut terms = Vec::new();
        let mut values = Vec::new();
        let mut add = |column: &str, op: &str, value: String| {
            values.push(value);
            terms.push(format!("{column} {op} {}", mark(values.len())));
        };
        if let Some(status) = self.status {
            add("status", "=", status.to_string());
        }
        if let Some(route) = &self.route {
            add("route", "=", route.clone());
        }
        if let Some(before_ms) = self.before_ms {
            add("id", "<", saga_id_prefix(before_ms));
        }
        if terms.is_empty() {
            (String::new(), values)
        } else {
            (format!("WHERE {}", terms.join(" AND ")), values)
        }
    }
}

/// How many sagas of each status there are, each counted up to a cap (a store of a million
/// finished sagas must not be counted on every page view).
pub type SagaCounts = Vec<(&'static str, u64)>;

/// Whether the store accepts writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Writes succeed.
    Writable,
    /// The last write failed; the store is probing. New work is refused meanwhile.
    Failing(String),
}

/// A store backend.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Creates the saga's row unless one with its key exists (then returns that one). The row is
    /// durable when the future completes.
    fn claim_saga(&self, row: SagaRow) -> BoxFuture<'_, Result<Claim, StoreError>>;

    /// Writes a saga's new state durably. Waits (never fails) while the store cannot write:
    /// a running saga must not lose a step, so it pauses until the disk is back.
    fn save_saga(&self, row: SagaRow) -> BoxFuture<'_, Result<(), StoreError>>;

    /// One saga, by its id.
    fn saga_by_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<SagaRow>, StoreError>>;

    /// The saga of one key (route, client, X-Request-ID), through its unique index: a message's
    /// submit and abort find it so.
    fn saga_by_key<'a>(
        &'a self,
        key: &'a SagaKey,
    ) -> BoxFuture<'a, Result<Option<SagaRow>, StoreError>>;

    /// The newest sagas (admin listings).
    fn sagas(&self, filter: SagaFilter) -> BoxFuture<'_, Result<Vec<SagaRow>, StoreError>>;

    /// The newest sagas whose id, X-Request-ID or client is `text` exactly (an operator's
    /// search), through indexes: never a scan of the finished ones.
    fn search_sagas<'a>(
        &'a self,
        text: &'a str,
        filter: SagaFilter,
    ) -> BoxFuture<'a, Result<Vec<SagaRow>, StoreError>>;

    /// How many sagas of each status, each counted up to `cap` through the status index.
    fn saga_counts(&self, cap: u64) -> BoxFuture<'_, Result<SagaCounts, StoreError>>;

    /// The reports of the newest runs of `txgate reconcile` (JSON), newest first, at most
    /// `limit`.
    fn reconcile_runs(&self, limit: usize) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;

    /// Every unfinished saga (start-up recovery).
    fn unfinished_sagas(&self) -> BoxFuture<'_, Result<Vec<SagaRow>, StoreError>>;

    /// The live (not expired) value of a plugin key.
    fn get<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        durability: Durability,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;

    /// Applies one atomic mutation; a durable one is on disk before the future completes.
    fn mutate<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        mutation: Mutation,
        durability: Durability,
    ) -> BoxFuture<'a, Result<Applied, StoreError>>;

    /// Takes a hold on a key for request `holder`: `None` when it now holds it (or already
    /// did), or the value the holding request gave.
    fn hold<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        holder: u64,
        value: Bytes,
    ) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;

    /// Ends a hold of request `holder` (a no-op when it holds nothing there).
    fn release(&self, namespace: &str, key: &str, holder: u64);

    /// Sets a namespace's quota (a plugin's `kv_keys_max` and `kv_bytes_max`).
    fn set_quota(&self, namespace: &str, quota: Quota);

    /// Whether writes succeed, and the store's writer and threads are alive and moving.
    fn health(&self) -> Health;

    /// What a watchdog sees of the store's writer.
    fn progress(&self) -> Progress;

    /// Removes expired rows in small batches; returns how many went.
    fn expire(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// What an operator sees at `GET /admin/store`: the backend, its settings as the running
    /// store reports them, and the space each namespace uses.
    fn describe(&self) -> serde_json::Value;

    /// Stops (graceful shutdown), finishing queued writes where the backend can. A write is
    /// acknowledged only once committed, so one still queued at exit is redone by the next start
    /// (or, in a fleet, by a takeover): nothing acknowledged is lost either way.
    fn close(&self);

    /// Before a saga call: `Ok(None)` for one gateway alone, which always owns its sagas. In a
    /// fleet, `Ok(Some(ticket))` while this gateway surely owns the saga at `epoch`, and
    /// `Fenced` once another gateway has taken it over; the call's bytes go out only while
    /// [`Store::ticket_valid`] holds for the ticket.
    fn may_send<'a>(
        &'a self,
        id: &'a str,
        epoch: u64,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        let _ = (id, epoch);
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Whether a ticket from [`Store::may_send`] still holds: checked right before each write
    /// of the call, so a gateway paused after the check sends nothing once it wakes.
    fn ticket_valid(&self, ticket: u64) -> bool {
        let _ = ticket;
        true
    }

    /// Unfinished sagas of gateways whose lease ran out, now this gateway's, at most `limit`.
    fn take_over(&self, limit: usize) -> BoxFuture<'_, Result<Vec<SagaRow>, StoreError>> {
        let _ = limit;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Resolves when saga `id`, run by another gateway, may have changed (or a short while
    /// later): the cue to read it again.
    fn changed<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        let _ = id;
        Box::pin(tokio::time::sleep(Duration::from_millis(250)))
    }

    /// Hands an operator's action (JSON) to the gateway that runs saga `id`. Returns whether
    /// an unfinished saga was there to ask about.
    fn request<'a>(
        &'a self,
        id: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let _ = (id, action);
        Box::pin(std::future::ready(Ok(false)))
    }

    /// The ids of sagas an operator asked something of through another gateway (fleets), once.
    fn requests(&self) -> Option<mpsc::UnboundedReceiver<Arc<str>>> {
        None
    }

    /// This gateway's name (sent on every saga call, and its owner mark in a fleet).
    fn gateway(&self) -> &str;

    /// The lease, in a fleet: how long a silent gateway keeps its sagas.
    fn lease(&self) -> Option<Duration> {
        None
    }
}

/// Milliseconds since the Unix epoch: expiry is wall-clock so it survives restarts.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The saga statuses a row may hold.
pub const SAGA_STATUSES: [&str; 5] = [
    "pending",
    "compensating",
    "stuck",
    "completed",
    "compensated",
];

/// The status named `text`, if it is one.
pub fn status_name(text: &str) -> Option<&'static str> {
    SAGA_STATUSES.into_iter().find(|s| *s == text)
}

/// A database error, as the store's "cannot do this now".
pub(crate) fn unavailable(error: impl std::error::Error) -> StoreError {
    StoreError::Unavailable(described(&error))
}

/// An error with its causes: a driver's own text is often only "db error", and the server's
/// code and message, which say what went wrong, are its source.
pub(crate) fn described(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// A count or time as a database integer (both backends store them signed).
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Most finished sagas or expired keys one expiry statement deletes, so that no long write
/// lock is held.
pub(crate) const EXPIRE_BATCH: u64 = 500;

/// The start of the ids of sagas created at `unix_ms`: a UUID v7 begins with its 48-bit
/// millisecond timestamp in hex, so every saga created earlier has a smaller id. Expiry deletes
/// by id, so it needs no index of its own.
pub(crate) fn saga_id_prefix(unix_ms: u64) -> String {
    let ms = unix_ms & 0xFFFF_FFFF_FFFF;
    format!("{:08x}-{:04x}", ms >> 16, ms & 0xFFFF)
}

/// `now + ttl`, for an optional time-to-live.
pub(crate) fn expiry(now_ms: u64, ttl_ms: Option<u64>) -> Option<u64> {
    ttl_ms.map(|ttl| now_ms.saturating_add(ttl))
}

/// Reads a decimal counter.
pub(crate) fn parse_counter(bytes: &[u8]) -> Result<i64, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(StoreError::NotANumber)
}

/// A value and its expiry (ms since the Unix epoch).
pub(crate) type Stamped = (Bytes, Option<u64>);

/// What a mutation turns `current` into: the result, and the new value (`None`: delete), or
/// `None` when nothing changes. Shared by every backend that applies mutations itself.
pub(crate) fn apply(
    current: Option<(&Bytes, Option<u64>)>,
    mutation: Mutation,
    now_ms: u64,
) -> Result<(Applied, Option<Option<Stamped>>), StoreError> {
    Ok(match mutation {
        Mutation::Put { value, ttl_ms } => {
            (Applied::Stored, Some(Some((value, expiry(now_ms, ttl_ms)))))
        }
        Mutation::Delete => (Applied::Deleted(current.is_some()), current.map(|_| None)),
        Mutation::CompareAndSwap {
            expected,
            new,
            ttl_ms,
        } => {
            if current.map(|(bytes, _)| bytes) != expected.as_ref() {
                return Ok((Applied::Swapped(false), None));
            }
            let next = new.map(|bytes| (bytes, expiry(now_ms, ttl_ms)));
            let change = (current.is_some() || next.is_some()).then_some(next);
            (Applied::Swapped(true), change)
        }
        Mutation::Increment { delta, ttl_ms } => {
            let (number, expires_at_ms) = match current {
                Some((bytes, expires_at_ms)) => (parse_counter(bytes)?, expires_at_ms),
                None => (0, expiry(now_ms, ttl_ms)),
            };
            let sum = number.saturating_add(delta);
            let value = Bytes::from(sum.to_string());
            (Applied::Counter(sum), Some(Some((value, expires_at_ms))))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn compare_and_swap_on_an_absent_key_succeeds_once() {
        let claim = || Mutation::CompareAndSwap {
            expected: None,
            new: Some(bytes("mine")),
            ttl_ms: None,
        };
        let (applied, change) = apply(None, claim(), 0).unwrap();
        assert_eq!(applied, Applied::Swapped(true));
        let stored = change.unwrap().unwrap();
        let (applied, change) = apply(Some((&stored.0, None)), claim(), 0).unwrap();
        assert_eq!(applied, Applied::Swapped(false));
        assert!(change.is_none());
    }

    #[test]
    fn increment_counts_from_zero_keeps_expiry_and_refuses_text() {
        let inc = |delta| Mutation::Increment {
            delta,
            ttl_ms: Some(10),
        };
        let (applied, change) = apply(None, inc(2), 100).unwrap();
        assert_eq!(applied, Applied::Counter(2));
        let (value, expires) = change.unwrap().unwrap();
        assert_eq!(expires, Some(110));
        let (applied, change) = apply(Some((&value, Some(110))), inc(-5), 200).unwrap();
        assert_eq!(applied, Applied::Counter(-3));
        assert_eq!(change.unwrap().unwrap().1, Some(110), "expiry is kept");
        assert_eq!(
            apply(Some((&bytes("text"), None)), inc(1), 0),
            Err(StoreError::NotANumber)
        );
    }

    #[test]
    fn deleting_an_absent_key_changes_nothing() {
        let (applied, change) = apply(None, Mutation::Delete, 0).unwrap();
        assert_eq!(applied, Applied::Deleted(false));
        assert!(change.is_none());
    }
}

//! A gateway's lease on its sagas, and fencing.
//!
//! Each gateway has a row in `gateways`; its heartbeat (the database's clock) is its lease, renewed
//! with one statement per interval, whatever the number of its sagas. After `lease_ms` without a
//! renewal, other gateways take its unfinished sagas over: in bounded batches, `FOR UPDATE SKIP
//! LOCKED`, bumping each saga's epoch.
//!
//! Fencing, both ways:
//! - every saga write is conditional on (owner, epoch) (`writer.rs`): a gateway that lost a saga
//!   cannot write it;
//! - before each call, a saga asks [`Lease::may_send`]. While the lease is valid by this
//!   gateway's own clock (renewed less than `lease_ms` minus a margin ago), nobody else can have
//!   taken the saga, and the answer costs nothing. Once the lease has lapsed — the gateway was
//!   paused, or cut off from the database — no call goes out until the lease is renewed and the
//!   saga's row shows it still belongs to this gateway at its epoch. So a gateway that wakes after
//!   its sagas were taken over stops working on them before it sends another call.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use deadpool_postgres::Pool;

use super::super::{StoreError, to_i64, unavailable};
use super::kv::client;

/// The database's clock, in ms since the Unix epoch.
pub(super) const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

/// The lease.
#[derive(Debug)]
pub(super) struct Lease {
    pub(super) gateway: String,
    pub(super) lease: Duration,
    /// Until when calls may go out without asking the database.
    valid_until: Mutex<Option<Instant>>,
    /// Bumped whenever the lease lapsed: every saga must be checked again.
    generation: AtomicU64,
    /// When the lease last lapsed and came back (no takeover until a whole lease after it).
    settled_since: Mutex<Instant>,
    /// Sagas checked in the current generation.
    checked: DashMap<String, u64>,
}

impl Lease {
    /// A lease not yet renewed.
    pub(super) fn new(gateway: String, lease: Duration) -> Self {
        Self {
            gateway,
            lease,
            valid_until: Mutex::new(None),
            generation: AtomicU64::new(1),
            settled_since: Mutex::new(Instant::now()),
            checked: DashMap::new(),
        }
    }

    /// The margin kept below `lease_ms` for the time a renewal takes and clocks drift.
    fn margin(&self) -> Duration {
        self.lease / 4
    }

    /// Whether the lease is valid now.
    pub(super) fn valid(&self) -> bool {
        self.valid_until
            .lock()
            .expect("lease")
            .is_some_and(|until| Instant::now() < until)
    }

    /// Renews the lease: one statement, whatever the number of sagas. Returns how long it took.
    pub(super) async fn renew(&self, pool: &Pool) -> Result<Duration, String> {
        let started = Instant::now();
        let lapsed = !self.valid();
        let client = pool.get().await.map_err(|e| e.to_string())?;
        client
            .execute(
                &format!(
                    "INSERT INTO gateways (id, started_ms, heartbeat_ms) VALUES ($1, {DB_NOW_MS}, {DB_NOW_MS})
                     ON CONFLICT (id) DO UPDATE SET heartbeat_ms = {DB_NOW_MS}"
                ),
                &[&self.gateway],
            )
            .await
            .map_err(|e| e.to_string())?;
        if lapsed {
            self.generation.fetch_add(1, Ordering::AcqRel);
            *self.settled_since.lock().expect("lease") = Instant::now();
        }
        // Counted from before the statement: the database's heartbeat is at least that late.
        *self.valid_until.lock().expect("lease") = Some(started + self.lease - self.margin());
        Ok(started.elapsed())
    }

    /// Whether this gateway may take over others' sagas: its own lease valid, and valid for a
    /// whole lease since it last lapsed, so that after an outage every gateway gets the chance to
    /// renew before any is counted dead.
    pub(super) fn may_take_over(&self) -> bool {
        self.valid() && self.settled_since.lock().expect("lease").elapsed() >= self.lease
    }

    /// The current generation: taken before a statement that makes this gateway a saga's
    /// owner, and given to [`Lease::owned`] after it.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records that this gateway became the owner of `id` by a statement that started in
    /// `generation`. Had the lease lapsed since, the saga is checked again before its next call:
    /// another gateway may have taken it while this one was away.
    pub(super) fn owned(&self, id: &str, generation: u64) {
        self.checked.insert(id.to_string(), generation);
    }

    /// Forgets a saga (finished or lost).
    pub(super) fn forget(&self, id: &str) {
        self.checked.remove(id);
    }

    /// Whether a ticket from [`Lease::may_send`] still holds: the lease is valid, and has not
    /// lapsed since the ticket was given (a lapse bumps the generation).
    pub(super) fn holds(&self, ticket: u64) -> bool {
        self.valid() && self.generation.load(Ordering::Acquire) == ticket
    }

    /// Before a call of saga `id` at `epoch`: a ticket while this gateway surely still owns it.
    pub(super) async fn may_send(
        &self,
        pool: &Pool,
        id: &str,
        epoch: u64,
    ) -> Result<u64, StoreError> {
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            let checked = self.checked.get(id).map(|g| *g) == Some(generation);
            if self.valid() && checked {
                return Ok(generation);
            }
            if !self.valid() {
                // Renewed by the lease loop; calls wait until then.
                tokio::time::sleep(self.lease / 20).await;
                continue;
            }
            let client = client(pool).await?;
            let statement = client
                .prepare_cached("SELECT owner, epoch FROM sagas WHERE id = $1")
                .await
                .map_err(unavailable)?;
            let row = client
                .query_opt(&statement, &[&id])
                .await
                .map_err(unavailable)?;
            let ours = row.is_some_and(|r| {
                r.get::<_, &str>(0) == self.gateway && r.get::<_, i64>(1) == to_i64(epoch)
            });
            if !ours {
                self.forget(id);
                return Err(StoreError::Fenced);
            }
            self.checked.insert(id.to_string(), generation);
        }
    }
}

//! A gateway's lease on its sagas, and fencing.
//!
//! Each gateway has a row in `gateways`: its heartbeat, in the database's clock, and the lease it
//! declared. Its presence connection (`presence.rs`) renews both with one statement per interval,
//! whatever the number of its sagas. A gateway is taken over once the database's clock is past its
//! heartbeat plus its *own* declared lease, so gateways with different `lease_ms` (a rolling
//! change) judge each other by what each promised, never by their own setting. Takeover goes in
//! bounded batches, `FOR UPDATE SKIP LOCKED`, bumping each saga's epoch.
//!
//! Fencing, both ways:
//! - every saga write is conditional on (owner, epoch) (`writer.rs`): a gateway that lost a saga
//!   cannot write it;
//! - before each call, a saga asks [`Lease::may_send`]. While the lease is valid by this
//!   gateway's own clock (renewed less than `lease_ms` minus a margin ago, counted from before the
//!   renewal was sent), nobody else can have taken the saga, and the answer costs nothing. Once
//!   the lease has lapsed — the gateway was paused, cut off from the database, or a renewal was
//!   slow — the generation goes up, every ticket given before is void, and no call goes out until
//!   the lease is renewed and the saga's row shows it still belongs to this gateway at its epoch.
//!   The connection checks its ticket again right before it writes the call's bytes
//!   ([`Lease::holds`]). So a gateway that wakes after its sagas were taken over stops working on
//!   them before it sends another call.
//!
//! The model in `lease_model.rs` checks these rules over every interleaving of a few gateways.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use deadpool_postgres::Pool;

use super::super::{StoreError, to_i64, unavailable};
use super::deadline::within;
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
    /// Sagas checked, by (id, epoch), and the generation they were checked in.
    checked: DashMap<(String, u64), u64>,
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

    /// A renewal that the database applied: `sent` is when its statement was sent (the
    /// database's heartbeat is at least that late). Had the lease lapsed meanwhile, even while
    /// the renewal itself was slow, the generation goes up before the lease is valid again, so
    /// no ticket of before the lapse is ever honoured after it.
    pub(super) fn renewed(&self, sent: Instant) {
        if !self.valid() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            *self.settled_since.lock().expect("lease") = Instant::now();
        }
        *self.valid_until.lock().expect("lease") = Some(sent + self.lease - self.margin());
    }

    /// Another process has this gateway's id: no call goes out any more, and every ticket given
    /// is void.
    pub(super) fn void(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.valid_until.lock().expect("lease") = None;
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

    /// Records that this gateway became the owner of `id` at `epoch` by a statement that started
    /// in `generation`. Had the lease lapsed since, the saga is checked again before its next
    /// call: another gateway may have taken it while this one was away.
    pub(super) fn owned(&self, id: &str, epoch: u64, generation: u64) {
        self.checked.insert((id.to_string(), epoch), generation);
    }

    /// Forgets a saga at one epoch (finished, or lost); a later epoch's entry stays.
    pub(super) fn forget(&self, id: &str, epoch: u64) {
        self.checked.remove(&(id.to_string(), epoch));
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
        let key = (id.to_string(), epoch);
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            let checked = self.checked.get(&key).map(|g| *g) == Some(generation);
            if self.valid() && checked {
                return Ok(generation);
            }
            if !self.valid() {
                // Renewed by the lease loop; calls wait until then.
                tokio::time::sleep(self.lease / 20).await;
                continue;
            }
            if !self.still_ours(pool, id, epoch).await? {
                self.forget(id, epoch);
                return Err(StoreError::Fenced);
            }
            self.checked.insert(key.clone(), generation);
        }
    }

    /// Whether the saga's row says this gateway owns it at `epoch`.
    async fn still_ours(&self, pool: &Pool, id: &str, epoch: u64) -> Result<bool, StoreError> {
        within(async {
            let client = client(pool).await?;
            let statement = client
                .prepare_cached("SELECT owner, epoch FROM sagas WHERE id = $1")
                .await
                .map_err(unavailable)?;
            let row = client
                .query_opt(&statement, &[&id])
                .await
                .map_err(unavailable)?;
            Ok(row.is_some_and(|r| {
                r.get::<_, &str>(0) == self.gateway && r.get::<_, i64>(1) == to_i64(epoch)
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lapse_during_a_slow_renewal_voids_every_earlier_ticket() {
        let lease = Lease::new("gw".into(), Duration::from_millis(40));
        lease.renewed(Instant::now());
        let ticket = lease.generation();
        assert!(lease.holds(ticket));
        // The renewal statement is sent, then the gateway stalls past its lease before the
        // answer comes back.
        let sent = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        lease.renewed(sent);
        assert!(lease.valid() || sent.elapsed() >= Duration::from_millis(30));
        assert!(
            !lease.holds(ticket),
            "a ticket from before the lapse is void"
        );
    }

    #[test]
    fn checks_are_per_epoch_and_forgetting_one_keeps_the_other() {
        let lease = Lease::new("gw".into(), Duration::from_secs(10));
        lease.owned("s", 1, 1);
        lease.owned("s", 2, 1);
        lease.forget("s", 1);
        assert!(lease.checked.contains_key(&("s".to_string(), 2)));
        assert!(!lease.checked.contains_key(&("s".to_string(), 1)));
    }
}

//! What each plugin namespace holds, across the fleet, for its quota.
//!
//! The database keeps the count itself: triggers on `kv` and `kv_volatile` add every change to
//! `kv_usage` and `kv_volatile_usage` in the same transaction (see `schema.rs`), whoever makes it,
//! so keys that expire, and are swept, give their room back, and a gateway that dies loses nothing
//! from the count. This gateway reads the sums every quarter lease, and adds its own changes
//! since to them, so it refuses a write past a quota at once; the other gateways' changes reach
//! it a read later, so the fleet may overshoot a quota by what they wrote in that interval.

use std::collections::HashMap;
use std::sync::Mutex;

use dashmap::DashMap;
use deadpool_postgres::Pool;

use super::super::quota::{Delta, Quota, Usage as Held};
use super::super::{Durability, StoreError};
use super::deadline::within;

/// The usage key of a namespace: `kv:<plugin>` (durable) or `volatile:<plugin>`.
fn key(durability: Durability, namespace: &str) -> String {
    match durability {
        Durability::Durable => format!("kv:{namespace}"),
        Durability::Volatile => format!("volatile:{namespace}"),
    }
}

/// The fleet's usage, as this gateway knows it.
#[derive(Debug, Default)]
pub(super) struct Usage {
    quotas: DashMap<String, Quota>,
    /// The fleet's committed usage, as last read.
    fleet: Mutex<HashMap<String, Held>>,
    /// This gateway's changes since the last read.
    pending: Mutex<HashMap<String, Delta>>,
}

impl Usage {
    /// Sets a plugin's quota (durable and volatile each).
    pub(super) fn set_quota(&self, namespace: &str, quota: Quota) {
        for durability in [Durability::Durable, Durability::Volatile] {
            self.quotas.insert(key(durability, namespace), quota);
        }
    }

    /// A namespace's quota.
    pub(super) fn quota(&self, durability: Durability, namespace: &str) -> Quota {
        self.quotas
            .get(&key(durability, namespace))
            .map_or(Quota::UNLIMITED, |q| *q)
    }

    fn held(&self, key: &str) -> Held {
        let fleet = self
            .fleet
            .lock()
            .expect("usage")
            .get(key)
            .copied()
            .unwrap_or_default();
        match self.pending.lock().expect("usage").get(key) {
            Some(delta) => fleet.after(*delta),
            None => fleet,
        }
    }

    /// Refuses `delta` when it would take the namespace past its quota.
    pub(super) fn admit(
        &self,
        durability: Durability,
        namespace: &str,
        delta: Delta,
        quota: Quota,
    ) -> Result<(), StoreError> {
        self.held(&key(durability, namespace))
            .admit(delta, quota, namespace)
    }

    /// Books a change this gateway made, until the next read counts it.
    pub(super) fn book(&self, durability: Durability, namespace: &str, delta: Delta) {
        if delta == Delta::default() {
            return;
        }
        self.pending
            .lock()
            .expect("usage")
            .entry(key(durability, namespace))
            .or_default()
            .add(delta);
    }

    /// Reads the fleet's sums, which now count this gateway's changes.
    pub(super) async fn refresh(&self, pool: &Pool) -> Result<(), String> {
        let read = within(async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            client
                .query(
                    "SELECT 'kv:' || namespace, sum(keys)::BIGINT, sum(bytes)::BIGINT
                         FROM kv_usage GROUP BY namespace
                     UNION ALL
                     SELECT 'volatile:' || namespace, sum(keys)::BIGINT, sum(bytes)::BIGINT
                         FROM kv_volatile_usage GROUP BY namespace",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
        let fleet = read
            .iter()
            .map(|row| {
                let count = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
                let held = Held {
                    keys: count(1),
                    bytes: count(2),
                };
                (row.get::<_, String>(0), held)
            })
            .collect();
        *self.fleet.lock().expect("usage") = fleet;
        self.pending.lock().expect("usage").clear();
        Ok(())
    }

    /// The fleet's usage by namespace (admin).
    pub(super) fn snapshot(&self) -> Vec<(String, Held)> {
        let mut all: Vec<(String, Held)> = self
            .fleet
            .lock()
            .expect("usage")
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Folds the rows of connections that are gone into one row per namespace, so the tables stay
/// as small as the number of live connections. Exact whatever runs meanwhile: a row is moved,
/// never dropped, and one still written to is waited for and moved with its latest value.
pub(super) const FOLD_USAGE: [&str; 2] = [
    "WITH gone AS (DELETE FROM kv_usage WHERE slot <> 0
         AND slot NOT IN (SELECT pid FROM pg_stat_activity) RETURNING namespace, keys, bytes)
     INSERT INTO kv_usage (namespace, slot, keys, bytes)
     SELECT namespace, 0, sum(keys), sum(bytes) FROM gone GROUP BY namespace ORDER BY namespace
     ON CONFLICT (namespace, slot) DO UPDATE
     SET keys = kv_usage.keys + excluded.keys, bytes = kv_usage.bytes + excluded.bytes",
    "WITH gone AS (DELETE FROM kv_volatile_usage WHERE slot <> 0
         AND slot NOT IN (SELECT pid FROM pg_stat_activity) RETURNING namespace, keys, bytes)
     INSERT INTO kv_volatile_usage (namespace, slot, keys, bytes)
     SELECT namespace, 0, sum(keys), sum(bytes) FROM gone GROUP BY namespace ORDER BY namespace
     ON CONFLICT (namespace, slot) DO UPDATE
     SET keys = kv_volatile_usage.keys + excluded.keys,
         bytes = kv_volatile_usage.bytes + excluded.bytes",
];

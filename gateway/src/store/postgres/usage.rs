//! What each plugin namespace holds, across the fleet. Each gateway books its own changes in
//! memory and adds them to its own row of `usage` every flush; the fleet's usage is the sum of
//! the rows, read back at the same time. No two gateways ever write one row, so bookkeeping
//! never contends. Between flushes a gateway sees its own changes at once and the others' a
//! flush late, so a quota may be overshot by what the other gateways wrote in that interval; a
//! gateway that dies loses at most its unflushed changes from the count.

use std::collections::HashMap;
use std::sync::Mutex;

use dashmap::DashMap;
use deadpool_postgres::Pool;

use super::super::quota::{Delta, Quota, Usage as Held};
use super::super::{Durability, StoreError};

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
    /// This gateway's changes since the last flush.
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

    /// Books a change this gateway made.
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

    /// Adds this gateway's changes to its rows, and reads the fleet's sums back.
    pub(super) async fn flush(&self, pool: &Pool, gateway: &str) -> Result<(), String> {
        let pending: Vec<(String, Delta)> = self.pending.lock().expect("usage").drain().collect();
        let result = self.write_and_read(pool, gateway, &pending).await;
        if result.is_err() {
            // Not written: keep the changes for the next flush.
            let mut kept = self.pending.lock().expect("usage");
            for (key, delta) in pending {
                kept.entry(key).or_default().add(delta);
            }
        }
        result
    }

    async fn write_and_read(
        &self,
        pool: &Pool,
        gateway: &str,
        pending: &[(String, Delta)],
    ) -> Result<(), String> {
        let mut client = pool.get().await.map_err(|e| e.to_string())?;
        // One transaction: the changes are added all or not at all (kept for the next flush).
        let tx = client.transaction().await.map_err(|e| e.to_string())?;
        let add = tx
            .prepare_cached(
                "INSERT INTO usage (namespace, gateway, keys, bytes) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (namespace, gateway)
                 DO UPDATE SET keys = usage.keys + excluded.keys, bytes = usage.bytes + excluded.bytes",
            )
            .await
            .map_err(|e| e.to_string())?;
        for (namespace, delta) in pending {
            tx.execute(&add, &[namespace, &gateway, &delta.keys, &delta.bytes])
                .await
                .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        let rows = client
            .query(
                "SELECT namespace, sum(keys)::BIGINT, sum(bytes)::BIGINT FROM usage GROUP BY namespace",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        let fleet = rows
            .iter()
            .map(|row| {
                let count = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
                (
                    row.get::<_, String>(0),
                    Held {
                        keys: count(1),
                        bytes: count(2),
                    },
                )
            })
            .collect();
        *self.fleet.lock().expect("usage") = fleet;
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

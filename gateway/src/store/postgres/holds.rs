//! Holds in the fleet's database: the keys that requests under way hold (the idempotency
//! plugin's "in flight"), in the `UNLOGGED` `holds` table, one row per key.
//!
//! A hold lives as long as its request, and no longer:
//! - each gateway keeps its live holds in memory, and renews exactly those every quarter lease,
//!   each for one lease. A hold whose release did not reach the database (it was down) is not
//!   renewed, so it ends by itself within `lease_ms`; so do the holds of a dead gateway;
//! - the renewal is an upsert: after a crash of the database itself empties the table, the holds
//!   of requests still running come back with the next renewal;
//! - expiry is in the database's clock, like the leases, so gateways whose clocks disagree still
//!   agree on when a hold has ended.

use bytes::Bytes;
use dashmap::DashMap;
use deadpool_postgres::Pool;

use super::super::{StoreError, to_i64, unavailable};
use super::kv::client;
use super::lease::DB_NOW_MS;

/// This gateway's live holds, by (namespace, key): the holder and its value.
#[derive(Debug, Default)]
pub(super) struct Holds {
    live: DashMap<(String, String), (u64, Bytes)>,
}

/// A hold asked for.
pub(super) struct Ask<'a> {
    pub(super) namespace: &'a str,
    pub(super) key: &'a str,
    pub(super) holder: u64,
    pub(super) value: Bytes,
}

impl Holds {
    /// Takes a hold for `ask.holder` of this gateway: `None` when it holds the key now, or the
    /// value of the request that holds it.
    pub(super) async fn take(
        &self,
        pool: &Pool,
        gateway: &str,
        ask: Ask<'_>,
        lease_ms: u64,
    ) -> Result<Option<Bytes>, StoreError> {
        let client = client(pool).await?;
        let take = client
            .prepare_cached(&format!(
                "INSERT INTO holds (namespace, key, gateway, holder, value, expires_at_ms)
                 VALUES ($1, $2, $3, $4, $5, {DB_NOW_MS} + $6)
                 ON CONFLICT (namespace, key) DO UPDATE SET gateway = excluded.gateway,
                     holder = excluded.holder,
                     value = CASE WHEN holds.gateway = excluded.gateway
                                   AND holds.holder = excluded.holder
                                  THEN holds.value ELSE excluded.value END,
                     expires_at_ms = excluded.expires_at_ms
                 WHERE holds.expires_at_ms <= {DB_NOW_MS}
                    OR (holds.gateway = excluded.gateway AND holds.holder = excluded.holder)
                 RETURNING 1"
            ))
            .await
            .map_err(unavailable)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &ask.namespace,
            &ask.key,
            &gateway,
            &to_i64(ask.holder),
            &&ask.value[..],
            &to_i64(lease_ms),
        ];
        if client
            .query_opt(&take, &params)
            .await
            .map_err(unavailable)?
            .is_some()
        {
            // A holder that takes its key again keeps the value it gave first.
            let id = (ask.namespace.to_string(), ask.key.to_string());
            self.live
                .entry(id)
                .and_modify(|held| {
                    if held.0 != ask.holder {
                        *held = (ask.holder, ask.value.clone());
                    }
                })
                .or_insert((ask.holder, ask.value));
            return Ok(None);
        }
        let read = client
            .prepare_cached("SELECT value FROM holds WHERE namespace = $1 AND key = $2")
            .await
            .map_err(unavailable)?;
        let row = client
            .query_opt(&read, &[&ask.namespace, &ask.key])
            .await
            .map_err(unavailable)?;
        // Released between the two statements: report it held; the client's retry finds it free.
        Ok(Some(row.map_or_else(Bytes::new, |r| {
            Bytes::from(r.get::<_, Vec<u8>>(0))
        })))
    }

    /// Ends a hold: no longer renewed at once, and deleted from the database (if that fails,
    /// it expires within a lease).
    pub(super) async fn release(
        &self,
        pool: &Pool,
        gateway: &str,
        namespace: &str,
        key: &str,
        holder: u64,
    ) {
        let id = (namespace.to_string(), key.to_string());
        self.live.remove_if(&id, |_, (h, _)| *h == holder);
        let Ok(client) = client(pool).await else {
            return;
        };
        let sql =
            "DELETE FROM holds WHERE namespace = $1 AND key = $2 AND gateway = $3 AND holder = $4";
        let released = async {
            let statement = client.prepare_cached(sql).await?;
            let holder = to_i64(holder);
            client
                .execute(&statement, &[&namespace, &key, &gateway, &holder])
                .await
        }
        .await;
        if let Err(error) = released {
            tracing::debug!(%error, "a hold was not released; it expires within a lease");
        }
    }

    /// Renews (or, after a crash of the database, restores) every live hold for one lease.
    pub(super) async fn renew(
        &self,
        pool: &Pool,
        gateway: &str,
        lease_ms: u64,
    ) -> Result<(), String> {
        if self.live.is_empty() {
            return Ok(());
        }
        let (mut namespaces, mut keys, mut holders, mut values) = (vec![], vec![], vec![], vec![]);
        for entry in &self.live {
            let ((namespace, key), (holder, value)) = (entry.key(), entry.value());
            namespaces.push(namespace.clone());
            keys.push(key.clone());
            holders.push(to_i64(*holder));
            values.push(value.to_vec());
        }
        let client = pool.get().await.map_err(|e| e.to_string())?;
        client
            .execute(
                &format!(
                    "INSERT INTO holds (namespace, key, gateway, holder, value, expires_at_ms)
                     SELECT n, k, $1, h, v, {DB_NOW_MS} + $2
                     FROM unnest($3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BYTEA[]) AS t(n, k, h, v)
                     ON CONFLICT (namespace, key) DO UPDATE SET expires_at_ms = excluded.expires_at_ms
                     WHERE holds.gateway = excluded.gateway AND holds.holder = excluded.holder"
                ),
                &[
                    &gateway,
                    &to_i64(lease_ms),
                    &namespaces,
                    &keys,
                    &holders,
                    &values,
                ],
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

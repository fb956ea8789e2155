//! Saga rows in the fleet's database, outside the writer: reads for requests and operators, a
//! gateway's own unfinished sagas at start, the takeover of a dead gateway's, an operator's
//! request for the owner, and expiry. The writer (`writer.rs`) does every claim and update.

use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;

use super::super::{
    EXPIRE_BATCH, SAGA_STATUSES, SagaCounts, SagaFilter, SagaKey, SagaRow, StoreError,
    saga_id_prefix, to_i64, unavailable,
};
use super::deadline::within;
use super::kv::client;
use super::lease::DB_NOW_MS;
use super::usage::FOLD_USAGE;
use super::writer::saga_row;

const SAGA_COLUMNS: &str = "id, status, created_ms, updated_ms, expires_at_ms, record, epoch, admin, route, client, request_id";

fn full_row(row: &tokio_postgres::Row) -> SagaRow {
    let key = SagaKey {
        route: row.get::<_, String>(8).into(),
        client: row.get::<_, String>(9).into(),
        request_id: row.get::<_, String>(10).into(),
    };
    saga_row(row, key)
}

async fn query(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<SagaRow>, StoreError> {
    let client = client(pool).await?;
    let statement = client.prepare_cached(sql).await.map_err(unavailable)?;
    let rows = client
        .query(&statement, params)
        .await
        .map_err(unavailable)?;
    Ok(rows.iter().map(full_row).collect())
}

/// One saga.
pub(super) async fn by_id(pool: &Pool, id: &str) -> Result<Option<SagaRow>, StoreError> {
    let sql = format!("SELECT {SAGA_COLUMNS} FROM sagas WHERE id = $1");
    Ok(query(pool, &sql, &[&id]).await?.into_iter().next())
}

/// The saga of one key, through the `(route, client, request_id)` unique index.
pub(super) async fn by_key(pool: &Pool, key: &SagaKey) -> Result<Option<SagaRow>, StoreError> {
    let sql = format!(
        "SELECT {SAGA_COLUMNS} FROM sagas WHERE route = $1 AND client = $2 AND request_id = $3"
    );
    let (route, client, request_id) = (&*key.route, &*key.client, &*key.request_id);
    Ok(query(pool, &sql, &[&route, &client, &request_id])
        .await?
        .into_iter()
        .next())
}

/// The newest sagas of the fleet, filtered as `filter` says, each filter through its index.
pub(super) async fn list(pool: &Pool, filter: SagaFilter) -> Result<Vec<SagaRow>, StoreError> {
    let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
    let (conditions, values) = filter.conditions(|n| format!("${n}"));
    let sql = format!(
        "SELECT {SAGA_COLUMNS} FROM sagas {conditions} ORDER BY id DESC LIMIT ${}",
        values.len() + 1
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as _).collect();
    params.push(&limit);
    query(pool, &sql, &params).await
}

/// How many sagas of each status, each up to `cap`, through the status index.
pub(super) async fn counts(pool: &Pool, cap: u64) -> Result<SagaCounts, StoreError> {
    let cap = to_i64(cap);
    let client = client(pool).await?;
    let statement = client
        .prepare_cached("SELECT count(*) FROM (SELECT 1 FROM sagas WHERE status = $1 LIMIT $2) s")
        .await
        .map_err(unavailable)?;
    let mut counts = Vec::with_capacity(SAGA_STATUSES.len());
    for status in SAGA_STATUSES {
        let row = client
            .query_one(&statement, &[&status, &cap])
            .await
            .map_err(unavailable)?;
        counts.push((status, row.get::<_, i64>(0).max(0) as u64));
    }
    Ok(counts)
}

/// The newest reports of `txgate reconcile` (run ids are UUID v7: they sort by time).
pub(super) async fn reconcile_runs(pool: &Pool, limit: usize) -> Result<Vec<String>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let client = client(pool).await?;
    let rows = client
        .query(
            "SELECT report FROM reconcile_runs ORDER BY id DESC LIMIT $1",
            &[&limit],
        )
        .await
        .map_err(unavailable)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The newest sagas whose id, X-Request-ID or client is `text`, through the primary key and the
/// `sagas_request_id` and `sagas_client` indexes; `filter.status` narrows each.
pub(super) async fn search(
    pool: &Pool,
    text: &str,
    filter: SagaFilter,
) -> Result<Vec<SagaRow>, StoreError> {
    let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
    let status = filter.status.unwrap_or("");
    let sql = format!(
        "SELECT {SAGA_COLUMNS} FROM sagas WHERE id IN (
            SELECT id FROM sagas WHERE id = $1 AND ($2 = '' OR status = $2)
            UNION SELECT id FROM (SELECT id FROM sagas
                WHERE request_id = $1 AND ($2 = '' OR status = $2) ORDER BY id DESC LIMIT $3) r
            UNION SELECT id FROM (SELECT id FROM sagas
                WHERE client = $1 AND ($2 = '' OR status = $2) ORDER BY id DESC LIMIT $3) c
         ) ORDER BY id DESC LIMIT $3"
    );
    query(pool, &sql, &[&text, &status, &limit]).await
}

/// This gateway's own unfinished sagas, from a run before this one. Their epoch goes up, so the
/// old run, should it still be alive somewhere, can write none of them any more.
pub(super) async fn own_unfinished(pool: &Pool, gateway: &str) -> Result<Vec<SagaRow>, StoreError> {
    let sql = format!(
        "UPDATE sagas SET epoch = epoch + 1 WHERE owner = $1 AND expires_at_ms IS NULL
         RETURNING {SAGA_COLUMNS}"
    );
    query(pool, &sql, &[&gateway]).await
}

/// Takes over at most `limit` unfinished sagas of gateways whose lease ran out, bumping each
/// one's epoch. A gateway's lease is judged by the database's clock against the lease *it*
/// declared (`lease_ms`, when its heartbeat was written by the first schema's gateways: the
/// taker's own), so a rolling change of `lease_ms` takes nothing over from a live gateway. Rows
/// another transaction holds are skipped, so gateways taking over at once never wait on each
/// other.
pub(super) async fn take_over(
    pool: &Pool,
    gateway: &str,
    lease_ms: u64,
    limit: usize,
) -> Result<Vec<SagaRow>, StoreError> {
    let (lease_ms, limit) = (to_i64(lease_ms), i64::try_from(limit).unwrap_or(i64::MAX));
    let sql = format!(
        "UPDATE sagas SET owner = $1, epoch = epoch + 1 WHERE id IN (
             SELECT s.id FROM sagas s JOIN gateways g ON g.id = s.owner
             WHERE s.expires_at_ms IS NULL AND s.owner <> $1
               AND g.heartbeat_ms + coalesce(g.lease_ms, $2) < {DB_NOW_MS}
             ORDER BY s.id LIMIT $3 FOR UPDATE OF s SKIP LOCKED)
         RETURNING {SAGA_COLUMNS}"
    );
    query(pool, &sql, &[&gateway, &lease_ms, &limit]).await
}

/// Stores an operator's `action` with an unfinished saga and announces it to the fleet. Returns
/// whether the saga was there, unfinished.
pub(super) async fn request(pool: &Pool, id: &str, action: &str) -> Result<bool, StoreError> {
    let client = client(pool).await?;
    let asked = client
        .execute(
            "UPDATE sagas SET admin = $2 WHERE id = $1 AND expires_at_ms IS NULL",
            &[&id, &action],
        )
        .await
        .map_err(unavailable)?;
    if asked == 1 {
        client
            .execute("SELECT pg_notify('txgate_admin', $1)", &[&id])
            .await
            .map_err(unavailable)?;
    }
    Ok(asked == 1)
}

/// Deletes, in batches, finished sagas older than `retention_ms` (by their id's time, so no
/// expiry index is needed), expired keys (their usage goes down with them, by the triggers) and
/// holds (by the database's clock, as they were given); then folds the usage rows of closed
/// connections. Returns how many rows went. Each statement has its deadline.
pub(super) async fn expire(pool: &Pool, now_ms: u64, retention_ms: u64) -> Result<u64, StoreError> {
    let client = within(client(pool)).await?;
    let (now, batch) = (to_i64(now_ms), to_i64(EXPIRE_BATCH));
    let before = saga_id_prefix(now_ms.saturating_sub(retention_ms));
    let sagas = "DELETE FROM sagas WHERE id IN (SELECT id FROM sagas WHERE id < $3
                     AND expires_at_ms <= $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)";
    let mut removed = 0;
    loop {
        let n = within(async {
            client
                .execute(sagas, &[&now, &batch, &before])
                .await
                .map_err(unavailable)
        })
        .await?;
        removed += n;
        if n < EXPIRE_BATCH {
            break;
        }
    }
    for (table, clock) in [("kv", "$1"), ("kv_volatile", "$1"), ("holds", DB_NOW_MS)] {
        let sql = format!(
            "DELETE FROM {table} WHERE (namespace, key) IN (SELECT namespace, key FROM {table}
                 WHERE expires_at_ms <= {clock} AND $1::BIGINT IS NOT NULL
                 LIMIT $2 FOR UPDATE SKIP LOCKED)"
        );
        loop {
            let n = within(async {
                client
                    .execute(&sql, &[&now, &batch])
                    .await
                    .map_err(unavailable)
            })
            .await?;
            removed += n;
            if n < EXPIRE_BATCH {
                break;
            }
        }
    }
    for fold in FOLD_USAGE {
        within(async { client.execute(fold, &[]).await.map_err(unavailable) }).await?;
    }
    Ok(removed)
}

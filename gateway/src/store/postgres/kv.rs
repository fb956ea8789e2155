//! Plugin keys in the fleet's database. Every read-modify-write is one statement, so a
//! compare-and-swap or an increment is atomic across the fleet and a rate limit holds for all
//! gateways at once: durable keys in `kv`, volatile ones in the `UNLOGGED` `kv_volatile`.
//!
//! Quotas: each statement also reports the size of the value it replaced, and each gateway books
//! its own changes (`usage.rs`). While a namespace is far from its quota a write runs alone; near
//! it, the write runs in a transaction that is rolled back when it would go past.

use bytes::Bytes;
use deadpool_postgres::{Object, Pool};
use tokio_postgres::types::ToSql;

use super::super::quota::Delta;
use super::super::{Applied, Durability, Mutation, StoreError, expiry, to_i64, unavailable};
use super::usage::Usage;

fn table(durability: Durability) -> &'static str {
    match durability {
        Durability::Durable => "kv",
        Durability::Volatile => "kv_volatile",
    }
}

/// A connection from the pool.
pub(super) async fn client(pool: &Pool) -> Result<Object, StoreError> {
    pool.get().await.map_err(unavailable)
}

/// The live value of a key.
pub(super) async fn get(
    pool: &Pool,
    durability: Durability,
    namespace: &str,
    key: &str,
    now_ms: u64,
) -> Result<Option<Bytes>, StoreError> {
    let client = client(pool).await?;
    let sql = format!(
        "SELECT value FROM {} WHERE namespace = $1 AND key = $2
         AND (expires_at_ms IS NULL OR expires_at_ms > $3)",
        table(durability)
    );
    let statement = client.prepare_cached(&sql).await.map_err(unavailable)?;
    let row = client
        .query_opt(&statement, &[&namespace, &key, &to_i64(now_ms)])
        .await
        .map_err(unavailable)?;
    Ok(row.map(|row| Bytes::from(row.get::<_, Vec<u8>>(0))))
}

/// One mutation's statement: its SQL (with `{t}` for the table) and its parameters. Each returns
/// one row when it changed something: `(old_len, new_len, counter)`, any of them NULL.
struct Statement {
    sql: &'static str,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
    /// What the mutation did when a row came back, and when none did.
    applied: fn(Option<i64>) -> (Applied, Applied),
}

const PUT: &str = "WITH old AS (SELECT octet_length(value) AS len FROM {t} WHERE namespace = $1 AND key = $2)
    INSERT INTO {t} (namespace, key, value, expires_at_ms) VALUES ($1, $2, $3, $4)
    ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at_ms = excluded.expires_at_ms
    RETURNING (SELECT len FROM old), octet_length(value), NULL::BIGINT";
const DELETE: &str = "DELETE FROM {t} WHERE namespace = $1 AND key = $2
    RETURNING octet_length(value), NULL::INT,
              CASE WHEN expires_at_ms IS NULL OR expires_at_ms > $3 THEN 1 ELSE 0 END::BIGINT";
const INSERT_IF_ABSENT: &str = "WITH old AS (SELECT octet_length(value) AS len FROM {t} WHERE namespace = $1 AND key = $2)
    INSERT INTO {t} (namespace, key, value, expires_at_ms) VALUES ($1, $2, $3, $4)
    ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at_ms = excluded.expires_at_ms
        WHERE {t}.expires_at_ms IS NOT NULL AND {t}.expires_at_ms <= $5
    RETURNING (SELECT len FROM old), octet_length(value), NULL::BIGINT";
const DELETE_EXPIRED: &str = "WITH gone AS (DELETE FROM {t} WHERE namespace = $1 AND key = $2
        AND expires_at_ms IS NOT NULL AND expires_at_ms <= $3 RETURNING octet_length(value) AS len)
    SELECT (SELECT len FROM gone), NULL::INT, NULL::BIGINT
    WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE namespace = $1 AND key = $2
        AND (expires_at_ms IS NULL OR expires_at_ms > $3))";
const SWAP: &str = "UPDATE {t} SET value = $4, expires_at_ms = $5
    WHERE namespace = $1 AND key = $2 AND value = $3 AND (expires_at_ms IS NULL OR expires_at_ms > $6)
    RETURNING octet_length($3::BYTEA), octet_length(value), NULL::BIGINT";
const DELETE_IF: &str = "DELETE FROM {t} WHERE namespace = $1 AND key = $2 AND value = $3
        AND (expires_at_ms IS NULL OR expires_at_ms > $4)
    RETURNING octet_length(value), NULL::INT, NULL::BIGINT";
const INCREMENT: &str = "WITH old AS (SELECT octet_length(value) AS len FROM {t} WHERE namespace = $1 AND key = $2)
    INSERT INTO {t} (namespace, key, value, expires_at_ms)
    VALUES ($1, $2, convert_to($3::BIGINT::TEXT, 'UTF8'), $4)
    ON CONFLICT (namespace, key) DO UPDATE SET
        value = convert_to((CASE WHEN {t}.expires_at_ms IS NOT NULL AND {t}.expires_at_ms <= $5 THEN 0
                                 ELSE convert_from({t}.value, 'UTF8')::BIGINT END + $3)::TEXT, 'UTF8'),
        expires_at_ms = CASE WHEN {t}.expires_at_ms IS NOT NULL AND {t}.expires_at_ms <= $5
                             THEN excluded.expires_at_ms ELSE {t}.expires_at_ms END
    RETURNING (SELECT len FROM old), octet_length(value), convert_from(value, 'UTF8')::BIGINT";

fn statement(mutation: Mutation, namespace: &str, key: &str, now_ms: u64) -> Statement {
    let now = to_i64(now_ms);
    let base = |rest: Vec<Box<dyn ToSql + Sync + Send>>| {
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> =
            vec![Box::new(namespace.to_string()), Box::new(key.to_string())];
        params.extend(rest);
        params
    };
    let at = |ttl: Option<u64>| expiry(now_ms, ttl).map(to_i64);
    match mutation {
        Mutation::Put { value, ttl_ms } => Statement {
            sql: PUT,
            params: base(vec![Box::new(value.to_vec()), Box::new(at(ttl_ms))]),
            applied: |_| (Applied::Stored, Applied::Stored),
        },
        Mutation::Delete => Statement {
            sql: DELETE,
            params: base(vec![Box::new(now)]),
            applied: |live| (Applied::Deleted(live == Some(1)), Applied::Deleted(false)),
        },
        Mutation::CompareAndSwap {
            expected: None,
            new: Some(value),
            ttl_ms,
        } => Statement {
            sql: INSERT_IF_ABSENT,
            params: base(vec![
                Box::new(value.to_vec()),
                Box::new(at(ttl_ms)),
                Box::new(now),
            ]),
            applied: |_| (Applied::Swapped(true), Applied::Swapped(false)),
        },
        Mutation::CompareAndSwap {
            expected: None,
            new: None,
            ..
        } => Statement {
            sql: DELETE_EXPIRED,
            params: base(vec![Box::new(now)]),
            applied: |_| (Applied::Swapped(true), Applied::Swapped(false)),
        },
        Mutation::CompareAndSwap {
            expected: Some(expected),
            new: Some(value),
            ttl_ms,
        } => Statement {
            sql: SWAP,
            params: base(vec![
                Box::new(expected.to_vec()),
                Box::new(value.to_vec()),
                Box::new(at(ttl_ms)),
                Box::new(now),
            ]),
            applied: |_| (Applied::Swapped(true), Applied::Swapped(false)),
        },
        Mutation::CompareAndSwap {
            expected: Some(expected),
            new: None,
            ..
        } => Statement {
            sql: DELETE_IF,
            params: base(vec![Box::new(expected.to_vec()), Box::new(now)]),
            applied: |_| (Applied::Swapped(true), Applied::Swapped(false)),
        },
        Mutation::Increment { delta, ttl_ms } => Statement {
            sql: INCREMENT,
            params: base(vec![Box::new(delta), Box::new(at(ttl_ms)), Box::new(now)]),
            applied: |counter| {
                let counter = Applied::Counter(counter.unwrap_or(0));
                (counter, counter)
            },
        },
    }
}

/// Applies one mutation, within the namespace's quota.
pub(super) async fn mutate(
    pool: &Pool,
    usage: &Usage,
    durability: Durability,
    namespace: &str,
    key: &str,
    mutation: Mutation,
    now_ms: u64,
) -> Result<Applied, StoreError> {
    let worst = match &mutation {
        Mutation::Put { value, .. }
        | Mutation::CompareAndSwap {
            new: Some(value), ..
        } => Delta::between(None, Some(key.len() + value.len())),
        Mutation::Increment { .. } => Delta::between(None, Some(key.len() + 20)),
        _ => Delta::default(),
    };
    let quota = usage.quota(durability, namespace);
    let near = usage.admit(durability, namespace, worst, quota).is_err();
    let statement = statement(mutation, namespace, key, now_ms);
    let sql = statement.sql.replace("{t}", table(durability));
    let mut client = client(pool).await?;
    let params: Vec<&(dyn ToSql + Sync)> = statement
        .params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let (row, delta) = if near {
        let tx = client.transaction().await.map_err(unavailable)?;
        let prepared = tx.prepare_cached(&sql).await.map_err(unavailable)?;
        let row = tx
            .query_opt(&prepared, &params)
            .await
            .map_err(number_or_unavailable)?;
        let delta = change(row.as_ref(), key);
        if let Err(refused) = usage.admit(durability, namespace, delta, quota) {
            tx.rollback().await.map_err(unavailable)?;
            return Err(refused);
        }
        tx.commit().await.map_err(unavailable)?;
        (row, delta)
    } else {
        let prepared = client.prepare_cached(&sql).await.map_err(unavailable)?;
        let row = client
            .query_opt(&prepared, &params)
            .await
            .map_err(number_or_unavailable)?;
        let delta = change(row.as_ref(), key);
        (row, delta)
    };
    usage.book(durability, namespace, delta);
    let (changed, unchanged) = (statement.applied)(row.as_ref().and_then(|r| r.get(2)));
    Ok(if row.is_some() { changed } else { unchanged })
}

/// The usage change a returned row reports.
fn change(row: Option<&tokio_postgres::Row>, key: &str) -> Delta {
    let Some(row) = row else {
        return Delta::default();
    };
    let size = |i: usize| {
        row.get::<_, Option<i32>>(i)
            .map(|len| key.len() + len.max(0) as usize)
    };
    Delta::between(size(0), size(1))
}

/// A value that is not a number, for `increment`, is a SQL error here.
fn number_or_unavailable(error: tokio_postgres::Error) -> StoreError {
    let invalid = error.code().is_some_and(|code| {
        *code == tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION
            || *code == tokio_postgres::error::SqlState::CHARACTER_NOT_IN_REPERTOIRE
    });
    if invalid {
        StoreError::NotANumber
    } else {
        unavailable(error)
    }
}

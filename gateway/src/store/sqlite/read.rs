//! Reads: a small pool of read-only connections (r2d2). WAL mode lets them read the last
//! committed state while the writer commits, and a point read by primary key is a few
//! microseconds from the page cache, so reads run inline on the caller's thread: cheaper than a
//! hop to another thread and back.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{OpenFlags, OptionalExtension, Row, params};

use super::super::{
    SAGA_STATUSES, SagaCounts, SagaFilter, SagaKey, SagaRow, StoreError, status_name, unavailable,
};
use crate::error::{Error, ErrorKind};

/// Read connections kept open.
const READERS_MAX: u32 = 8;
/// How long a read waits for a free connection, or for SQLite's own locks.
const READ_WAIT: Duration = Duration::from_secs(5);
/// Page cache of each read connection, KiB.
const READ_CACHE_KIB: i64 = 4096;

/// The read pool.
#[derive(Debug, Clone)]
pub(super) struct Readers {
    pool: Pool<SqliteConnectionManager>,
}

const SAGA_COLUMNS: &str =
    "id, status, created_ms, updated_ms, expires_at_ms, record, route, client, request_id";

/// How many sagas of status `?1` there are, up to `?2`: through the status index.
pub(in crate::store) const SAGAS_COUNT: &str =
    "SELECT count(*) FROM (SELECT 1 FROM sagas WHERE status = ?1 LIMIT ?2)";

/// The newest sagas whose id, X-Request-ID or client is `?1`, of status `?2` (or any, for an
/// empty one), at most `?3`: each part through its index, the id's through the primary key.
pub(in crate::store) const SAGAS_SEARCH: &str = "SELECT id, status, created_ms, updated_ms, \
     expires_at_ms, record, route, client, request_id FROM sagas WHERE id IN ( \
     SELECT id FROM sagas WHERE id = ?1 AND (?2 = '' OR status = ?2) \
     UNION SELECT id FROM (SELECT id FROM sagas WHERE request_id = ?1 \
         AND (?2 = '' OR status = ?2) ORDER BY id DESC LIMIT ?3) \
     UNION SELECT id FROM (SELECT id FROM sagas WHERE client = ?1 \
         AND (?2 = '' OR status = ?2) ORDER BY id DESC LIMIT ?3) \
     ) ORDER BY id DESC LIMIT ?3";

/// A listing's statement and its values, the limit last (its own parameter, after them).
pub(in crate::store) fn listing(filter: &SagaFilter) -> (String, Vec<String>) {
    let (conditions, values) = filter.conditions(|n| format!("?{n}"));
    let sql = format!(
        "SELECT {SAGA_COLUMNS} FROM sagas {conditions} ORDER BY id DESC LIMIT ?{}",
        values.len() + 1
    );
    (sql, values)
}

/// A saga row from `SAGA_COLUMNS` (the first six are enough when the key is known).
pub(super) fn saga_columns(row: &Row<'_>, key: SagaKey) -> rusqlite::Result<SagaRow> {
    let id: String = row.get(0)?;
    let status: String = row.get(1)?;
    let millis = |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, i64>(i)?.max(0) as u64) };
    let expires_at_ms: Option<i64> = row.get(4)?;
    let record: Vec<u8> = row.get(5)?;
    Ok(SagaRow {
        id: id.into(),
        key,
        status: status_name(&status).unwrap_or("pending"),
        created_ms: millis(2)?,
        updated_ms: millis(3)?,
        expires_at_ms: expires_at_ms.map(|at| at.max(0) as u64),
        replaces_bytes: record.len(),
        record: Bytes::from(record),
        epoch: 1,
        admin: None,
    })
}

fn full_row(row: &Row<'_>) -> rusqlite::Result<SagaRow> {
    let key = SagaKey {
        route: row.get::<_, String>(6)?.into(),
        client: row.get::<_, String>(7)?.into(),
        request_id: row.get::<_, String>(8)?.into(),
    };
    saga_columns(row, key)
}

impl Readers {
    /// Opens the pool on the database file (which the writer has already prepared).
    pub(super) fn open(path: &Path) -> Result<Self, Error> {
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|conn| {
                conn.busy_timeout(READ_WAIT)?;
                conn.execute_batch(&format!("PRAGMA cache_size = -{READ_CACHE_KIB}"))
            });
        let pool = Pool::builder()
            .max_size(READERS_MAX)
            .min_idle(Some(1))
            .connection_timeout(READ_WAIT)
            .build(manager)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Store,
                    format!("{}: cannot open read connections", path.display()),
                )
                .with_cause(e)
            })?;
        Ok(Self { pool })
    }

    fn with<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.pool.get().map_err(unavailable)?;
        read(&conn).map_err(unavailable)
    }

    /// A plugin key's value and expiry.
    pub(super) fn key(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<(Bytes, Option<u64>)>, StoreError> {
        self.with(|conn| {
            conn.prepare_cached(
                "SELECT value, expires_at_ms FROM kv WHERE namespace = ?1 AND key = ?2",
            )?
            .query_row(params![namespace, key], |r| {
                let value: Vec<u8> = r.get(0)?;
                let at: Option<i64> = r.get(1)?;
                Ok((Bytes::from(value), at.map(|at| at.max(0) as u64)))
            })
            .optional()
        })
    }

    /// One saga by id.
    pub(super) fn saga_by_id(&self, id: &str) -> Result<Option<SagaRow>, StoreError> {
        self.with(|conn| {
            conn.prepare_cached(&format!("SELECT {SAGA_COLUMNS} FROM sagas WHERE id = ?1"))?
                .query_row(params![id], full_row)
                .optional()
        })
    }

    /// The saga of one key, through the `(route, client, request_id)` unique index.
    pub(super) fn saga_by_key(&self, key: &SagaKey) -> Result<Option<SagaRow>, StoreError> {
        self.with(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SAGA_COLUMNS} FROM sagas WHERE route = ?1 AND client = ?2 AND request_id = ?3"
            ))?
            .query_row(
                params![&*key.route, &*key.client, &*key.request_id],
                full_row,
            )
            .optional()
        })
    }

    /// The newest sagas, filtered as `filter` says, each filter through its index.
    pub(super) fn sagas(&self, filter: SagaFilter) -> Result<Vec<SagaRow>, StoreError> {
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let (sql, values) = listing(&filter);
        self.with(|conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let mut params: Vec<&dyn rusqlite::ToSql> =
                values.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
            params.push(&limit);
            let rows = statement.query_map(params.as_slice(), full_row)?;
            rows.collect()
        })
    }

    /// How many sagas of each status, each up to `cap`: a count of a million rows would take a
    /// page view's whole budget.
    pub(super) fn counts(&self, cap: u64) -> Result<SagaCounts, StoreError> {
        let cap = i64::try_from(cap).unwrap_or(i64::MAX);
        self.with(|conn| {
            let mut statement = conn.prepare_cached(SAGAS_COUNT)?;
            SAGA_STATUSES
                .into_iter()
                .map(|status| {
                    let n: i64 = statement.query_row(params![status, cap], |row| row.get(0))?;
                    Ok((status, n.max(0) as u64))
                })
                .collect()
        })
    }

    /// The newest sagas whose id, X-Request-ID or client is `text`, through the primary key and
    /// the `sagas_request_id` and `sagas_client` indexes; `filter.status` narrows each.
    pub(super) fn search(
        &self,
        text: &str,
        filter: SagaFilter,
    ) -> Result<Vec<SagaRow>, StoreError> {
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let status = filter.status.unwrap_or("");
        self.with(|conn| {
            let mut statement = conn.prepare_cached(SAGAS_SEARCH)?;
            let rows = statement.query_map(params![text, status, limit], full_row)?;
            rows.collect()
        })
    }

    /// The newest reports of `txgate reconcile` (run ids are UUID v7: they sort by time).
    pub(super) fn reconcile_runs(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT report FROM reconcile_runs ORDER BY id DESC LIMIT ?1")?;
            let rows = statement.query_map(params![limit], |row| row.get(0))?;
            rows.collect()
        })
    }

    /// Every unfinished saga, oldest first.
    pub(super) fn unfinished(&self) -> Result<Vec<SagaRow>, StoreError> {
        self.with(|conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {SAGA_COLUMNS} FROM sagas WHERE expires_at_ms IS NULL ORDER BY id"
            ))?;
            let rows = statement.query_map([], full_row)?;
            rows.collect()
        })
    }
}

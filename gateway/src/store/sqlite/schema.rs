//! The database file: its schema, and the checks made before the gateway trusts it.
//!
//! One file, `txgate.db`, in the store directory (plus SQLite's own `-wal` and `-shm`). The
//! PostgreSQL backend uses the same shape:
//!
//! - `sagas`: one row per (route, client, X-Request-ID), with the status, the times, and the
//!   engine's record (postcard) in `record`. `owner` and `epoch` are the fleet's fencing columns;
//!   one embedded gateway leaves them at their defaults. A partial index finds the unfinished
//!   sagas. Expired ones need no index of their own: a saga id is a UUID v7, which begins with
//!   its creation time, and a saga expires no sooner than `retention_secs` after it was
//!   created, so expiry only looks at ids older than that;
//! - `kv`: plugin keys per namespace (the plugin's name), with an optional expiry;
//! - `usage`: the keys and bytes each namespace holds, kept in the same transactions as the
//!   rows, so quotas hold across restarts without a scan at start;
//! - the schema version in `PRAGMA user_version`, and `PRAGMA application_id` set to "TXGT", so
//!   that a file that is not ours is never written to.
//!
//! Version 2 indexes sagas by status, so that an operator's listing of one status (`?status=
//! compensated` among millions of completed sagas) reads the rows it returns, not the table.
//! Version 3 indexes them by X-Request-ID and by client, for an operator's search (`?q=`).
//! Version 4 keeps the runs of `txgate reconcile` (`reconcile_runs`, the newest few, each as
//! its JSON report), which the console shows.

use std::path::Path;

use rusqlite::{Connection, ErrorCode};

use crate::error::{Error, ErrorKind};

/// `PRAGMA application_id`: "TXGT".
pub(super) const APPLICATION_ID: i32 = 0x5458_4754;
/// The schema this build reads and writes.
pub(super) const SCHEMA_VERSION: i32 = 4;

/// From version 1 to 2.
const UPGRADE_2: &str = "CREATE INDEX IF NOT EXISTS sagas_status ON sagas (status, id);";
/// From version 2 to 3.
const UPGRADE_3: &str = "
CREATE INDEX IF NOT EXISTS sagas_request_id ON sagas (request_id, id);
CREATE INDEX IF NOT EXISTS sagas_client ON sagas (client, id);
CREATE INDEX IF NOT EXISTS sagas_route ON sagas (route, id);
";
/// From version 3 to 4.
const UPGRADE_4: &str = "
CREATE TABLE IF NOT EXISTS reconcile_runs (
    id TEXT NOT NULL PRIMARY KEY,
    report TEXT NOT NULL
);
";

const SCHEMA: &str = "
CREATE TABLE sagas (
    id TEXT NOT NULL PRIMARY KEY,
    route TEXT NOT NULL,
    client TEXT NOT NULL,
    request_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    owner TEXT NOT NULL DEFAULT '',
    epoch INTEGER NOT NULL DEFAULT 0,
    record BLOB NOT NULL,
    UNIQUE (route, client, request_id)
);
CREATE INDEX sagas_unfinished ON sagas (id) WHERE expires_at_ms IS NULL;
CREATE INDEX sagas_status ON sagas (status, id);
CREATE INDEX sagas_request_id ON sagas (request_id, id);
CREATE INDEX sagas_client ON sagas (client, id);
CREATE INDEX sagas_route ON sagas (route, id);
CREATE TABLE kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at_ms INTEGER,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX kv_expiry ON kv (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE TABLE usage (
    namespace TEXT NOT NULL PRIMARY KEY,
    keys INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TABLE reconcile_runs (
    id TEXT NOT NULL PRIMARY KEY,
    report TEXT NOT NULL
);
";

/// Files of the store format before SQLite: a directory holding them is refused.
const OLD_FORMAT: [(&str, &str); 2] = [("wal-", ".log"), ("snapshot-", ".snap")];

/// Refuses a directory written by the old log-based store.
pub(super) fn refuse_old_format(dir: &Path) -> Result<(), Error> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if OLD_FORMAT
            .iter()
            .any(|(start, end)| name.starts_with(start) && name.ends_with(end))
        {
            return Err(Error::new(
                ErrorKind::Store,
                format!(
                    "{}: this directory holds a store in the old log format ({name}), which this \
                     version cannot read; move it away, or point [store] dir at an empty directory",
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// What is wrong with `path`, in words an operator can act on.
pub(super) fn explain(path: &Path, error: &rusqlite::Error) -> Error {
    let file = path.display();
    let detail = match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            format!("{file} is not a SQLite database, so not a txgate store")
        }
        Some(ErrorCode::DatabaseCorrupt) => {
            format!(
                "{file} is damaged (SQLite reports it corrupt); it is left as it is for inspection"
            )
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            format!("{file} cannot be opened for writing")
        }
        _ => format!("{file}: {error}"),
    };
    Error::new(ErrorKind::Store, detail).with_cause(error.to_string())
}

/// Checks that the file is a txgate store of this schema (creating the schema in a new file),
/// and sets the connection up for writing: WAL, `synchronous = FULL`.
pub(super) fn prepare(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    let fail = |e: rusqlite::Error| explain(path, &e);
    let application_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(fail)?;
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(fail)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(fail)?;
    match (application_id, version) {
        (0, 0) if tables == 0 => create(conn).map_err(fail)?,
        (APPLICATION_ID, SCHEMA_VERSION) => {}
        (APPLICATION_ID, 1..=3) => upgrade(conn).map_err(fail)?,
        (APPLICATION_ID, newer) if newer > SCHEMA_VERSION => {
            return Err(Error::new(
                ErrorKind::Store,
                format!(
                    "{}: written by a newer txgate (schema {newer}; this build reads {SCHEMA_VERSION})",
                    path.display()
                ),
            ));
        }
        _ => {
            return Err(Error::new(
                ErrorKind::Store,
                format!(
                    "{}: a SQLite database, but not a txgate store; it is left untouched",
                    path.display()
                ),
            ));
        }
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::new(
            ErrorKind::Store,
            format!(
                "{}: cannot switch to WAL mode (got `{mode}`)",
                path.display()
            ),
        ));
    }
    conn.execute_batch("PRAGMA synchronous = FULL")
        .map_err(fail)?;
    Ok(())
}

fn upgrade(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(UPGRADE_2)?;
    tx.execute_batch(UPGRADE_3)?;
    tx.execute_batch(UPGRADE_4)?;
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))?;
    tx.commit()
}

fn create(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA)?;
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))?;
    tx.commit()
}

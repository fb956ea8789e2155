//! Reconcile's access to the embedded store's file (see `store/books.rs`).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, params};

use super::schema::{APPLICATION_ID, SCHEMA_VERSION, explain};
use crate::error::{Error, ErrorKind};
use crate::store::books::{Finished, Page, RUNS_KEPT};
use crate::store::to_i64;

/// How long a statement waits for the gateway's writer to let go of the file.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// Opens an existing store file of this schema, for reading sagas and writing reports.
pub(in crate::store) fn open(path: &Path) -> Result<Connection, Error> {
    if !path.exists() {
        return Err(Error::new(
            ErrorKind::Store,
            format!(
                "{}: no store here (store.dir); start the gateway or run `txgate migrate` first",
                path.display()
            ),
        ));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| explain(path, &e))?;
    conn.busy_timeout(BUSY_WAIT)
        .map_err(|e| explain(path, &e))?;
    let (application_id, version): (i32, i32) = conn
        .query_row(
            "SELECT application_id, user_version FROM pragma_application_id, pragma_user_version",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| explain(path, &e))?;
    if application_id != APPLICATION_ID || version != SCHEMA_VERSION {
        return Err(Error::new(
            ErrorKind::Store,
            format!(
                "{}: not a txgate store of schema {SCHEMA_VERSION} (found {version}); run \
                 `txgate migrate` with this build first",
                path.display()
            ),
        ));
    }
    Ok(conn)
}

/// Finished sagas of the window, newest first: a walk down the primary key from the window's
/// end (no saga created after it can have finished in it), reading only the rows whose end
/// falls in the window.
pub(in crate::store) fn finished(
    conn: &Connection,
    page: Page<'_>,
) -> Result<Vec<Finished>, Error> {
    let below = page.below();
    let limit = to_i64(page.limit as u64);
    let read = || -> rusqlite::Result<Vec<Finished>> {
        let mut statement = conn.prepare_cached(
            "SELECT id, record FROM sagas WHERE id < ?1 AND expires_at_ms IS NOT NULL \
             AND updated_ms >= ?2 AND updated_ms < ?3 ORDER BY id DESC LIMIT ?4",
        )?;
        let rows = statement.query_map(
            params![below, to_i64(page.since_ms), to_i64(page.until_ms), limit],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    Bytes::from(row.get::<_, Vec<u8>>(1)?),
                ))
            },
        )?;
        rows.collect()
    };
    read().map_err(|e| Error::new(ErrorKind::Store, "cannot read the sagas").with_cause(e))
}

/// Keeps a report, and the newest `RUNS_KEPT` only, in one transaction.
pub(in crate::store) fn record_run(
    conn: &mut Connection,
    id: &str,
    report: &str,
) -> Result<(), Error> {
    let write = |conn: &mut Connection| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO reconcile_runs (id, report) VALUES (?1, ?2)",
            params![id, report],
        )?;
        tx.execute(
            "DELETE FROM reconcile_runs WHERE id NOT IN \
             (SELECT id FROM reconcile_runs ORDER BY id DESC LIMIT ?1)",
            params![to_i64(RUNS_KEPT as u64)],
        )?;
        tx.commit()
    };
    write(conn).map_err(|e| Error::new(ErrorKind::Store, "cannot record the run").with_cause(e))
}

//! Reconcile's access to the fleet's database (see `store/books.rs`): one session of its own.

use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio_postgres::Client;

use super::connect::{self, Session};
use super::schema::SCHEMA_VERSION;
use crate::error::{Error, ErrorKind};
use crate::store::books::{Finished, Page, RUNS_KEPT};
use crate::store::{described, to_i64};

/// Reconcile's session: its statements may walk many sagas, so a minute each at most.
const SESSION: Session = Session {
    idle_in_transaction: Duration::from_secs(60),
    statement_timeout: Some(Duration::from_secs(60)),
};

fn failed(what: &str, error: &tokio_postgres::Error) -> Error {
    Error::new(ErrorKind::Store, format!("{what}: {}", described(error)))
}

/// Connects as `txgate reconcile` and checks the schema.
pub(in crate::store) async fn open(url: &str) -> Result<Client, Error> {
    let config = connect::config(url, "reconcile", SESSION)?;
    let database = connect::describe(&config);
    let (client, _driver) = connect::open(config, Handle::current())
        .await
        .map_err(|e| {
            failed(
                &format!("cannot reach the database {database} (store.url)"),
                &e,
            )
        })?;
    let version: Option<i32> = client
        .query_opt("SELECT version FROM txgate_schema", &[])
        .await
        .map_err(|e| failed(&format!("{database}: no txgate schema"), &e))?
        .map(|row| row.get(0));
    if version != Some(SCHEMA_VERSION) {
        return Err(Error::new(
            ErrorKind::Store,
            format!(
                "{database}: not a txgate store of schema {SCHEMA_VERSION} (found {version:?}); \
                 run `txgate migrate` with this build first"
            ),
        ));
    }
    Ok(client)
}

/// Finished sagas of the window, newest first, down the primary key from the window's end.
pub(in crate::store) async fn finished(
    client: &Client,
    page: Page<'_>,
) -> Result<Vec<Finished>, Error> {
    let below = page.below();
    let rows = client
        .query(
            "SELECT id, record FROM sagas WHERE id < $1 AND expires_at_ms IS NOT NULL \
             AND updated_ms >= $2 AND updated_ms < $3 ORDER BY id DESC LIMIT $4",
            &[
                &below,
                &to_i64(page.since_ms),
                &to_i64(page.until_ms),
                &to_i64(page.limit as u64),
            ],
        )
        .await
        .map_err(|e| failed("cannot read the sagas", &e))?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), Bytes::from(row.get::<_, Vec<u8>>(1))))
        .collect())
}

/// Keeps a report, and the newest `RUNS_KEPT` only, in one transaction.
pub(in crate::store) async fn record_run(
    client: &mut Client,
    id: &str,
    report: &str,
) -> Result<(), Error> {
    let keep = to_i64(RUNS_KEPT as u64);
    let write = async {
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO reconcile_runs (id, report) VALUES ($1, $2)",
            &[&id, &report],
        )
        .await?;
        tx.execute(
            "DELETE FROM reconcile_runs WHERE id NOT IN \
             (SELECT id FROM reconcile_runs ORDER BY id DESC LIMIT $1)",
            &[&keep],
        )
        .await?;
        tx.commit().await
    };
    write.await.map_err(|e| failed("cannot record the run", &e))
}

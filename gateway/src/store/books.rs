//! What `txgate reconcile` reads and writes in the store: the sagas finished in a window, page
//! by page, and the report of each run, which the console shows.
//!
//! Reconcile is a process of its own, run beside live gateways (from cron, or by hand). It opens
//! its own connection, never a gateway's store: it takes no lock, no lease and no gateway id, and
//! claims nothing. With SQLite it opens the existing file (never creating one) and shares it
//! with the gateway as SQLite allows, WAL readers beside one writer.

use bytes::Bytes;

use super::{postgres, sqlite};
use crate::config::{Backend, Config};
use crate::error::Error;

/// Reports kept: older ones are deleted when a run is recorded.
pub const RUNS_KEPT: usize = 100;

/// A finished saga: its id and encoded record.
pub type Finished = (String, Bytes);

/// The store, as reconcile reaches it.
pub enum Books {
    /// The embedded store's file.
    Sqlite(rusqlite::Connection),
    /// The fleet's database.
    Postgres(tokio_postgres::Client),
}

/// Which finished sagas a page wants: finished in `[since_ms, until_ms)`, with an id below
/// `before_id` (empty: from the newest), at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The window's start, ms since the epoch.
    pub since_ms: u64,
    /// Its end (excluded).
    pub until_ms: u64,
    /// Only ids below this one: the last of the previous page.
    pub before_id: &'a str,
    /// Most rows.
    pub limit: usize,
}

impl Page<'_> {
    /// The id every saga of the page is below: the previous page's last, or the window's end
    /// (no saga created after it can have finished in it), whichever is lower.
    pub(crate) fn below(&self) -> String {
        let until_id = super::saga_id_prefix(self.until_ms.saturating_add(1));
        if self.before_id.is_empty() || *self.before_id > *until_id {
            until_id
        } else {
            self.before_id.to_string()
        }
    }
}

impl Books {
    /// Opens the store `config` names; a store of another schema is an error that says to
    /// migrate.
    pub async fn open(config: &Config) -> Result<Self, Error> {
        match config.store.backend {
            Backend::Embedded => {
                let path = config.resolve(&config.store.dir).join(sqlite::DB_FILE);
                sqlite::books::open(&path).map(Self::Sqlite)
            }
            Backend::Postgres => postgres::books::open(&config.store.database_url())
                .await
                .map(Self::Postgres),
        }
    }

    /// One page of finished sagas, newest first.
    pub async fn finished(&self, page: Page<'_>) -> Result<Vec<Finished>, Error> {
        match self {
            Self::Sqlite(conn) => sqlite::books::finished(conn, page),
            Self::Postgres(client) => postgres::books::finished(client, page).await,
        }
    }

    /// Keeps a run's report (JSON) under its id (a UUID v7), and the newest `RUNS_KEPT` only.
    pub async fn record_run(&mut self, id: &str, report: &str) -> Result<(), Error> {
        match self {
            Self::Sqlite(conn) => sqlite::books::record_run(conn, id, report),
            Self::Postgres(client) => postgres::books::record_run(client, id, report).await,
        }
    }
}

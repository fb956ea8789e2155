//! `txgate migrate`: creates or migrates the store's schema and exits, without serving. A fleet
//! runs it once before rolling out a new build, so that no gateway migrates under traffic;
//! `txgate serve` does the same on start, so running it is never required.

use std::path::Path;
use std::sync::Arc;

use crate::config::{self, Backend};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::postgres::{self, Migrated};

/// A one-line summary of what was done.
pub fn migrate(path: &Path) -> Result<String, Error> {
    let config = config::load(path)?;
    match config.store.backend {
        Backend::Postgres => {
            let migrated = postgres::migrate(&config.store.database_url())?;
            let what = match migrated {
                Migrated::Created => "schema created",
                Migrated::Upgraded => "schema upgraded",
                Migrated::Current => "schema already current",
            };
            Ok(format!("{}: {what}", path.display()))
        }
        Backend::Embedded => {
            let store = crate::gateway::open_store(&config, &Arc::new(Metrics::new()), "migrate")?;
            store.close();
            let dir = config.resolve(&config.store.dir);
            Ok(format!(
                "{}: embedded store ready in {}",
                path.display(),
                dir.display()
            ))
        }
    }
}

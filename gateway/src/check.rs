//! `txgate check`: the config is loaded and validated exactly as `serve` would, every plugin it
//! names is compiled and asked for its hooks (so a plugin that refuses its own config, such as
//! `jwt_auth` with a bad key set, fails here), and nothing listens. Nothing is written next to
//! the config: plugins need a store behind their key-value calls, and theirs is a scratch one in
//! the system's temporary directory, removed before `check` returns.

use std::path::Path;
use std::sync::Arc;

use crate::audit::AuditLog;
use crate::config::{self, Config};
use crate::error::{Error, ErrorKind};
use crate::gateway::embedded_limits;
use crate::metrics::Metrics;
use crate::plugin::{PluginEnv, PluginSet, Runtime};
use crate::store::Embedded;

/// A one-line summary of a valid config.
pub fn check(path: &Path) -> Result<String, Error> {
    let config = config::load(path)?;
    if !config.plugins.is_empty() {
        check_plugins(&config)?;
    }
    Ok(format!(
        "{}: OK ({} routes, {} upstreams, {} plugins)",
        path.display(),
        config.routes.len(),
        config.upstreams.len(),
        config.plugins.len()
    ))
}

/// Builds the config's plugins as a start would, against a scratch store.
fn check_plugins(config: &Config) -> Result<(), Error> {
    let scratch = tempfile::Builder::new()
        .prefix("txgate-check-")
        .tempdir()
        .map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot create a scratch directory: {e}"),
            )
        })?;
    let metrics = Arc::new(Metrics::new());
    let store = Embedded::open(scratch.path(), embedded_limits(config), None)?;
    let env = PluginEnv {
        runtime: Runtime::new()?,
        store: Arc::new(store),
        metrics: metrics.clone(),
        boot_id: Arc::from("check"),
        // Audit events a plugin emits while asked for its hooks go to the log, not to a file.
        audit: Arc::new(AuditLog::open(None, "check", metrics)?),
    };
    PluginSet::check(config, &env)
}

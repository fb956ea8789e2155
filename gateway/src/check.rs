//! `txgate check`: the config is loaded and validated exactly as `serve` would, and every plugin it
//! names is compiled. Nothing listens and nothing is written.

use std::path::Path;

use crate::config;
use crate::error::Error;

/// A one-line summary of a valid config.
pub fn check(path: &Path) -> Result<String, Error> {
    let config = config::load(path)?;
    crate::plugin::check_all(&config)?;
    Ok(format!(
        "{}: OK ({} routes, {} upstreams, {} plugins)",
        path.display(),
        config.routes.len(),
        config.upstreams.len(),
        config.plugins.len()
    ))
}

//! Logs go to stderr through `tracing`; `TXGATE_LOG` filters them (RUST_LOG syntax, default
//! `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The environment variable holding the log filter.
pub const FILTER_ENV: &str = "TXGATE_LOG";

/// Installs the global subscriber. A bad filter falls back to `info` and says so.
pub fn init(format: LogFormat) {
    let (filter, bad_filter) = match EnvFilter::try_from_env(FILTER_ENV) {
        Ok(filter) => (filter, None),
        Err(error) => {
            let bad = std::env::var(FILTER_ENV).ok().map(|value| (value, error));
            (EnvFilter::new("info"), bad)
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let Some((value, error)) = bad_filter.filter(|(value, _)| !value.is_empty()) {
        tracing::warn!(filter = %value, %error, "ignoring the invalid {FILTER_ENV} filter");
    }
}

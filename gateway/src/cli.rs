//! The command line (SPEC §1): `txgate serve`, `txgate check`, `txgate migrate` and `txgate
//! reconcile`, each taking `--config`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// txgate: an edge gateway for money-moving HTTP APIs.
#[derive(Debug, Parser)]
#[command(name = "txgate", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr; the level comes from the TXGATE_LOG filter (RUST_LOG syntax).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// The config file.
        #[arg(short, long, default_value = "txgate.toml")]
        config: PathBuf,
    },
    /// Validate the config and compile every plugin it names; print each error and exit 1.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "txgate.toml")]
        config: PathBuf,
    },
    /// Create or migrate the store's schema (`serve` does it too), then exit.
    Migrate {
        /// The config file.
        #[arg(short, long, default_value = "txgate.toml")]
        config: PathBuf,
    },
    /// Compare the sagas finished in a window with what each backend holds. Exit 0 when the
    /// books agree, 1 when anything disagrees, 2 when the check could not be made or finished.
    Reconcile {
        /// The config file.
        #[arg(short, long, default_value = "txgate.toml")]
        config: PathBuf,
        /// The window's start: an RFC 3339 time, or a duration back from now (`1h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// The window's end, likewise; now by default.
        #[arg(long)]
        until: Option<String>,
        /// A table and a summary, or one JSON line per finding.
        #[arg(long, value_enum, default_value_t = crate::reconcile::Format::Table)]
        format: crate::reconcile::Format,
    },
}

//! How a plugin call can fail, as the gateway counts and reports it.

use std::fmt;

use crate::config::OnError;
use crate::metrics::Name;

/// What went wrong in a plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin trapped (a panic, an unreachable, a WASI call it may not make).
    Trap,
    /// It ran past `timeout_ms` of its own execution, or `wall_timeout_ms` of wall time.
    Timeout,
    /// It tried to grow its memory past `memory_limit_bytes`.
    Memory,
    /// It returned something the gateway refuses (too large, malformed).
    Output,
    /// It said it failed (`hook-error::failed`).
    Failed,
    /// A new instance could not be made.
    Instantiate,
    /// No instance was free within `wall_timeout_ms`: the plugin's bound on instances in use
    /// was reached (see `pool.rs`). The plugin was not called.
    Busy,
}

impl FailureKind {
    /// The metrics label (`txgate_plugin_errors_total{kind}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::Output => "output",
            Self::Failed => "failed",
            Self::Instantiate => "instantiate",
            Self::Busy => "busy",
        }
    }
}

/// A plugin call that did not produce a result.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The plugin.
    pub plugin: Name,
    /// What went wrong.
    pub kind: FailureKind,
    /// The details.
    pub detail: String,
    /// The plugin's policy.
    pub on_error: OnError,
}

impl Failure {
    /// What a client is told: the kind of failure, never the plugin's own message or the
    /// gateway's limits and quotas (a plugin may put anything in its error, such as key names
    /// or store errors). The specifics go to the log and the metrics (`LoadedPlugin::fail`).
    pub fn client_detail(&self) -> String {
        let what = match self.kind {
            FailureKind::Trap => "stopped with an error",
            FailureKind::Timeout => "did not finish in time",
            FailureKind::Memory => "ran out of memory",
            FailureKind::Output => "gave an answer the gateway refuses",
            FailureKind::Failed => "could not decide on the request",
            FailureKind::Instantiate => "could not be started",
            FailureKind::Busy => "was too busy to take the request",
        };
        format!("a plugin on this route {what}; try again later")
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin `{}` failed ({}): {}",
            self.plugin,
            self.kind.as_str(),
            self.detail
        )
    }
}

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

//! `txgate:plugin/log`: plugin messages become tracing events tagged with the plugin's name.

use crate::plugin::bindings::txgate::plugin::log::{Host, Level};
use crate::plugin::state::HostState;

/// Longest message kept; the rest is cut so a plugin cannot flood the logs.
const MESSAGE_BYTES_MAX: usize = 4096;

impl Host for HostState {
    fn log(&mut self, level: Level, mut message: String) {
        let mut end = message.len().min(MESSAGE_BYTES_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        let plugin = self.shared.name.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => {
                tracing::error!(plugin, "{message}");
                // Kept, not copied: a refusal to load quotes it (`instance.rs`).
                self.last_error = Some(message);
            }
        }
    }
}

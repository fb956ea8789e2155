//! Sleeps in `on-request` for the milliseconds named in the `x-sleep-ms` header, with
//! `std::thread::sleep` (a WASI clock subscription and poll): a wait, not a CPU loop, so only
//! the gateway's wall-clock bound (`wall_timeout_ms`) can cut it.

use std::time::Duration;

use txgate_plugin_sdk::{HookError, Plugin, Request, RequestDecision};

/// The plugin.
pub struct Sleeper;

#[txgate_plugin_sdk::plugin]
impl Plugin for Sleeper {
    fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let ms: u64 = request
            .header("x-sleep-ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(ms));
        Ok(RequestDecision::pass())
    }
}

txgate_plugin_sdk::export!(Sleeper);

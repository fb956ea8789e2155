//! Passes every request on unchanged: the cost of a hook call with nothing in it.

use txgate_plugin_sdk::{HookError, Plugin, Request, RequestDecision};

/// The plugin.
pub struct Noop;

#[txgate_plugin_sdk::plugin]
impl Plugin for Noop {
    fn on_request(_request: &Request<'_>) -> Result<RequestDecision, HookError> {
        Ok(RequestDecision::pass())
    }
}

txgate_plugin_sdk::export!(Noop);

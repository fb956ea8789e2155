//! Panics in `on-request` when the path contains `trap` (a WebAssembly trap), and passes
//! otherwise: a trap must fail only the request that hit it.

use txgate_plugin_sdk::{HookError, Plugin, Request, RequestDecision};

/// The plugin.
pub struct Trapper;

#[txgate_plugin_sdk::plugin]
impl Plugin for Trapper {
    fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
        if request.path().contains("trap") {
            panic!("deliberate trap for {}", request.path());
        }
        Ok(RequestDecision::pass())
    }
}

txgate_plugin_sdk::export!(Trapper);

//! Never returns from `on-request`: the gateway's per-call deadline must cut it.

use txgate_plugin_sdk::{HookError, Plugin, Request, RequestDecision};

/// The plugin.
pub struct Looper;

#[txgate_plugin_sdk::plugin]
impl Plugin for Looper {
    fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let mut spins: u64 = request.path().len() as u64;
        loop {
            spins = std::hint::black_box(spins.wrapping_mul(31).wrapping_add(7));
            if spins == 0 {
                return Ok(RequestDecision::pass());
            }
        }
    }
}

txgate_plugin_sdk::export!(Looper);

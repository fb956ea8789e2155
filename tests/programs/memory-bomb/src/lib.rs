//! Allocates memory without bound in `on-request`: the gateway's memory cap must stop it.

use txgate_plugin_sdk::{HookError, Plugin, Request, RequestDecision};

/// The plugin.
pub struct MemoryBomb;

#[txgate_plugin_sdk::plugin]
impl Plugin for MemoryBomb {
    fn on_request(_request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xAB; 1024 * 1024]);
            std::hint::black_box(&hoard);
        }
    }
}

txgate_plugin_sdk::export!(MemoryBomb);

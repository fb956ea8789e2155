//! Writes 256 KiB values under new keys (`<x-request-id>-<n>`) until the store refuses, then
//! answers 200 with `{"stored": N, "error": "..."}`: a plugin author flooding the key-value
//! store, which the plugin's quota must stop.

use txgate_plugin_sdk::serde_json::json;
use txgate_plugin_sdk::{HookError, Plugin, Request, RequestDecision, Response, kv};

/// Bytes per value.
const VALUE_BYTES: usize = 256 * 1024;
/// Writes per request, at most.
const WRITES_MAX: usize = 256;

/// The plugin.
pub struct Flooder;

#[txgate_plugin_sdk::plugin]
impl Plugin for Flooder {
    fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let value = vec![b'x'; VALUE_BYTES];
        let mut stored = 0;
        let mut error = String::new();
        for n in 0..WRITES_MAX {
            match kv::set(&format!("{}-{n}", request.request_id()), &value, None) {
                Ok(()) => stored += 1,
                Err(e) => {
                    error = e.to_string();
                    break;
                }
            }
        }
        let body = json!({ "stored": stored, "error": error });
        Ok(RequestDecision::Respond(Response::json(200, &body)))
    }
}

txgate_plugin_sdk::export!(Flooder);

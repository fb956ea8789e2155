//! Answers every request with a 12 MiB body and 10,000 headers: the gateway must bound what it
//! takes from a plugin.

use txgate_plugin_sdk::{HookError, Plugin, Request, RequestDecision, Response};

/// The plugin.
pub struct BigOutput;

#[txgate_plugin_sdk::plugin]
impl Plugin for BigOutput {
    fn on_request(_request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let mut response = Response::new(200).with_body(vec![b'x'; 12 * 1024 * 1024]);
        for i in 0..10_000 {
            response
                .headers
                .push(txgate_plugin_sdk::Header::new(format!("x-h-{i}"), "v"));
        }
        Ok(RequestDecision::Respond(response))
    }
}

txgate_plugin_sdk::export!(BigOutput);

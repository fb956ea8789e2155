//! Counts its `on-response` calls per request (by `X-Request-ID` and the client's `x-attempt`)
//! in its volatile key-value store, and shows the count as `x-on-response-calls`: a request whose
//! response went through `on-response` twice shows 2.

use txgate_plugin_sdk::{HookError, Plugin, Request, ResponseChanges, ResponseView, kv};

/// The plugin.
pub struct Counter;

#[txgate_plugin_sdk::plugin]
impl Plugin for Counter {
    fn on_response(
        request: &Request<'_>,
        _response: &ResponseView<'_>,
    ) -> Result<ResponseChanges, HookError> {
        let attempt = request.header("x-attempt").unwrap_or_default();
        let key = format!("calls:{}:{attempt}", request.request_id());
        let calls = kv::increment(&key, 1, Some(600_000))
            .map_err(|e| HookError::Failed(format!("{e:?}")))?;
        Ok(ResponseChanges::none().set("x-on-response-calls", &calls.to_string()))
    }
}

txgate_plugin_sdk::export!(Counter);

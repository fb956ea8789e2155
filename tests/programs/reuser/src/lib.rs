//! A plugin author using `decisions::reuse`. Every `on-request` call counts itself in the
//! key-value store and passes the count upstream as `x-decided`, then declares the decision
//! reusable on the `x-key` header for a minute: a request the gateway answered from a reused
//! decision reaches the upstream with an earlier call's count. With `x-emit` the call also emits
//! an audit event, and with `x-answer` it answers 403 itself: the gateway must reuse neither.
//! With `x-bad-vary` it declares an upper-case name straight through the host import (the SDK
//! would refuse it before the call), and tells the gateway's refusal in `x-reuse-refused`.
//!
//! `on-response` does the same with its own count (`responses`), sent to the client as
//! `x-responded` and declared reusable on `x-key` (`decisions::reuse_response`). With `x-body` on
//! the request it also replaces the body, and with `x-emit` it emits an audit event: the gateway
//! must remember neither.

use txgate_plugin_sdk::serde_json::json;
use txgate_plugin_sdk::{
    HeaderChanges, HookError, Plugin, Request, RequestDecision, Response, ResponseChanges,
    ResponseView, audit, decisions, kv,
};

/// The plugin.
pub struct Reuser;

#[txgate_plugin_sdk::plugin]
impl Plugin for Reuser {
    fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let calls = kv::increment("calls", 1, None)?;
        if request.header("x-bad-vary").is_some() {
            let changes = HeaderChanges::none().set("x-reuse-refused", &declare_upper_case());
            return Ok(RequestDecision::Continue(changes));
        }
        decisions::reuse(&["x-key"], 60_000).map_err(|e| HookError::failed(e.to_string()))?;
        if request.header("x-emit").is_some() {
            audit::emit("decided", &json!({"calls": calls}))
                .map_err(|e| HookError::failed(e.to_string()))?;
        }
        if request.header("x-answer").is_some() {
            let answer = Response::new(403).with_header("x-decided", &calls.to_string());
            return Ok(RequestDecision::Respond(answer));
        }
        let changes = HeaderChanges::none().set("x-decided", &calls.to_string());
        Ok(RequestDecision::Continue(changes))
    }

    fn on_response(
        request: &Request<'_>,
        _response: &ResponseView<'_>,
    ) -> Result<ResponseChanges, HookError> {
        let responses = kv::increment("responses", 1, None)?;
        decisions::reuse_response(&["x-key"], 60_000)
            .map_err(|e| HookError::failed(e.to_string()))?;
        if request.header("x-emit").is_some() {
            audit::emit("responded", &json!({"responses": responses}))
                .map_err(|e| HookError::failed(e.to_string()))?;
        }
        let changes = ResponseChanges::none().set("x-responded", &responses.to_string());
        Ok(match request.header("x-body") {
            Some(_) => changes.body(format!("response {responses}")),
            None => changes,
        })
    }
}

/// What the gateway says to `X-Key`, asked without the SDK's own check: its refusal as the SDK
/// words it, or `no`.
fn declare_upper_case() -> String {
    #[cfg(target_arch = "wasm32")]
    {
        use txgate_plugin_sdk::__private::bindings::txgate::plugin::decisions as raw;
        match raw::reuse(&["X-Key".to_string()], 60_000) {
            Ok(()) => "no".into(),
            Err(raw::ReuseError::InvalidVary) => decisions::ReuseError::InvalidVary.to_string(),
            Err(raw::ReuseError::InvalidTtl) => decisions::ReuseError::InvalidTtl.to_string(),
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        "no".into()
    }
}

txgate_plugin_sdk::export!(Reuser);

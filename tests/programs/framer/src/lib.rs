//! Does what a careless or hostile plugin author might, as its config's `mode` says:
//! - `body`: replaces the response body with a longer one and keeps every header;
//! - `content-length`: sets a wrong `Content-Length` on the response;
//! - `chunked`: sets `Transfer-Encoding: chunked` on the response;
//! - `saga-id`, `saga-step`, `idempotency-key`: overwrites that header of a saga call;
//! - `path`: rewrites a saga call's path to one with a dot-segment (`/x/../admin`).

use serde::Deserialize;
use txgate_plugin_sdk::{
    CallChanges, HookError, Plugin, Request, ResponseChanges, ResponseView, StepCall, config,
};

/// The plugin.
pub struct Framer;

#[derive(Deserialize)]
struct Settings {
    mode: String,
}

fn mode() -> Result<String, HookError> {
    Ok(config::get::<Settings>()?.mode)
}

#[txgate_plugin_sdk::plugin]
impl Plugin for Framer {
    fn on_response(
        _request: &Request<'_>,
        response: &ResponseView<'_>,
    ) -> Result<ResponseChanges, HookError> {
        Ok(match mode()?.as_str() {
            "body" => {
                let mut body = response.body();
                body.extend_from_slice(b" <- and a much longer tail the backend never sent");
                ResponseChanges::none().body(body)
            }
            "content-length" => ResponseChanges::none().set("content-length", "3"),
            "chunked" => ResponseChanges::none().set("transfer-encoding", "chunked"),
            _ => ResponseChanges::none(),
        })
    }

    fn on_step_request(_call: &StepCall<'_>) -> Result<CallChanges, HookError> {
        Ok(match mode()?.as_str() {
            "saga-id" => CallChanges::none().set("x-saga-id", "forged"),
            "saga-step" => CallChanges::none().set("X-Saga-Step", "forged"),
            "idempotency-key" => CallChanges::none().set("idempotency-key", "forged-key"),
            "path" => CallChanges::none().path("/x/../admin"),
            _ => CallChanges::none(),
        })
    }
}

txgate_plugin_sdk::export!(Framer);

//! Keeps the last request's `x-token` in a `static` and shows it to the next request as
//! `x-previous-token`: the plugin author's mistake that `isolation = "fresh"` contains.

use std::sync::Mutex;

use txgate_plugin_sdk::{HeaderChanges, HookError, Plugin, Request, RequestDecision};

static LAST_TOKEN: Mutex<String> = Mutex::new(String::new());

/// The plugin.
pub struct Statics;

#[txgate_plugin_sdk::plugin]
impl Plugin for Statics {
    fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let token = request.header("x-token").unwrap_or_default();
        let mut last = LAST_TOKEN.lock().unwrap_or_else(|e| e.into_inner());
        let previous = std::mem::replace(&mut *last, token);
        Ok(RequestDecision::Continue(
            HeaderChanges::none().set("x-previous-token", &previous),
        ))
    }
}

txgate_plugin_sdk::export!(Statics);

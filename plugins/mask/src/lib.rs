//! # txgate-plugin-mask
//!
//! Data masking of JSON response bodies, in `on-response`: plain proxied answers and saga
//! answers alike. Each rule names values with a JSONPath (`$`, `.name`, `[*]`, `[n]`,
//! `..name`, see `path.rs`) and a masker (`maskers.rs`); `luhn_scan` also masks card numbers
//! inside any string. Only the masked values change: every other byte of the body stays as the
//! upstream sent it (`walk.rs`). Status and headers are kept; the gateway frames the new body.
//!
//! ```toml
//! [plugins.mask]
//! module = "mask.wasm"
//! [plugins.mask.config]
//! rules = [
//!   { path = "$..card_number", mask = "keep_last", keep = 4 },
//!   { path = "$.customer.email", mask = "email" },
//!   { path = "$.customer.phones[*]", mask = "phone" },
//!   { path = "$.customer.ssn", mask = "redact" },
//! ]
//! luhn_scan = true          # default false
//! non_json = "reject"       # default "pass"
//! body_bytes_max = 1048576  # larger bodies are refused (502), never passed unmasked
//! ```
//!
//! The config is checked when the gateway loads the plugin: a mistake is logged with its key
//! (`rules[1].path: ...`) and the plugin refuses to load, so the gateway refuses the config
//! rather than serve unmasked data.

mod maskers;
mod path;
mod settings;
mod walk;

use std::sync::Arc;

use settings::{NonJson, Settings};
use txgate_plugin_sdk::{
    Hook, HookError, Plugin, Request, Response, ResponseChanges, ResponseView, config, log,
};
use walk::{DEPTH_MAX, Refusal};

/// Headers that describe the upstream's body, dropped when the plugin answers 502 instead.
const BODY_HEADERS: [&str; 7] = [
    "content-encoding",
    "content-disposition",
    "content-language",
    "content-location",
    "content-range",
    "etag",
    "last-modified",
];

fn settings() -> Result<Arc<Settings>, HookError> {
    config::shared::<Settings>()
}

/// The 502 problem+json that replaces an answer the plugin will not pass.
fn refused(request: &Request<'_>, slug: &str, detail: &str) -> ResponseChanges {
    log::warn(&format!(
        "mask: route {}: answered 502: {detail}",
        request.route()
    ));
    let problem = Response::problem(502, slug, "Bad gateway", detail, &request.request_id());
    let mut changes = ResponseChanges::none().status(502);
    for name in BODY_HEADERS {
        changes = changes.remove(name);
    }
    for header in &problem.headers {
        changes = changes.set(&header.name, &header.value);
    }
    changes.body(problem.body)
}

/// The plugin.
pub struct MaskPlugin;

#[txgate_plugin_sdk::plugin]
impl Plugin for MaskPlugin {
    /// Checks the config as the gateway loads the plugin. A bad config traps: the gateway then
    /// refuses the whole config, with the plugin's logged reason naming the key.
    fn hooks() -> Vec<Hook> {
        if let Err(error) = settings() {
            log::error(&format!("mask: {error}"));
            panic!("mask: {error}");
        }
        vec![Hook::OnResponse]
    }

    fn on_response(
        request: &Request<'_>,
        response: &ResponseView<'_>,
    ) -> Result<ResponseChanges, HookError> {
        let settings = settings()?;
        if !settings.masks() && settings.non_json == NonJson::Pass {
            return Ok(ResponseChanges::none());
        }
        let body = response.body();
        // An empty body (204, HEAD) holds nothing to hide, and is no JSON to refuse.
        if body.is_empty() {
            return Ok(ResponseChanges::none());
        }
        if body.len() > settings.body_bytes_max {
            let detail = format!(
                "the upstream's answer is larger than the {} bytes this route masks",
                settings.body_bytes_max
            );
            return Ok(refused(request, "response-not-maskable", &detail));
        }
        Ok(
            match walk::mask(&body, &settings.rules, settings.luhn_scan) {
                Ok(Some(masked)) => ResponseChanges::none().body(masked),
                Ok(None) => ResponseChanges::none(),
                Err(Refusal::NotJson) if settings.non_json == NonJson::Pass => {
                    ResponseChanges::none()
                }
                Err(Refusal::NotJson) => refused(
                    request,
                    "response-not-json",
                    "the upstream's answer is not JSON, and this route passes only masked JSON",
                ),
                Err(Refusal::TooDeep) => refused(
                    request,
                    "response-not-maskable",
                    &format!(
                        "the upstream's answer nests deeper than {DEPTH_MAX} levels; it cannot be masked"
                    ),
                ),
            },
        )
    }
}

txgate_plugin_sdk::export!(MaskPlugin);

#[cfg(test)]
mod tests;

//! # txgate-plugin-audit
//!
//! One audit event per request (SPEC §5.1): from `on-response`, the event `request` with the
//! request's `route`, `method`, final `status`, `latency_ms`, `client`, the identity `claims`
//! an earlier plugin (`jwt_auth`) put in request headers, the `saga_id` and the saga's
//! `outcome` (its answer's `status`) when a saga ran, and the extra `fields` the config names.
//!
//! ```toml
//! [plugins.audit]
//! module = "audit.wasm"
//! [plugins.audit.config]
//! claims = { sub = "X-User-ID" }              # claim name -> the header jwt_auth sets
//! fields = { amount = "$.amount", tenant = "header:X-Tenant" }
//! ```
//!
//! The gateway tags each event with what only it knows (time, gateway, plugin, request id,
//! route, client, saga id) outside `fields`, so nothing here could forge those; the copies in
//! `fields` are for readers of `fields` alone. Every value copied from the request or the
//! response is cut to 1 KiB (`value.rs`), and `claims` and `fields` hold at most 8 entries
//! together (`settings.rs`), so an event always fits the gateway's 16 KiB.

mod json_path;
mod settings;
mod value;

use serde::Deserialize;
use settings::{Settings, Source};
use txgate_plugin_sdk::serde_json::{self, Map, Value};
use txgate_plugin_sdk::{
    Hook, HookError, Plugin, Request, ResponseChanges, ResponseView, audit, config, log,
};

/// The event's name.
pub const EVENT: &str = "request";

/// The plugin.
pub struct Audit;

#[txgate_plugin_sdk::plugin]
impl Plugin for Audit {
    /// Asked once when the gateway loads the plugin, so the config is checked then. A plugin
    /// cannot return an error from `hooks`, and an audit trail with holes must not go live
    /// quietly: a mistake is logged (naming its key) and traps here, and the gateway refuses
    /// the config, at start or at a reload (which keeps the running version).
    fn hooks() -> Vec<Hook> {
        if let Err(HookError::Failed(why)) = config::shared::<Settings>() {
            log::error(&why);
            panic!("{why}");
        }
        vec![Hook::OnResponse]
    }

    fn on_response(
        request: &Request<'_>,
        response: &ResponseView<'_>,
    ) -> Result<ResponseChanges, HookError> {
        let settings = config::shared::<Settings>()?;
        let fields = event_fields(&settings, request, response);
        // The response is already decided (a saga may have moved money): failing it over its
        // audit line would tell the client something false, so, like the gateway's own audit
        // writer, this logs and lets the response go. The event's bounds make it unreachable.
        if let Err(e) = audit::emit(EVENT, &fields) {
            log::error(&format!("audit event not written: {e}"));
        }
        Ok(ResponseChanges::none())
    }
}

/// The event's `fields`: the standard ones, then the configured extras.
fn event_fields(settings: &Settings, request: &Request<'_>, response: &ResponseView<'_>) -> Value {
    let saga_id = request.saga_id();
    let outcome = saga_id.as_ref().and_then(|_| saga_outcome(response));
    let text_or_null = |text: Option<String>| text.map_or(Value::Null, |t| value::text(&t));
    let mut fields = Map::new();
    fields.insert("route".into(), value::text(&request.route()));
    fields.insert("method".into(), value::text(&request.method()));
    fields.insert("status".into(), response.status().into());
    fields.insert("latency_ms".into(), request.elapsed_ms().into());
    fields.insert("client".into(), text_or_null(request.client()));
    fields.insert("claims".into(), claims(settings, request));
    fields.insert("saga_id".into(), text_or_null(saga_id));
    fields.insert("outcome".into(), text_or_null(outcome));
    extras(settings, request, &mut fields);
    Value::Object(fields)
}

/// Each configured claim's header, as the plugins before this one left the request.
fn claims(settings: &Settings, request: &Request<'_>) -> Value {
    let claims = settings
        .claims
        .iter()
        .map(|(claim, header)| {
            let value = request
                .header(header)
                .map_or(Value::Null, |v| value::text(&v));
            (claim.clone(), value)
        })
        .collect();
    Value::Object(claims)
}

/// The configured extra fields. The body is read and parsed once, and only if a field needs it;
/// a body that is not JSON gives null to every body field, as a missing value does.
fn extras(settings: &Settings, request: &Request<'_>, fields: &mut Map<String, Value>) {
    let body: Option<Value> = if settings.reads_body() {
        serde_json::from_slice(&request.body()).ok()
    } else {
        None
    };
    for (name, source) in &settings.fields {
        let found = match source {
            Source::Header(header) => request.header(header).map(|v| value::text(&v)),
            Source::Body(path) => body.as_ref().and_then(|b| path.find(b)).map(value::bounded),
        };
        fields.insert(name.clone(), found.unwrap_or(Value::Null));
    }
}

/// The saga answer's `status` (`completed`, `compensated`, `pending`, ...). None when the
/// response is not a saga answer: a plugin may have answered instead, or rewritten the body.
fn saga_outcome(response: &ResponseView<'_>) -> Option<String> {
    /// Only `status` is kept; serde skips the rest of the answer without building it.
    #[derive(Deserialize)]
    struct Answer {
        status: Option<Value>,
    }
    let answer: Answer = serde_json::from_slice(&response.body()).ok()?;
    match answer.status? {
        Value::String(status) => Some(status),
        _ => None,
    }
}

txgate_plugin_sdk::export!(Audit);

#[cfg(test)]
mod tests;

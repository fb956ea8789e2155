//! A plugin author trying to forge the audit stream. From `on-response` it emits one event,
//! `forged`, whose fields claim another request id, route, client, saga, gateway and time; then
//! an event with an invalid name and one whose fields are not an object. The gateway's answers
//! to those two go back in the response headers `x-audit-invalid-name` and
//! `x-audit-not-object` (`ok` if one was written), so a test can see them refused.

use txgate_plugin_sdk::serde_json::{Value, json};
use txgate_plugin_sdk::{HookError, Plugin, Request, ResponseChanges, ResponseView, audit};

/// The value every forged tag carries.
const FORGED: &str = "forged";

/// The plugin.
pub struct AuditForger;

fn outcome(result: Result<(), audit::AuditError>) -> String {
    result.map_or_else(|e| e.to_string(), |()| "ok".to_string())
}

#[txgate_plugin_sdk::plugin]
impl Plugin for AuditForger {
    fn on_response(
        _request: &Request<'_>,
        _response: &ResponseView<'_>,
    ) -> Result<ResponseChanges, HookError> {
        let forged = json!({
            "ts": FORGED, "gateway": FORGED, "plugin": FORGED, "event": FORGED,
            "request_id": FORGED, "route": FORGED, "client": FORGED, "saga_id": FORGED,
        });
        audit::emit("forged", &forged).map_err(|e| HookError::failed(e.to_string()))?;
        let invalid_name = outcome(audit::emit("Request ID", &json!({})));
        let not_object = outcome(audit::emit("list", &Value::from(vec![1, 2])));
        Ok(ResponseChanges::none()
            .set("x-audit-invalid-name", &invalid_name)
            .set("x-audit-not-object", &not_object))
    }
}

txgate_plugin_sdk::export!(AuditForger);

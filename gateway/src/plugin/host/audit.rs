//! `txgate:plugin/audit`: a plugin names an event and gives its fields; the gateway says what
//! the event is about (request, route, client, saga) from the views it lent for the call under
//! way, so a plugin cannot forge those, and writes the line to the audit stream.

use serde_json::value::RawValue;
use wasmtime::component::Resource;

use crate::audit::Subject;
use crate::plugin::bindings::txgate::plugin::audit::{AuditError, Host};
use crate::plugin::state::HostState;
use crate::plugin::view::{CallView, RequestView};

/// Largest `fields` object, as JSON text.
const FIELDS_BYTES_MAX: usize = 16 * 1024;
/// Most events one hook call may emit.
pub(crate) const EVENTS_PER_CALL_MAX: u32 = 16;
/// Longest event name.
const NAME_BYTES_MAX: usize = 64;

impl Host for HostState {
    fn emit(&mut self, name: String, fields: String) -> Result<(), AuditError> {
        if !valid_name(&name) {
            return Err(AuditError::InvalidName);
        }
        if fields.len() > FIELDS_BYTES_MAX {
            return Err(AuditError::TooLarge);
        }
        if self.audit_emitted >= EVENTS_PER_CALL_MAX {
            return Err(AuditError::LimitReached);
        }
        let fields: Box<RawValue> =
            serde_json::from_str(&fields).map_err(|e| AuditError::InvalidFields(e.to_string()))?;
        if !fields.get().starts_with('{') {
            return Err(AuditError::InvalidFields("not a JSON object".into()));
        }
        self.audit_emitted += 1;
        let subject = self.subject();
        self.shared
            .audit
            .write(&self.shared.name, &name, &subject, &fields);
        Ok(())
    }
}

impl HostState {
    /// What the call under way is about: the request lent to a request hook, or the saga call
    /// lent to a saga hook.
    fn subject(&self) -> Subject {
        for (rep, _) in &self.lent {
            if let Ok(view) = self.table.get(&Resource::<RequestView>::new_borrow(*rep)) {
                let facts = &view.0;
                return Subject {
                    request_id: facts.request_id.to_str().ok().map(str::to_string),
                    route: Some(facts.route.to_string()),
                    client: facts.client(),
                    saga_id: self
                        .scope
                        .as_ref()
                        .and_then(|scope| scope.saga_id())
                        .map(|id| id.to_string()),
                };
            }
            if let Ok(view) = self.table.get(&Resource::<CallView>::new_borrow(*rep)) {
                let call = &view.0;
                return Subject {
                    request_id: Some(call.request_id.to_string()),
                    route: Some(call.route.to_string()),
                    client: None,
                    saga_id: Some(call.saga_id.to_string()),
                };
            }
        }
        Subject::default()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn event_names_are_short_lower_case_words() {
        assert!(valid_name("request"));
        assert!(valid_name("auth.denied-2_x"));
        assert!(!valid_name(""));
        assert!(!valid_name("Request"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("\"request_id\""));
        assert!(!valid_name(&"a".repeat(65)));
    }
}

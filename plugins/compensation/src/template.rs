//! Compensation body templates: a JSON value in which any string `"$request.a.b"` or
//! `"$response.a.b"` is replaced by the value at that path in the step action's JSON request or
//! response, and `"$saga_id"` by the saga's id. Path segments are object keys or array indexes;
//! `"$request"` alone is the whole body. A path that does not exist is an error naming it: a
//! compensation is never sent half-filled.

use txgate_plugin_sdk::serde_json::Value;

/// The values a template may draw from.
pub(crate) struct Sources<'a> {
    /// The action's request body, when it is JSON.
    pub(crate) request: Option<&'a Value>,
    /// The action's response body, when one came and it is JSON.
    pub(crate) response: Option<&'a Value>,
    /// The saga id.
    pub(crate) saga_id: &'a str,
}

/// Fills a template.
pub(crate) fn fill(template: &Value, sources: &Sources<'_>) -> Result<Value, String> {
    match template {
        Value::String(text) => resolve(text, sources),
        Value::Array(items) => items
            .iter()
            .map(|v| fill(v, sources))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| fill(v, sources).map(|v| (k.clone(), v)))
            .collect::<Result<_, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

fn resolve(text: &str, sources: &Sources<'_>) -> Result<Value, String> {
    if text == "$saga_id" {
        return Ok(Value::String(sources.saga_id.to_string()));
    }
    let (root, name, path) = if let Some(path) = text.strip_prefix("$request") {
        (sources.request, "request", path)
    } else if let Some(path) = text.strip_prefix("$response") {
        (sources.response, "response", path)
    } else {
        return Ok(Value::String(text.to_string()));
    };
    if !(path.is_empty() || path.starts_with('.')) {
        return Ok(Value::String(text.to_string()));
    }
    let root = root.ok_or_else(|| format!("`{text}`: the action's {name} has no JSON body"))?;
    path.split('.')
        .skip(1)
        .try_fold(root, |value, segment| {
            let next = match value {
                Value::Object(fields) => fields.get(segment),
                Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            next.ok_or_else(|| format!("`{text}`: the action's {name} has no `{segment}`"))
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::json;

    fn sources<'a>(request: &'a Value, response: Option<&'a Value>) -> Sources<'a> {
        Sources {
            request: Some(request),
            response,
            saga_id: "saga-9",
        }
    }

    #[test]
    fn paths_reach_into_objects_and_arrays() {
        let request = json!({"from": "alice", "legs": [{"amount": 5}, {"amount": 7}]});
        let response = json!({"tx": {"id": "t-1"}});
        let template = json!({
            "account": "$request.from",
            "amount": "$request.legs.1.amount",
            "undo_of": "$response.tx.id",
            "saga": "$saga_id",
            "fixed": 3,
            "literal": "plain text",
            "list": ["$request.from", true],
        });
        let filled = fill(&template, &sources(&request, Some(&response))).unwrap();
        assert_eq!(
            filled,
            json!({"account": "alice", "amount": 7, "undo_of": "t-1", "saga": "saga-9", "fixed": 3, "literal": "plain text", "list": ["alice", true]})
        );
    }

    #[test]
    fn a_missing_path_is_an_error_that_names_it() {
        let request = json!({"from": "alice"});
        let error = fill(&json!({"a": "$request.to"}), &sources(&request, None)).unwrap_err();
        assert!(
            error.contains("$request.to") && error.contains("`to`"),
            "{error}"
        );
        let error = fill(
            &json!({"a": "$request.from.deeper"}),
            &sources(&request, None),
        )
        .unwrap_err();
        assert!(error.contains("deeper"), "{error}");
        let error = fill(&json!({"a": "$request.0"}), &sources(&json!([]), None)).unwrap_err();
        assert!(error.contains("`0`"), "{error}");
    }

    #[test]
    fn a_response_that_never_came_cannot_fill_a_template() {
        let request = json!({});
        let error = fill(&json!("$response.id"), &sources(&request, None)).unwrap_err();
        assert!(error.contains("no JSON body"), "{error}");
    }

    #[test]
    fn whole_bodies_and_look_alikes() {
        let request = json!({"x": 1});
        let filled = fill(
            &json!(["$request", "$requests.x", "costs $5"]),
            &sources(&request, None),
        )
        .unwrap();
        assert_eq!(filled, json!([{"x": 1}, "$requests.x", "costs $5"]));
    }
}

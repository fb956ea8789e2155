//! Bounds every value an event copies from a request or a response, so that one large header
//! or body member cannot crowd the rest of the event out of the gateway's 16 KiB.

use txgate_plugin_sdk::serde_json::{self, Value};

/// Largest value, as JSON text (quotes and escapes included).
pub(crate) const VALUE_BYTES_MAX: usize = 1024;

/// `text` as a JSON string of at most [`VALUE_BYTES_MAX`] bytes: cut at a character boundary
/// when longer.
pub(crate) fn text(text: &str) -> Value {
    Value::String(cut(text).to_string())
}

/// `value` if its JSON text fits in [`VALUE_BYTES_MAX`]; otherwise that text, cut, as a string
/// (an object or array too large keeps its beginning, readable, rather than vanishing).
pub(crate) fn bounded(value: &Value) -> Value {
    match value {
        Value::String(s) => text(s),
        Value::Array(_) | Value::Object(_) => {
            let json = value.to_string();
            if json.len() <= VALUE_BYTES_MAX {
                value.clone()
            } else {
                text(&json)
            }
        }
        // A number, a boolean or null is short: serde_json reads numbers as 64-bit values.
        other => other.clone(),
    }
}

/// The longest prefix of `text` whose JSON string form fits in [`VALUE_BYTES_MAX`].
fn cut(text: &str) -> &str {
    let mut used = 2; // the quotes
    for (at, c) in text.char_indices() {
        used += escaped_len(c);
        if used > VALUE_BYTES_MAX {
            return &text[..at];
        }
    }
    text
}

/// The bytes `c` takes inside a JSON string, as serde_json writes it (`\n`, `\u0001`, ...).
fn escaped_len(c: char) -> usize {
    if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
        return 1;
    }
    serde_json::to_string(&c).map_or(6, |quoted| quoted.len() - 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::json;

    fn json_len(value: &Value) -> usize {
        value.to_string().len()
    }

    #[test]
    fn short_values_are_kept_as_they_are() {
        for value in [
            json!("alice"),
            json!(12.5),
            json!(true),
            json!(null),
            json!({"a": [1, 2]}),
        ] {
            assert_eq!(bounded(&value), value);
        }
    }

    #[test]
    fn a_long_string_is_cut_to_the_limit_at_a_character_boundary() {
        let long = "é".repeat(VALUE_BYTES_MAX);
        let cut = text(&long);
        assert!(json_len(&cut) <= VALUE_BYTES_MAX);
        assert!(
            json_len(&cut) >= VALUE_BYTES_MAX - 2,
            "no more is cut than needed"
        );
        assert!(long.starts_with(cut.as_str().unwrap()));
    }

    #[test]
    fn escapes_count_as_what_they_take_in_the_event() {
        for unit in ["\u{1}", "\"", "\n", "\\", "a\u{7f}b", "€\t"] {
            let long = unit.repeat(VALUE_BYTES_MAX);
            let cut = text(&long);
            let len = json_len(&cut);
            assert!(len <= VALUE_BYTES_MAX, "{unit:?}: {len}");
            assert!(len > VALUE_BYTES_MAX - 12, "{unit:?}: cut too much: {len}");
        }
    }

    #[test]
    fn a_large_object_becomes_its_cut_json_text() {
        let big = json!({"items": vec!["xxxxxxxxxx"; 200]});
        let cut = bounded(&big);
        assert!(json_len(&cut) <= VALUE_BYTES_MAX);
        assert!(
            cut.as_str()
                .unwrap()
                .starts_with("{\"items\":[\"xxxxxxxxxx\"")
        );
    }
}

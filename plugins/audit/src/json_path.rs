//! The small JSONPath subset `fields` takes: `$`, then any number of `.name` and `[n]`.
//!
//! Only paths that name one value: an audit field holds one value, so wildcards, slices and
//! filters (which select many) are refused when the config is read, not guessed at per request.

use txgate_plugin_sdk::serde_json::Value;

/// Most steps in one path; deeper documents are not worth an audit line.
pub(crate) const STEPS_MAX: usize = 32;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `.name`: a member of an object.
    Member(String),
    /// `[n]`: an element of an array.
    Index(usize),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `$`, `$.a`, `$.a[0].b`, ...; the error says what is wrong and where.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut rest = text
            .strip_prefix('$')
            .ok_or_else(|| format!("`{text}` does not start with `$`"))?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if steps.len() == STEPS_MAX {
                return Err(format!("`{text}` has more than {STEPS_MAX} steps"));
            }
            let (step, after) = next_step(rest)
                .map_err(|why| format!("`{text}`: {why} at `{rest}`; use `.name` or `[n]`"))?;
            steps.push(step);
            rest = after;
        }
        Ok(Self { steps })
    }

    /// The value the path names in `document`, if there is one.
    pub(crate) fn find<'a>(&self, document: &'a Value) -> Option<&'a Value> {
        self.steps
            .iter()
            .try_fold(document, |value, step| match step {
                Step::Member(name) => value.as_object()?.get(name),
                Step::Index(index) => value.as_array()?.get(*index),
            })
    }
}

/// The step at the start of `rest`, and what follows it.
fn next_step(rest: &str) -> Result<(Step, &str), &'static str> {
    if let Some(after_dot) = rest.strip_prefix('.') {
        let end = after_dot.find(['.', '[']).unwrap_or(after_dot.len());
        let name = &after_dot[..end];
        if name.is_empty() {
            return Err("an empty name");
        }
        if name == "*" || name.contains(']') {
            return Err("not a plain name");
        }
        return Ok((Step::Member(name.to_string()), &after_dot[end..]));
    }
    if let Some(after_bracket) = rest.strip_prefix('[') {
        let end = after_bracket.find(']').ok_or("an unclosed `[`")?;
        let digits = &after_bracket[..end];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("not an array index");
        }
        let index = digits.parse().map_err(|_| "an array index too large")?;
        return Ok((Step::Index(index), &after_bracket[end + 1..]));
    }
    Err("an unexpected character")
}

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::json;

    fn find(path: &str, document: &Value) -> Option<Value> {
        JsonPath::parse(path).unwrap().find(document).cloned()
    }

    #[test]
    fn names_and_indexes_walk_objects_and_arrays() {
        let document = json!({"a": {"b": [10, {"c": "x"}]}, "n": 1});
        assert_eq!(find("$", &document), Some(document.clone()));
        assert_eq!(find("$.n", &document), Some(json!(1)));
        assert_eq!(find("$.a.b[0]", &document), Some(json!(10)));
        assert_eq!(find("$.a.b[1].c", &document), Some(json!("x")));
    }

    #[test]
    fn a_path_that_leads_nowhere_finds_nothing() {
        let document = json!({"a": [1], "o": {"0": "zero"}});
        assert_eq!(find("$.missing", &document), None);
        assert_eq!(find("$.a[5]", &document), None);
        assert_eq!(find("$.a.b", &document), None, "a name on an array");
        assert_eq!(find("$.o[0]", &document), None, "an index on an object");
        assert_eq!(find("$.a[0].b", &document), None, "a name on a number");
    }

    #[test]
    fn anything_outside_the_subset_is_refused_with_where() {
        for bad in [
            "", "a.b", "$.", "$..a", "$.a.", "$[", "$[x]", "$[-1]", "$[*]", "$.*", "$a", "$['a']",
            "$.a]", "$[1",
        ] {
            let error = JsonPath::parse(bad).expect_err(bad);
            assert!(error.contains(&format!("`{bad}`")), "{bad}: {error}");
        }
        let deep = format!("${}", ".a".repeat(STEPS_MAX + 1));
        assert!(JsonPath::parse(&deep).unwrap_err().contains("steps"));
        assert!(JsonPath::parse(&format!("${}", ".a".repeat(STEPS_MAX))).is_ok());
    }
}

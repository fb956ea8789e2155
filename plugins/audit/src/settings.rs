//! The plugin's config, checked once when it is read: every mistake names its key.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::json_path::JsonPath;

/// Most entries in `claims` and `fields` together. With every value cut to
/// [`crate::value::VALUE_BYTES_MAX`] and names to [`NAME_BYTES_MAX`], this keeps the largest
/// possible event under the gateway's 16 KiB (`audit::FIELDS_BYTES_MAX`); a unit test in
/// `lib.rs` builds that event.
pub(crate) const ENTRIES_MAX: usize = 8;
/// Longest name of a claim or an extra field.
pub(crate) const NAME_BYTES_MAX: usize = 64;
/// Longest header name the config may point at.
const HEADER_NAME_BYTES_MAX: usize = 256;

/// The names the plugin sets itself; an extra field may not take one over.
pub(crate) const STANDARD_FIELDS: [&str; 8] = [
    "route",
    "method",
    "status",
    "latency_ms",
    "client",
    "claims",
    "saga_id",
    "outcome",
];

/// `[plugins.NAME.config]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Written {
    /// Claim name to the request header that holds it (the ones `jwt_auth` sets).
    claims: BTreeMap<String, String>,
    /// Extra field name to `"header:NAME"` or a JSONPath into the request body.
    fields: BTreeMap<String, String>,
}

/// Where an extra field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A request header, by its lower-case name.
    Header(String),
    /// A value in the request's JSON body.
    Body(JsonPath),
}

/// The checked config.
#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "Written")]
pub(crate) struct Settings {
    /// Claim name and the header that holds it.
    pub(crate) claims: Vec<(String, String)>,
    /// Extra field name and its source.
    pub(crate) fields: Vec<(String, Source)>,
}

impl Settings {
    /// Whether any extra field reads the request body (so the body is read only then).
    pub(crate) fn reads_body(&self) -> bool {
        self.fields
            .iter()
            .any(|(_, source)| matches!(source, Source::Body(_)))
    }
}

impl TryFrom<Written> for Settings {
    type Error = String;

    fn try_from(written: Written) -> Result<Self, String> {
        let entries = written.claims.len() + written.fields.len();
        if entries > ENTRIES_MAX {
            return Err(format!(
                "claims, fields: {entries} entries, but at most {ENTRIES_MAX} together, so that \
                 every event fits the gateway's 16 KiB"
            ));
        }
        let mut claims = Vec::with_capacity(written.claims.len());
        for (claim, header) in written.claims {
            let key = format!("claims.{claim}");
            check_name(&key, &claim)?;
            claims.push((claim, header_name(&key, &header)?));
        }
        let mut fields = Vec::with_capacity(written.fields.len());
        for (name, spec) in written.fields {
            let key = format!("fields.{name}");
            check_name(&key, &name)?;
            if STANDARD_FIELDS.contains(&name.as_str()) {
                return Err(format!(
                    "{key}: `{name}` is a field the plugin sets itself; choose another name"
                ));
            }
            fields.push((name, source(&key, &spec)?));
        }
        Ok(Self { claims, fields })
    }
}

fn check_name(key: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(format!(
            "{key}: a name must be 1 to {NAME_BYTES_MAX} bytes long"
        ));
    }
    Ok(())
}

/// `"header:NAME"` or a JSONPath starting with `$`.
fn source(key: &str, spec: &str) -> Result<Source, String> {
    if let Some(name) = spec.strip_prefix("header:") {
        return Ok(Source::Header(header_name(key, name)?));
    }
    if spec.starts_with('$') {
        return JsonPath::parse(spec)
            .map(Source::Body)
            .map_err(|why| format!("{key}: {why}"));
    }
    Err(format!(
        "{key}: `{spec}` is neither \"header:NAME\" nor a JSONPath into the body (`$.a.b[0]`)"
    ))
}

/// A header name as HTTP allows it (RFC 9110 `token`), lower-cased.
fn header_name(key: &str, name: &str) -> Result<String, String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > HEADER_NAME_BYTES_MAX || !name.bytes().all(token) {
        return Err(format!(
            "{key}: `{name}` is not a header name (1 to {HEADER_NAME_BYTES_MAX} letters, digits \
             or `-`)"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::{self, json};

    fn parse(config: serde_json::Value) -> Result<Settings, String> {
        serde_json::from_value(config).map_err(|e| e.to_string())
    }

    #[test]
    fn claims_and_fields_are_read_with_their_sources() {
        let settings = parse(json!({
            "claims": {"sub": "X-User-ID"},
            "fields": {"amount": "$.amount", "tenant": "header:X-Tenant"},
        }))
        .unwrap();
        assert_eq!(settings.claims, [("sub".into(), "x-user-id".into())]);
        assert_eq!(settings.fields[0].0, "amount");
        assert!(matches!(settings.fields[0].1, Source::Body(_)));
        assert_eq!(settings.fields[1].1, Source::Header("x-tenant".into()));
        assert!(settings.reads_body());
        assert!(!parse(json!({})).unwrap().reads_body());
    }

    #[test]
    fn every_mistake_names_its_key() {
        let cases = [
            (json!({"fields": {"amount": "amount"}}), "fields.amount:"),
            (json!({"fields": {"amount": "$.a[x]"}}), "fields.amount:"),
            (json!({"fields": {"who": "header:"}}), "fields.who:"),
            (json!({"fields": {"who": "header:x y"}}), "fields.who:"),
            (json!({"fields": {"status": "header:x"}}), "fields.status:"),
            (json!({"fields": {"": "header:x"}}), "fields.:"),
            (json!({"claims": {"sub": "X User"}}), "claims.sub:"),
            (json!({"claim": {}}), "unknown field `claim`"),
        ];
        for (config, key) in cases {
            let error = parse(config.clone()).expect_err(&config.to_string());
            assert!(error.contains(key), "{config}: {error}");
        }
        let long = "n".repeat(NAME_BYTES_MAX + 1);
        let error = parse(json!({"fields": {long.clone(): "$"}})).unwrap_err();
        assert!(error.contains(&format!("fields.{long}:")), "{error}");
    }

    #[test]
    fn entries_are_bounded_together() {
        let fields: BTreeMap<String, String> = (0..ENTRIES_MAX)
            .map(|i| (format!("f{i}"), "$".to_string()))
            .collect();
        assert!(parse(json!({"fields": fields})).is_ok());
        let error = parse(json!({"fields": fields, "claims": {"sub": "x-user-id"}})).unwrap_err();
        assert!(error.contains("claims, fields:"), "{error}");
    }
}

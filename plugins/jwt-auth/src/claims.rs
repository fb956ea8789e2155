//! What a verified token's claims must satisfy — its times, the required claims and scopes —
//! and the headers they pass upstream.

use txgate_plugin_sdk::serde_json::{Map, Value};

use crate::settings::Settings;

/// A token's claims.
pub(crate) type Claims = Map<String, Value>;

/// Longest claim value passed as a header.
const HEADER_VALUE_BYTES_MAX: usize = 1024;

/// Checks `exp` and `nbf` (RFC 7519 §4.1.4, §4.1.5) against the gateway's clock, with
/// `leeway_secs` of skew either way. The gateway's clock, not the process's: it is the one a
/// plugin is given, and the one tests can move.
pub(crate) fn check_times(
    claims: &Claims,
    now_unix_ms: u64,
    leeway_secs: u64,
) -> Result<(), String> {
    let now = now_unix_ms as f64 / 1000.0;
    let leeway = leeway_secs as f64;
    if let Some(exp) = numeric_date(claims, "exp")?
        && now >= exp + leeway
    {
        return Err("the token has expired".into());
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && now + leeway < nbf
    {
        return Err("the token is not valid yet".into());
    }
    Ok(())
}

/// Until when a token that passes [`check_times`] now keeps passing it, in Unix ms: its `exp`
/// plus the leeway; none without an `exp` (a `nbf` already passed stays passed).
pub(crate) fn valid_until_ms(claims: &Claims, leeway_secs: u64) -> Option<u64> {
    let exp = numeric_date(claims, "exp").ok()??;
    let until = (exp + leeway_secs as f64) * 1000.0;
    // Saturating: a date far in the future (or before 1970) stays a number of ms.
    Some(until.clamp(0.0, u64::MAX as f64) as u64)
}

/// A NumericDate claim (seconds since the epoch, maybe fractional), if present.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<f64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => Ok(number.as_f64()),
        Some(_) => Err(format!("the token's `{name}` claim is not a number")),
    }
}

/// Why a valid token does not grant the request (a 403): a required claim missing, or a
/// required scope not in its space-separated `scope`.
pub(crate) fn unmet(claims: &Claims, settings: &Settings) -> Option<String> {
    if let Some(claim) = settings
        .required_claims
        .iter()
        .find(|claim| claims.get(claim.as_str()).is_none_or(Value::is_null))
    {
        return Some(format!("the token has no `{claim}` claim"));
    }
    let granted: Vec<&str> = match claims.get("scope") {
        Some(Value::String(scope)) => scope.split(' ').filter(|s| !s.is_empty()).collect(),
        _ => Vec::new(),
    };
    let missing: Vec<&str> = settings
        .required_scopes
        .iter()
        .map(String::as_str)
        .filter(|scope| !granted.contains(scope))
        .collect();
    if missing.is_empty() {
        None
    } else {
        Some(format!("the token's scope lacks `{}`", missing.join(" ")))
    }
}

/// The `(header, value)` pairs of `claims_to_headers`. A claim the token does not carry sets
/// nothing (the client's copy of the header is removed all the same). A string passes as it is,
/// a number or boolean as its JSON text. Anything else, or a value a header cannot carry
/// faithfully, refuses the token: better no request than an identity the upstream reads
/// differently from the gateway.
pub(crate) fn headers(
    claims: &Claims,
    settings: &Settings,
) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::with_capacity(settings.claims_to_headers.len());
    for (claim, header) in &settings.claims_to_headers {
        let value = match claims.get(claim) {
            None => continue,
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            Some(Value::Bool(flag)) => flag.to_string(),
            Some(_) => {
                return Err(format!(
                    "the token's `{claim}` claim is not a string, number or boolean"
                ));
            }
        };
        if !fits_a_header(&value) {
            return Err(format!(
                "the token's `{claim}` claim cannot be a header value"
            ));
        }
        pairs.push((header.clone(), value));
    }
    Ok(pairs)
}

/// Non-empty (empty would read as no header: the shared client), no control characters, no
/// edge whitespace (HTTP trims it, so " bob" would arrive as "bob"), and not too long.
fn fits_a_header(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= HEADER_VALUE_BYTES_MAX
        && value.trim() == value
        && !value.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::{self, json};

    const JWKS: &str = include_str!("../../../tests/fixtures/jwt/jwks.json");

    fn settings(config: Value) -> Settings {
        let mut config = config;
        config["jwks"] = serde_json::from_str(JWKS).unwrap();
        serde_json::from_value(config).unwrap()
    }

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn expiry_and_not_before_allow_the_leeway_and_no_more() {
        let now_ms = 1_000_000_000;
        let at = |c: Value| check_times(&claims(c), now_ms, 30);
        assert!(at(json!({"exp": 1_000_000 - 29})).is_ok());
        assert_eq!(
            at(json!({"exp": 1_000_000 - 30})).unwrap_err(),
            "the token has expired"
        );
        assert!(at(json!({"nbf": 1_000_000 + 30})).is_ok());
        assert_eq!(
            at(json!({"nbf": 1_000_000 + 31})).unwrap_err(),
            "the token is not valid yet"
        );
        assert!(
            at(json!({"exp": 1_000_000.5 - 29.0})).is_ok(),
            "fractional dates"
        );
        assert!(at(json!({"exp": "tomorrow"})).is_err());
        assert!(at(json!({})).is_ok(), "no exp: no expiry");
    }

    #[test]
    fn every_required_claim_and_scope_must_be_there() {
        let settings = settings(json!({
            "required_claims": ["tenant"],
            "required_scopes": ["transfers:write", "accounts:read"],
        }));
        let full = json!({"tenant": "t1", "scope": "accounts:read  transfers:write other"});
        assert_eq!(unmet(&claims(full), &settings), None);
        let no_tenant = json!({"tenant": null, "scope": "accounts:read transfers:write"});
        assert_eq!(
            unmet(&claims(no_tenant), &settings).unwrap(),
            "the token has no `tenant` claim"
        );
        let narrow = json!({"tenant": "t1", "scope": "accounts:read"});
        assert_eq!(
            unmet(&claims(narrow), &settings).unwrap(),
            "the token's scope lacks `transfers:write`"
        );
        let not_text = json!({"tenant": "t1", "scope": ["accounts:read", "transfers:write"]});
        assert!(unmet(&claims(not_text), &settings).is_some());
    }

    #[test]
    fn claims_become_headers_as_text_and_unusable_values_refuse_the_token() {
        let settings = settings(json!({
            "claims_to_headers": {"sub": "X-User-ID", "level": "X-Level", "admin": "X-Admin", "gone": "X-Gone"},
        }));
        let pairs = headers(
            &claims(json!({"sub": "alice", "level": 3, "admin": false})),
            &settings,
        );
        let mut pairs = pairs.unwrap();
        pairs.sort();
        assert_eq!(
            pairs,
            [
                ("x-admin".to_string(), "false".to_string()),
                ("x-level".to_string(), "3".to_string()),
                ("x-user-id".to_string(), "alice".to_string()),
            ]
        );
        for sub in [
            json!(["a"]),
            json!({"a": 1}),
            json!(null),
            json!(""),
            json!(" bob"),
            json!("a\r\nx: y"),
        ] {
            assert!(
                headers(&claims(json!({"sub": sub})), &settings).is_err(),
                "{sub}"
            );
        }
    }
}

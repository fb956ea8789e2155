//! `[plugins.NAME.config]`: parsed and checked once per instance (the gateway gives each config
//! version new instances, so a reload's new keys are parsed by new instances). A mistake is an
//! error naming its key, never a default that quietly lets tokens through.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use txgate_plugin_sdk::serde_json::Value;
use txgate_plugin_sdk::{HookError, config};

use crate::keys::KeySet;
use crate::verified::Verified;

/// Largest `leeway_secs`: clock skew, not a grace period.
const LEEWAY_SECS_MAX: u64 = 3600;
/// Most entries in `audience`, `required_claims` or `required_scopes`.
const NAMES_MAX: usize = 64;
/// Most entries in `claims_to_headers`.
const HEADERS_MAX: usize = 32;
/// Longest issuer, audience, claim, scope or header name.
const NAME_BYTES_MAX: usize = 256;
/// Largest `verified_tokens_max`; the cache is bounded in bytes too (see `verified`).
const VERIFIED_TOKENS_MAX: usize = 65_536;

/// Headers the plugin may not set from a claim: framing and routing, the token itself, and the
/// gateway's own (SPEC §3, §4): a claim must never steer those.
const RESERVED_HEADERS: [&str; 13] = [
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "host",
    "idempotency-key",
    "keep-alive",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
    "x-request-id",
    "x-saga-id",
];

/// The config as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    jwks: Value,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    audience: Option<OneOrMany>,
    #[serde(default = "default_leeway_secs")]
    leeway_secs: u64,
    #[serde(default)]
    required_claims: Vec<String>,
    #[serde(default)]
    required_scopes: Vec<String>,
    #[serde(default)]
    claims_to_headers: BTreeMap<String, String>,
    #[serde(default)]
    forward_token: bool,
    #[serde(default = "default_verified_tokens_max")]
    verified_tokens_max: usize,
}

/// `audience = "a"` or `audience = ["a", "b"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn default_leeway_secs() -> u64 {
    30
}

fn default_verified_tokens_max() -> usize {
    1024
}

/// The checked config.
pub(crate) struct Settings {
    /// The verification keys, by `kid`.
    pub(crate) keys: KeySet,
    /// The `iss` a token must carry, when set.
    pub(crate) issuer: Option<String>,
    /// The audiences one of which a token's `aud` must name; empty: `aud` is not checked.
    pub(crate) audience: Vec<String>,
    /// Allowed clock skew for `exp` and `nbf`.
    pub(crate) leeway_secs: u64,
    /// Claims a token must carry (else 403).
    pub(crate) required_claims: Vec<String>,
    /// Scopes a token's `scope` must all list (else 403).
    pub(crate) required_scopes: Vec<String>,
    /// `(claim, header)`, the header name lower-case.
    pub(crate) claims_to_headers: Vec<(String, String)>,
    /// Whether the `Authorization` header goes upstream.
    pub(crate) forward_token: bool,
    /// Tokens verified under these settings (`verified_tokens_max` of them at most).
    pub(crate) verified: Verified,
}

impl<'de> Deserialize<'de> for Settings {
    /// Type errors name their key's path (`audience[1]: invalid type ...`), and the checks
    /// below name theirs.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: Raw = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let path = error.path().to_string();
            serde::de::Error::custom(format!("{path}: {}", error.into_inner()))
        })?;
        Settings::check(raw).map_err(serde::de::Error::custom)
    }
}

impl Settings {
    fn check(raw: Raw) -> Result<Self, String> {
        if raw.verified_tokens_max > VERIFIED_TOKENS_MAX {
            return Err(format!(
                "verified_tokens_max: at most {VERIFIED_TOKENS_MAX}"
            ));
        }
        if raw.leeway_secs > LEEWAY_SECS_MAX {
            return Err(format!("leeway_secs: at most {LEEWAY_SECS_MAX}"));
        }
        if let Some(issuer) = &raw.issuer {
            check_name(issuer, "issuer")?;
        }
        let audience = match raw.audience {
            None => Vec::new(),
            Some(OneOrMany::One(one)) => vec![one],
            Some(OneOrMany::Many(many)) if !many.is_empty() => many,
            Some(OneOrMany::Many(_)) => return Err("audience: an empty list".into()),
        };
        check_names(&audience, "audience")?;
        check_names(&raw.required_claims, "required_claims")?;
        check_names(&raw.required_scopes, "required_scopes")?;
        for (index, scope) in raw.required_scopes.iter().enumerate() {
            // RFC 6749 §3.3 scope-token: it goes into `WWW-Authenticate: ... scope="..."` as is.
            if !scope
                .bytes()
                .all(|b| b == 0x21 || ((0x23..=0x7e).contains(&b) && b != b'\\'))
            {
                return Err(format!(
                    "required_scopes[{index}]: `{scope}` is not a scope token"
                ));
            }
        }
        Ok(Self {
            keys: KeySet::parse(&raw.jwks, "jwks")?,
            issuer: raw.issuer,
            audience,
            leeway_secs: raw.leeway_secs,
            required_claims: raw.required_claims,
            required_scopes: raw.required_scopes,
            claims_to_headers: headers(raw.claims_to_headers)?,
            forward_token: raw.forward_token,
            verified: Verified::new(raw.verified_tokens_max),
        })
    }
}

/// The instance's settings, parsed at its first call.
pub(crate) fn shared() -> Result<Arc<Settings>, HookError> {
    config::shared::<Settings>()
}

/// `claims_to_headers` checked: header names valid, not reserved, each set from one claim.
fn headers(table: BTreeMap<String, String>) -> Result<Vec<(String, String)>, String> {
    if table.len() > HEADERS_MAX {
        return Err(format!("claims_to_headers: at most {HEADERS_MAX} entries"));
    }
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(table.len());
    for (claim, header) in table {
        let at = format!("claims_to_headers.{claim}");
        check_name(&claim, &at)?;
        let lower = header.to_ascii_lowercase();
        if lower.is_empty() || lower.len() > NAME_BYTES_MAX || !lower.bytes().all(is_tchar) {
            return Err(format!("{at}: `{header}` is not a header name"));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-saga-") {
            return Err(format!("{at}: `{header}` cannot be set from a claim"));
        }
        if let Some((other, _)) = pairs.iter().find(|(_, h)| *h == lower) {
            return Err(format!(
                "{at}: `{header}` is already set from the claim `{other}`"
            ));
        }
        pairs.push((claim, lower));
    }
    Ok(pairs)
}

fn check_names(names: &[String], at: &str) -> Result<(), String> {
    if names.len() > NAMES_MAX {
        return Err(format!("{at}: at most {NAMES_MAX} entries"));
    }
    for (index, name) in names.iter().enumerate() {
        check_name(name, &format!("{at}[{index}]"))?;
    }
    Ok(())
}

fn check_name(name: &str, at: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(format!("{at}: 1 to {NAME_BYTES_MAX} bytes"));
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::{self, json};

    const JWKS: &str = include_str!("../../../tests/fixtures/jwt/jwks.json");

    fn parse(mut config: Value) -> Result<Settings, String> {
        config["jwks"] = serde_json::from_str(JWKS).unwrap();
        serde_json::from_value(config).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_check_nothing_optional_and_keep_the_token_back() {
        let settings = parse(json!({})).unwrap();
        assert_eq!(settings.leeway_secs, 30);
        assert!(settings.issuer.is_none() && settings.audience.is_empty());
        assert!(!settings.forward_token);
        assert!(settings.claims_to_headers.is_empty());
    }

    #[test]
    fn audience_is_one_or_many_and_headers_are_lower_cased() {
        let settings = parse(json!({
            "audience": ["a", "b"],
            "claims_to_headers": {"sub": "X-User-ID", "tenant": "X-Tenant"},
        }))
        .unwrap();
        assert_eq!(settings.audience, ["a", "b"]);
        assert_eq!(
            settings.claims_to_headers,
            [
                ("sub".to_string(), "x-user-id".to_string()),
                ("tenant".to_string(), "x-tenant".to_string())
            ]
        );
        assert_eq!(parse(json!({"audience": "a"})).unwrap().audience, ["a"]);
    }

    #[test]
    fn every_mistake_names_its_key() {
        let cases = [
            (json!({"leeway_secs": 99999}), "leeway_secs: at most"),
            (json!({"leeway_secs": "soon"}), "leeway_secs: invalid type"),
            (json!({"audience": [""]}), "audience[0]: 1 to"),
            (
                json!({"required_scopes": ["a b"]}),
                "required_scopes[0]: `a b` is not a scope",
            ),
            (
                json!({"claims_to_headers": {"sub": "Host"}}),
                "claims_to_headers.sub: `Host` cannot",
            ),
            (
                json!({"claims_to_headers": {"sub": "x y"}}),
                "claims_to_headers.sub: `x y` is not",
            ),
            (
                json!({"claims_to_headers": {"a": "X-Saga-Step"}}),
                "claims_to_headers.a: `X-Saga-Step` cannot",
            ),
            (
                json!({"claims_to_headers": {"a": "x-id", "b": "X-ID"}}),
                "claims_to_headers.b: `X-ID` is already set from the claim `a`",
            ),
            (
                json!({"forward_tokens": true}),
                "unknown field `forward_tokens`",
            ),
        ];
        for (config, expected) in cases {
            let error = parse(config.clone()).err().expect("refused");
            assert!(error.contains(expected), "{config}: {error}");
        }
    }

    #[test]
    fn a_bad_key_set_is_named_under_jwks() {
        let error = serde_json::from_value::<Settings>(json!({"jwks": {"keys": [{"kty": "RSA"}]}}))
            .err()
            .unwrap()
            .to_string();
        assert!(error.starts_with("jwks.keys[0].kid: required"), "{error}");
        let missing = serde_json::from_value::<Settings>(json!({})).err().unwrap();
        assert!(
            missing.to_string().contains("missing field `jwks`"),
            "{missing}"
        );
    }
}

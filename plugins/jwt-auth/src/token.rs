//! Finding the bearer token in the `Authorization` header (RFC 6750 §2.1, and nowhere else), and
//! verifying it: its key by `kid`, an algorithm that key allows, the signature, and the issuer
//! and audience. `jsonwebtoken` decodes the header and claims; the signature is checked with the
//! key's RustCrypto key object, built once when the key set was parsed (see `verifier`).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
// Claims are read with `insecure_decode_claims` only after the signature has been verified here.
use jsonwebtoken::dangerous::insecure_decode_claims;
use jsonwebtoken::decode_header;
use txgate_plugin_sdk::Header;
use txgate_plugin_sdk::serde_json::Value;

use crate::claims::Claims;
use crate::settings::Settings;

/// Longest token read: far above any real JWT, and a bound on what one request makes us parse.
pub(crate) const TOKEN_BYTES_MAX: usize = 16 * 1024;
/// Longest `kid` quoted back in an answer.
const KID_SHOWN_MAX: usize = 64;
/// Why a token that is not well-formed base64url JSON is refused.
const MALFORMED: &str = "the token is malformed";

/// What the request presents.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Presented {
    /// No bearer credentials: no `Authorization` header, or one of another scheme.
    Absent,
    /// Bearer credentials that cannot be a token; why.
    Malformed(&'static str),
    /// A token to verify.
    Token(String),
}

/// The bearer token of the request's headers.
pub(crate) fn presented(headers: &[Header]) -> Presented {
    let mut values = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("authorization"));
    let Some(first) = values.next() else {
        return Presented::Absent;
    };
    // Two Authorization headers could show one token to the gateway and another upstream.
    if values.next().is_some() {
        return Presented::Malformed("the request has more than one Authorization header");
    }
    let value = first.value.trim_matches(' ');
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Presented::Absent;
    }
    let token = credentials.trim_start_matches(' ');
    if token.is_empty() {
        return Presented::Malformed("the Bearer credentials are empty");
    }
    if token.len() > TOKEN_BYTES_MAX {
        return Presented::Malformed("the token is longer than 16384 bytes");
    }
    if !is_b64token(token) {
        return Presented::Malformed("the token has characters a bearer token cannot have");
    }
    Presented::Token(token.to_string())
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// The token's claims, once its signature, issuer and audience check out (or did, for this
/// exact token, earlier in this instance); else why not. The times (`exp`, `nbf`) are checked
/// by the caller, against the gateway's clock, at every request.
pub(crate) fn verify(token: &str, settings: &Settings) -> Result<Arc<Claims>, String> {
    if let Some(claims) = settings.verified.get(token) {
        return Ok(claims);
    }
    // `alg: none`, or any algorithm txgate does not verify, fails here: it names no algorithm
    // `jsonwebtoken` knows.
    let header = decode_header(token).map_err(|_| {
        "the token is not a JWT signed with RS256, PS256, ES256, EdDSA or HS256".to_string()
    })?;
    // A critical extension must be understood to be honoured (RFC 7515 §4.1.11); txgate
    // understands none, and an unencoded payload (RFC 7797 `b64: false`) would change what the
    // signature covers.
    let b64 = header.extras.get::<Value>("b64").ok().flatten();
    if header.crit.is_some() || b64.is_some_and(|b64| b64 != Value::Bool(true)) {
        return Err("the token's header asks for extensions txgate does not support".into());
    }
    let kid = header
        .kid
        .as_deref()
        .ok_or("the token's header names no key (kid)")?;
    let key = settings
        .keys
        .get(kid)
        .ok_or_else(|| format!("the token's key `{}` is not in the key set", shown(kid)))?;
    // Before any cryptography: the algorithm must be one this key is for. This is what refuses
    // an HS256 token "signed" with an RSA public key.
    if !key.algorithms.contains(&header.alg) {
        return Err(format!(
            "the token's alg {:?} does not fit its key `{}`",
            header.alg,
            shown(kid)
        ));
    }
    // The signature covers the encoded header and payload as sent: `header.payload`.
    let (signed, signature) = token.rsplit_once('.').ok_or(MALFORMED)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| MALFORMED)?;
    if !key
        .verifier
        .verifies(header.alg, signed.as_bytes(), &signature)
    {
        return Err("the token's signature does not verify".into());
    }
    // Read only now that the signature vouches for them.
    let claims: Claims = insecure_decode_claims(token).map_err(|_| MALFORMED)?;
    check_issuer_and_audience(&claims, settings)?;
    let claims = Arc::new(claims);
    settings.verified.put(token, claims.clone());
    Ok(claims)
}

/// The issuer and audience, when the config sets them: then the token must carry them.
fn check_issuer_and_audience(claims: &Claims, settings: &Settings) -> Result<(), String> {
    if let Some(issuer) = &settings.issuer {
        match names_one_of(claims, "iss", std::slice::from_ref(issuer)) {
            None => return Err("the token has no `iss` claim".into()),
            Some(false) => return Err("the token's issuer is not the expected one".into()),
            Some(true) => {}
        }
    }
    if !settings.audience.is_empty() {
        match names_one_of(claims, "aud", &settings.audience) {
            None => return Err("the token has no `aud` claim".into()),
            Some(false) => return Err("the token is not meant for this audience".into()),
            Some(true) => {}
        }
    }
    Ok(())
}

/// Whether the claim `name` — a string, or a list of strings (RFC 7519 §4.1.1, §4.1.3) — names
/// one of `accepted`; `None` when the token carries no such claim.
fn names_one_of(claims: &Claims, name: &str, accepted: &[String]) -> Option<bool> {
    match claims.get(name)? {
        Value::String(one) => Some(accepted.contains(one)),
        Value::Array(many) => {
            let mut named = false;
            for value in many {
                let value = value.as_str()?;
                named |= accepted.iter().any(|a| a == value);
            }
            Some(named)
        }
        _ => None,
    }
}

/// A `kid` from a token, cut short to quote it back.
fn shown(kid: &str) -> String {
    kid.chars().take(KID_SHOWN_MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorization(values: &[&str]) -> Presented {
        let headers: Vec<Header> = values
            .iter()
            .map(|v| Header::new("Authorization", *v))
            .collect();
        presented(&headers)
    }

    #[test]
    fn a_bearer_token_is_found_whatever_the_scheme_case() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER   abc.def.ghi",
        ] {
            assert_eq!(
                authorization(&[value]),
                Presented::Token("abc.def.ghi".into())
            );
        }
    }

    #[test]
    fn no_header_or_another_scheme_is_no_token() {
        assert_eq!(authorization(&[]), Presented::Absent);
        assert_eq!(authorization(&["Basic YWxpY2U6cHc="]), Presented::Absent);
        assert_eq!(authorization(&["abc.def.ghi"]), Presented::Absent);
    }

    #[test]
    fn broken_bearer_credentials_are_malformed() {
        let malformed = |values: &[&str]| matches!(authorization(values), Presented::Malformed(_));
        assert!(malformed(&["Bearer"]));
        assert!(malformed(&["Bearer a.b.c d"]));
        assert!(malformed(&["Bearer a.b.c", "Bearer x.y.z"]));
        assert!(malformed(&["Bearer ==="]));
        let long = format!("Bearer {}", "a".repeat(TOKEN_BYTES_MAX + 1));
        assert!(malformed(&[&long]));
    }
}

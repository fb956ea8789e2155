//! The JSON Web Key Set of the config (RFC 7517): each key checked once, when the config is
//! parsed, and kept with the algorithms a token signed by it may use.
//!
//! A key's algorithms come from its type (`kty`, and `crv` for curves), narrowed to the JWK's own
//! `alg` when it has one. A token is verified only with an algorithm its key allows, so an HS256
//! token can never be checked with an RSA public key as its HMAC secret (the key-confusion
//! attack), and `alg: none` names no key at all.
//!
//! `jsonwebtoken` reads the JWK's members; each key's RustCrypto key object is then built here,
//! once per plugin instance (a new config gets new instances), and kept for every token.

use std::collections::BTreeMap;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use txgate_plugin_sdk::serde_json::{self, Map, Value};

use crate::verifier::Verifier;

/// Most keys in one set.
pub(crate) const KEYS_MAX: usize = 64;
/// Longest `kid`.
const KID_BYTES_MAX: usize = 256;
/// Smallest RSA modulus accepted (RFC 7518 §3.3: 2048 bits or larger).
const RSA_BITS_MIN: usize = 2048;
/// Shortest HS256 secret (RFC 7518 §3.2: at least the hash's 256 bits).
const HMAC_SECRET_BYTES_MIN: usize = 32;

/// The algorithms txgate verifies, by their JOSE names.
const SUPPORTED: [(&str, Algorithm); 5] = [
    ("RS256", Algorithm::RS256),
    ("PS256", Algorithm::PS256),
    ("ES256", Algorithm::ES256),
    ("EdDSA", Algorithm::EdDSA),
    ("HS256", Algorithm::HS256),
];

/// One verification key.
pub(crate) struct Key {
    /// The key object, built once, that checks signatures.
    pub(crate) verifier: Verifier,
    /// The algorithms a token signed with this key may name.
    pub(crate) algorithms: Vec<Algorithm>,
}

/// The keys of the set, by `kid`.
pub(crate) struct KeySet {
    by_kid: BTreeMap<String, Key>,
}

impl KeySet {
    /// Parses `jwks`: a JWK Set as a JSON object, or as a string holding one (as an identity
    /// provider serves it). Every error names the key it is about, from `at` on.
    pub(crate) fn parse(jwks: &Value, at: &str) -> Result<Self, String> {
        let parsed;
        let set = match jwks {
            Value::String(text) => {
                parsed = serde_json::from_str::<Value>(text)
                    .map_err(|e| format!("{at}: not a JSON Web Key Set: {e}"))?;
                &parsed
            }
            other => other,
        };
        let keys = set
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{at}: a JSON Web Key Set is an object with a `keys` array"))?;
        if keys.is_empty() || keys.len() > KEYS_MAX {
            return Err(format!(
                "{at}.keys: {} keys; a set has 1 to {KEYS_MAX}",
                keys.len()
            ));
        }
        let mut by_kid = BTreeMap::new();
        for (index, jwk) in keys.iter().enumerate() {
            let at = format!("{at}.keys[{index}]");
            let Some((kid, key)) = parse_key(jwk, &at)? else {
                continue;
            };
            if by_kid.insert(kid.clone(), key).is_some() {
                return Err(format!(
                    "{at}.kid: `{kid}` names another key of the set too"
                ));
            }
        }
        if by_kid.is_empty() {
            return Err(format!(
                "{at}.keys: no key is for signatures (`use` = \"sig\")"
            ));
        }
        Ok(Self { by_kid })
    }

    /// The key named `kid`.
    pub(crate) fn get(&self, kid: &str) -> Option<&Key> {
        self.by_kid.get(kid)
    }
}

/// A key and its `kid`; `None` for a key that is not for signatures (`use` = "enc").
fn parse_key(jwk: &Value, at: &str) -> Result<Option<(String, Key)>, String> {
    let fields = jwk
        .as_object()
        .ok_or_else(|| format!("{at}: a JSON Web Key is an object"))?;
    if text(fields, "use", at)?.is_some_and(|usage| usage != "sig") {
        return Ok(None);
    }
    let kid = text(fields, "kid", at)?
        .filter(|kid| !kid.is_empty() && kid.len() <= KID_BYTES_MAX)
        .ok_or_else(|| {
            format!("{at}.kid: required, 1 to {KID_BYTES_MAX} bytes: tokens name their key by it")
        })?;
    let mut algorithms = type_algorithms(fields, at)?;
    if let Some(name) = text(fields, "alg", at)? {
        let alg = algorithm(name).ok_or_else(|| {
            format!("{at}.alg: `{name}` is not supported; use RS256, PS256, ES256, EdDSA or HS256")
        })?;
        if !algorithms.contains(&alg) {
            return Err(format!("{at}.alg: `{name}` does not fit the key's type"));
        }
        algorithms = vec![alg];
    }
    let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(|e| format!("{at}: {e}"))?;
    let decoding = DecodingKey::from_jwk(&parsed).map_err(|e| format!("{at}: {e}"))?;
    let verifier = verifier(&decoding, algorithms[0], at)?;
    Ok(Some((
        kid.to_string(),
        Key {
            verifier,
            algorithms,
        },
    )))
}

/// The algorithms a key of this `kty` (and `crv`) can verify.
fn type_algorithms(fields: &Map<String, Value>, at: &str) -> Result<Vec<Algorithm>, String> {
    let kty = text(fields, "kty", at)?.unwrap_or_default();
    let crv = text(fields, "crv", at)?;
    match (kty, crv) {
        ("RSA", _) => Ok(vec![Algorithm::RS256, Algorithm::PS256]),
        ("EC", Some("P-256")) => Ok(vec![Algorithm::ES256]),
        ("OKP", Some("Ed25519")) => Ok(vec![Algorithm::EdDSA]),
        ("oct", _) => Ok(vec![Algorithm::HS256]),
        ("EC" | "OKP", crv) => Err(format!(
            "{at}.crv: `{}` is not supported; EC keys are P-256, OKP keys Ed25519",
            crv.unwrap_or("")
        )),
        (kty, _) => Err(format!(
            "{at}.kty: `{kty}` is not supported; use RSA, EC, OKP or oct"
        )),
    }
}

/// The key object that verifies tokens, built now: this refuses key material that could not
/// verify anything, or too weak to trust, rather than at the first token, and spares each token
/// the key's setup (see `verifier`).
fn verifier(key: &DecodingKey, alg: Algorithm, at: &str) -> Result<Verifier, String> {
    let built = match (key.kind(), alg) {
        (DecodingKeyKind::RsaModulusExponent { n, e }, _) => {
            let bits = significant_bits(n);
            if bits < RSA_BITS_MIN {
                return Err(format!(
                    "{at}.n: a {bits}-bit RSA key; at least {RSA_BITS_MIN} bits are required"
                ));
            }
            Verifier::rsa(n, e)
        }
        (DecodingKeyKind::SecretOrDer(secret), Algorithm::HS256) => {
            if secret.len() < HMAC_SECRET_BYTES_MIN {
                return Err(format!(
                    "{at}.k: a {}-byte secret; HS256 needs at least {HMAC_SECRET_BYTES_MIN}",
                    secret.len()
                ));
            }
            Verifier::hmac(secret)
        }
        (DecodingKeyKind::SecretOrDer(point), Algorithm::ES256) => Verifier::p256(point),
        (DecodingKeyKind::SecretOrDer(point), Algorithm::EdDSA) => Verifier::ed25519(point),
        (DecodingKeyKind::SecretOrDer(_), _) => {
            Err("not a valid public key: its type fits none of its algorithms".into())
        }
    };
    built.map_err(|e| format!("{at}: {e}"))
}

/// The bit length of a big-endian unsigned number.
fn significant_bits(number: &[u8]) -> usize {
    let start = number.iter().position(|b| *b != 0).unwrap_or(number.len());
    match number.get(start) {
        Some(first) => (number.len() - start) * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// An algorithm by its JOSE name, if txgate verifies it.
pub(crate) fn algorithm(name: &str) -> Option<Algorithm> {
    SUPPORTED
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, alg)| *alg)
}

/// A string member of a JWK, if present.
fn text<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<&'a str>, String> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(format!("{at}.{name}: must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::json;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/jwt/jwks.json");

    fn fixture() -> Value {
        serde_json::from_str(FIXTURE).unwrap()
    }

    fn key(index: usize) -> Value {
        fixture()["keys"][index].clone()
    }

    fn error(keys: Vec<Value>) -> String {
        KeySet::parse(&json!({ "keys": keys }), "jwks")
            .err()
            .expect("refused")
    }

    #[test]
    fn the_fixture_set_parses_with_each_key_limited_to_its_algorithms() {
        let set = KeySet::parse(&fixture(), "jwks").unwrap();
        let algorithms = |kid| set.get(kid).unwrap().algorithms.clone();
        assert_eq!(algorithms("rsa-1"), [Algorithm::RS256, Algorithm::PS256]);
        assert_eq!(algorithms("rsa-1-pss"), [Algorithm::PS256]);
        assert_eq!(algorithms("ec-1"), [Algorithm::ES256]);
        assert_eq!(algorithms("ed-1"), [Algorithm::EdDSA]);
        assert_eq!(algorithms("hs-1"), [Algorithm::HS256]);
        assert!(set.get("nope").is_none());
    }

    #[test]
    fn a_set_given_as_json_text_parses_too() {
        let set = KeySet::parse(&Value::String(FIXTURE.into()), "jwks").unwrap();
        assert!(set.get("ec-1").is_some());
    }

    #[test]
    fn an_alg_that_does_not_fit_the_key_type_is_a_config_error() {
        let mut rsa = key(0);
        rsa["alg"] = json!("HS256");
        assert_eq!(
            error(vec![rsa]),
            "jwks.keys[0].alg: `HS256` does not fit the key's type"
        );
    }

    #[test]
    fn unknown_algorithms_and_key_types_are_config_errors_naming_the_key() {
        let mut rsa = key(0);
        rsa["alg"] = json!("RS384");
        assert!(error(vec![key(1), rsa]).starts_with("jwks.keys[1].alg: `RS384` is not supported"));
        let mut ec = key(2);
        ec["crv"] = json!("P-384");
        assert!(error(vec![ec]).starts_with("jwks.keys[0].crv: `P-384` is not supported"));
        assert!(error(vec![json!({"kty": "XYZ", "kid": "x"})]).starts_with("jwks.keys[0].kty:"));
    }

    #[test]
    fn weak_or_broken_key_material_is_refused() {
        let mut hs = key(4);
        hs["k"] = json!("c2hvcnQ");
        assert!(error(vec![hs]).starts_with("jwks.keys[0].k: a 5-byte secret"));
        let mut rsa = key(0);
        rsa["n"] = json!("AQAB");
        assert!(error(vec![rsa]).starts_with("jwks.keys[0].n: a 17-bit RSA key"));
        let mut ec = key(2);
        ec["x"] = json!("AAAA");
        assert!(error(vec![ec]).starts_with("jwks.keys[0]: not a valid public key"));
    }

    #[test]
    fn kids_are_required_and_unique_and_encryption_keys_are_left_out() {
        let mut nameless = key(3);
        nameless.as_object_mut().unwrap().remove("kid");
        assert!(error(vec![nameless]).starts_with("jwks.keys[0].kid: required"));
        assert!(error(vec![key(3), key(3)]).starts_with("jwks.keys[1].kid: `ed-1` names another"));
        let mut encryption = key(0);
        encryption["use"] = json!("enc");
        let set = KeySet::parse(&json!({"keys": [encryption, key(3)]}), "jwks").unwrap();
        assert!(set.get("rsa-1").is_none());
        assert!(set.get("ed-1").is_some());
    }

    #[test]
    fn a_set_that_is_not_a_set_is_refused() {
        for jwks in [json!("{not json"), json!({"keys": []}), json!([1])] {
            assert!(KeySet::parse(&jwks, "jwks").is_err(), "{jwks}");
        }
    }
}

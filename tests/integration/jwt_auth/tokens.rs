//! Tokens for the tests, signed with the committed test keys of `tests/fixtures/jwt/`, and the
//! check that those keys and their key sets still belong together.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://id.test/";
pub const AUDIENCE: &str = "txgate";

pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn fixture(name: &str) -> String {
    read(&format!("tests/fixtures/jwt/{name}"))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The private half of a fixture key, by its `kid`.
pub fn private_key(kid: &str) -> (Algorithm, EncodingKey) {
    let pem = |name: &str| fixture(name).into_bytes();
    let (alg, key) = match kid {
        "rsa-1" | "rsa-1-pss" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem("rsa.pem"))),
        "rsa-2" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&pem("rsa-rotated.pem")),
        ),
        "ec-1" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem("ec.pem"))),
        "ed-1" => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&pem("ed25519.pem")),
        ),
        "hs-1" => (
            Algorithm::HS256,
            EncodingKey::from_secret(&pem("hs256.secret")),
        ),
        other => panic!("no fixture key {other}"),
    };
    (alg, key.unwrap())
}

pub fn sign_with(alg: Algorithm, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, key).unwrap()
}

pub fn sign(alg: Algorithm, kid: &str, claims: &Value) -> String {
    sign_with(alg, kid, claims, &private_key(kid).1)
}

pub fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now_secs() + 600})
}

pub fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

#[test]
fn the_fixture_key_sets_match_their_private_keys() {
    // Proves every committed key set holds the public half of its committed private key.
    let pairs = [
        (
            "tests/fixtures/jwt/jwks.json",
            vec!["rsa-1", "rsa-1-pss", "ec-1", "ed-1", "hs-1"],
        ),
        ("tests/fixtures/jwt/jwks-rotated.json", vec!["rsa-2"]),
    ];
    for (path, kids) in pairs {
        let set: JwkSet = serde_json::from_str(&read(path)).unwrap();
        for kid in kids {
            let (alg, key) = private_key(kid);
            let derived = Jwk::from_encoding_key(&key, alg).unwrap();
            assert_eq!(
                set.find(kid).unwrap().algorithm,
                derived.algorithm,
                "{path}: {kid}"
            );
        }
    }
    let demo: JwkSet = serde_json::from_str(&read("examples/jwt/jwks.json")).unwrap();
    let key = EncodingKey::from_rsa_pem(read("examples/jwt/demo-key.pem").as_bytes()).unwrap();
    let derived = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    assert_eq!(demo.find("demo-1").unwrap().algorithm, derived.algorithm);
}

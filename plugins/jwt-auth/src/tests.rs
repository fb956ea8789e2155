//! The plugin's decisions, run natively on the SDK's fake host, with tokens signed by the test
//! keys in `tests/fixtures/jwt/` (test-only keys, never used anywhere else).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, encode};
use txgate_plugin_sdk::serde_json::{self, Value, json};
use txgate_plugin_sdk::testing::{Harness, START_UNIX_MS};
use txgate_plugin_sdk::{Hook, Request, RequestDecision, Response};

use super::JwtAuth;

const JWKS: &str = include_str!("../../../tests/fixtures/jwt/jwks.json");
const JWKS_ROTATED: &str = include_str!("../../../tests/fixtures/jwt/jwks-rotated.json");
const RSA: &str = include_str!("../../../tests/fixtures/jwt/rsa.pem");
const RSA_PUBLIC: &str = include_str!("../../../tests/fixtures/jwt/rsa.pub.pem");
const RSA_ROTATED: &str = include_str!("../../../tests/fixtures/jwt/rsa-rotated.pem");
const EC: &str = include_str!("../../../tests/fixtures/jwt/ec.pem");
const ED: &str = include_str!("../../../tests/fixtures/jwt/ed25519.pem");
const HS_SECRET: &str = include_str!("../../../tests/fixtures/jwt/hs256.secret");

const NOW_SECS: u64 = START_UNIX_MS / 1000;
const ISSUER: &str = "https://id.test/";

/// A token for `claims`, signed with the fixture key for `alg`, naming `kid`.
fn sign(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let key = match alg {
        Algorithm::RS256 | Algorithm::PS256 if kid == "rsa-2" => {
            EncodingKey::from_rsa_pem(RSA_ROTATED.as_bytes())
        }
        Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(RSA.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC.as_bytes()),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(ED.as_bytes()),
        _ => EncodingKey::from_secret(HS_SECRET.as_bytes()),
    };
    sign_with(alg, kid, claims, &key.unwrap())
}

fn sign_with(alg: Algorithm, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, key).unwrap()
}

fn claims() -> Value {
    json!({
        "sub": "alice",
        "iss": ISSUER,
        "aud": "txgate",
        "exp": NOW_SECS + 300,
        "scope": "transfers:write",
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

/// A host with the fixture keys, issuer and audience checked, `sub` passed as X-User-ID, and
/// `extra` on top.
fn host(extra: Value) -> Harness {
    let mut config = json!({
        "jwks": serde_json::from_str::<Value>(JWKS).unwrap(),
        "issuer": ISSUER,
        "audience": "txgate",
        "claims_to_headers": {"sub": "X-User-ID"},
    });
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    Harness::new().with_config(config)
}

fn request(token: Option<&str>) -> Request<'static> {
    let request = Request::new("POST", "/transfers").with_header("x-request-id", "r-1");
    match token {
        Some(token) => request.with_header("Authorization", &format!("Bearer {token}")),
        None => request,
    }
}

fn decide(host: &Harness, request: Request<'static>) -> RequestDecision {
    host.on_request::<JwtAuth>(request).unwrap()
}

/// The refusal the plugin answered with; panics if the request went on.
fn refused(decision: RequestDecision) -> Response {
    match decision {
        RequestDecision::Respond(response) => response,
        RequestDecision::Continue(changes) => panic!("let through with {changes:?}"),
    }
}

fn challenge(response: &Response) -> &str {
    response.header("www-authenticate").unwrap()
}

fn assert_invalid(host: &Harness, token: &str, detail: &str) {
    let response = refused(decide(host, request(Some(token))));
    assert_eq!(response.status, 401);
    assert!(
        challenge(&response).starts_with("Bearer error=\"invalid_token\""),
        "{}",
        challenge(&response)
    );
    let body: Value = response.json_body().unwrap();
    assert_eq!(body["type"], "urn:txgate:problem:invalid-token");
    let said = body["detail"].as_str().unwrap();
    assert!(said.contains(detail), "`{said}` does not say `{detail}`");
}

#[test]
fn every_supported_algorithm_lets_the_request_through_with_the_subject() {
    let host = host(json!({}));
    for (alg, kid) in [
        (Algorithm::RS256, "rsa-1"),
        (Algorithm::PS256, "rsa-1"),
        (Algorithm::PS256, "rsa-1-pss"),
        (Algorithm::ES256, "ec-1"),
        (Algorithm::EdDSA, "ed-1"),
        (Algorithm::HS256, "hs-1"),
    ] {
        let token = sign(alg, kid, &claims());
        let RequestDecision::Continue(changes) = decide(&host, request(Some(&token))) else {
            panic!("{alg:?} with {kid} refused");
        };
        assert_eq!(changes.set.len(), 1);
        assert_eq!(
            (changes.set[0].name.as_str(), changes.set[0].value.as_str()),
            ("x-user-id", "alice")
        );
    }
}

#[test]
fn forged_identity_headers_and_the_token_are_removed_before_the_upstream() {
    let host = host(json!({}));
    let token = sign(Algorithm::EdDSA, "ed-1", &claims());
    let forged = request(Some(&token)).with_header("X-User-ID", "mallory");
    let RequestDecision::Continue(changes) = decide(&host, forged) else {
        panic!("a valid token goes on");
    };
    // The gateway applies removals before sets: the forged value is gone, the token's is set.
    assert!(changes.remove.contains(&"x-user-id".to_string()));
    assert!(changes.remove.contains(&"authorization".to_string()));
    assert_eq!(changes.set[0].value, "alice");
    let mut subless = claims();
    subless.as_object_mut().unwrap().remove("sub");
    let no_sub = sign(Algorithm::EdDSA, "ed-1", &subless);
    let forged = request(Some(&no_sub)).with_header("X-User-ID", "mallory");
    let RequestDecision::Continue(changes) = decide(&host, forged) else {
        panic!("a token without the claim goes on");
    };
    assert!(changes.remove.contains(&"x-user-id".to_string()));
    assert!(changes.set.is_empty(), "no claim, no header: {changes:?}");
}

#[test]
fn forward_token_keeps_the_authorization_header() {
    let host = host(json!({"forward_token": true}));
    let token = sign(Algorithm::HS256, "hs-1", &claims());
    let RequestDecision::Continue(changes) = decide(&host, request(Some(&token))) else {
        panic!("a valid token goes on");
    };
    assert!(!changes.remove.contains(&"authorization".to_string()));
}

#[test]
fn no_token_or_one_only_in_the_query_string_gets_a_bare_challenge() {
    let host = host(json!({}));
    let token = sign(Algorithm::RS256, "rsa-1", &claims());
    let in_query = Request::new("POST", &format!("/transfers?access_token={token}"))
        .with_header("x-request-id", "r-1")
        .with_header("X-User-ID", "alice");
    for request in [request(None), in_query] {
        let response = refused(decide(&host, request));
        assert_eq!(response.status, 401);
        assert_eq!(challenge(&response), "Bearer");
        let body: Value = response.json_body().unwrap();
        assert_eq!(body["request_id"], "r-1");
        assert_eq!(body["type"], "urn:txgate:problem:unauthorized");
    }
}

#[test]
fn expiry_and_not_before_follow_the_gateway_clock_with_leeway() {
    let host = host(json!({"leeway_secs": 10}));
    let token = sign(
        Algorithm::ES256,
        "ec-1",
        &with(claims(), "exp", json!(NOW_SECS + 5)),
    );
    assert!(matches!(
        decide(&host, request(Some(&token))),
        RequestDecision::Continue(_)
    ));
    host.advance_ms(14_000);
    assert!(matches!(
        decide(&host, request(Some(&token))),
        RequestDecision::Continue(_)
    ));
    host.advance_ms(1_000);
    assert_invalid(&host, &token, "expired");
    let early = sign(
        Algorithm::ES256,
        "ec-1",
        &with(claims(), "nbf", json!(NOW_SECS + 3600)),
    );
    assert_invalid(&host, &early, "not valid yet");
}

#[test]
fn issuer_and_audience_are_checked_when_given() {
    let host = host(json!({}));
    let wrong_issuer = sign(
        Algorithm::RS256,
        "rsa-1",
        &with(claims(), "iss", json!("https://evil/")),
    );
    assert_invalid(&host, &wrong_issuer, "issuer");
    let wrong_audience = sign(
        Algorithm::RS256,
        "rsa-1",
        &with(claims(), "aud", json!("other")),
    );
    assert_invalid(&host, &wrong_audience, "audience");
    let among_others = sign(
        Algorithm::RS256,
        "rsa-1",
        &with(claims(), "aud", json!(["other", "txgate"])),
    );
    assert!(matches!(
        decide(&host, request(Some(&among_others))),
        RequestDecision::Continue(_)
    ));
    let unchecked = Harness::new().with_config(json!({"jwks": JWKS}));
    assert!(matches!(
        decide(&unchecked, request(Some(&wrong_audience))),
        RequestDecision::Continue(_)
    ));
}

#[test]
fn unknown_keys_bad_signatures_and_alg_none_are_invalid() {
    let host = host(json!({}));
    assert_invalid(
        &host,
        &sign(Algorithm::RS256, "nobody", &claims()),
        "not in the key set",
    );
    let token = sign(Algorithm::RS256, "rsa-1", &claims());
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let (head, _) = signed.split_once('.').unwrap();
    let other = URL_SAFE_NO_PAD.encode(with(claims(), "sub", json!("bob")).to_string());
    assert_invalid(&host, &format!("{head}.{other}.{signature}"), "signature");
    let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"rsa-1","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims().to_string());
    assert_invalid(&host, &format!("{none}.{body}."), "not a JWT signed with");
    assert_invalid(&host, "not-a-jwt", "not a JWT");
}

#[test]
fn a_token_remembered_as_verified_gets_every_check_an_unremembered_one_gets() {
    // The same sequence with the cache on (the default) and off: the answers must not differ.
    for config in [json!({}), json!({"verified_tokens_max": 0})] {
        let host = host(config.clone());
        let token = sign(
            Algorithm::RS256,
            "rsa-1",
            &with(claims(), "exp", json!(NOW_SECS + 5)),
        );
        for _ in 0..3 {
            let RequestDecision::Continue(changes) = decide(&host, request(Some(&token))) else {
                panic!("{config}: a valid token refused");
            };
            assert!(format!("{changes:?}").contains("alice"), "{config}");
        }
        // Another payload under the remembered signature is verified in full, and fails.
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let (head, _) = signed.split_once('.').unwrap();
        let bob = URL_SAFE_NO_PAD.encode(with(claims(), "sub", json!("bob")).to_string());
        assert_invalid(&host, &format!("{head}.{bob}.{signature}"), "signature");
        // A remembered token expires on the gateway's clock like any other.
        host.advance_ms(36_000);
        assert_invalid(&host, &token, "expired");
    }
}

#[test]
fn a_token_let_through_is_reusable_on_its_header_until_it_expires() {
    // exp in 5 s, leeway 30 s: the gateway may reuse the decision for 35 s, no longer.
    let host = host(json!({}));
    let token = sign(
        Algorithm::ES256,
        "ec-1",
        &with(claims(), "exp", json!(NOW_SECS + 5)),
    );
    decide(&host, request(Some(&token)));
    let declared = host.reuse_declared();
    assert_eq!(declared, vec![(vec!["authorization".to_string()], 35_000)]);
    // A token without exp is reused for at most the hour the gateway allows.
    let mut lasting = claims();
    lasting.as_object_mut().unwrap().remove("exp");
    decide(
        &host,
        request(Some(&sign(Algorithm::ES256, "ec-1", &lasting))),
    );
    assert_eq!(host.reuse_declared()[1].1, 3_600_000);
    // A refusal is never declared reusable (its answer names the request), nor anything when
    // the plugin remembers no tokens.
    refused(decide(&host, request(None)));
    assert_eq!(host.reuse_declared().len(), 2);
    let off = self::host(json!({"verified_tokens_max": 0}));
    decide(&off, request(Some(&token)));
    assert!(off.reuse_declared().is_empty());
}

#[test]
fn an_alg_that_does_not_fit_the_key_is_refused_before_any_verification() {
    let host = host(json!({}));
    // The JWK's own alg narrows its type's: rsa-1-pss is for PS256 only.
    assert_invalid(
        &host,
        &sign(Algorithm::RS256, "rsa-1-pss", &claims()),
        "does not fit",
    );
    // Key confusion: HS256 "signed" with the RSA public key, as PEM text and as the JWK's n.
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let n = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["n"].as_str().unwrap())
        .unwrap();
    for secret in [RSA_PUBLIC.as_bytes(), &n] {
        let forged = sign_with(
            Algorithm::HS256,
            "rsa-1",
            &claims(),
            &EncodingKey::from_secret(secret).unwrap(),
        );
        assert_invalid(&host, &forged, "does not fit");
    }
    assert_invalid(
        &host,
        &sign(Algorithm::EdDSA, "ec-1", &claims()),
        "does not fit",
    );
}

#[test]
fn a_missing_claim_or_scope_is_403_insufficient_scope() {
    let host = host(json!({"required_claims": ["tenant"], "required_scopes": ["transfers:write"]}));
    let scoped = with(claims(), "tenant", json!("t1"));
    let token = sign(Algorithm::EdDSA, "ed-1", &scoped);
    assert!(matches!(
        decide(&host, request(Some(&token))),
        RequestDecision::Continue(_)
    ));
    for (claims, description) in [
        (claims(), "the token has no `tenant` claim"),
        (
            with(scoped, "scope", json!("accounts:read")),
            "the token's scope lacks `transfers:write`",
        ),
    ] {
        let token = sign(Algorithm::EdDSA, "ed-1", &claims);
        let response = refused(decide(&host, request(Some(&token))));
        assert_eq!(response.status, 403);
        let expected = format!(
            "Bearer error=\"insufficient_scope\", error_description=\"{description}\", scope=\"transfers:write\""
        );
        assert_eq!(challenge(&response), expected);
    }
}

#[test]
fn each_config_verifies_with_its_own_keys() {
    // A reload brings new instances; natively, two hosts with two configs share one process,
    // so this also proves the parsed keys are never served to another config.
    let before = host(json!({}));
    let after = host(json!({"jwks": JWKS_ROTATED}));
    let old = sign(Algorithm::RS256, "rsa-1", &claims());
    let new = sign(Algorithm::RS256, "rsa-2", &claims());
    for _ in 0..2 {
        assert!(matches!(
            decide(&before, request(Some(&old))),
            RequestDecision::Continue(_)
        ));
        assert_invalid(&after, &old, "not in the key set");
        assert!(matches!(
            decide(&after, request(Some(&new))),
            RequestDecision::Continue(_)
        ));
        assert_invalid(&before, &new, "not in the key set");
    }
}

#[test]
fn a_bad_config_is_logged_by_key_and_keeps_the_plugin_from_loading() {
    let mut jwks: Value = serde_json::from_str(JWKS).unwrap();
    jwks["keys"][2]["alg"] = json!("ES512");
    assert_refuses_to_load(
        json!({"jwks": jwks}),
        "jwks.keys[2].alg: `ES512` is not supported",
    );
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    assert_refuses_to_load(
        json!({"jwks": jwks, "verified_tokens_max": 1_000_000}),
        "verified_tokens_max: at most 65536",
    );
}

/// `hooks()` traps under `config`, after logging a line that says `said`.
fn assert_refuses_to_load(config: Value, said: &str) {
    let host = Harness::new().with_config(config);
    let loading = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        host.calls::<JwtAuth>(Hook::OnRequest)
    }));
    assert!(loading.is_err(), "hooks() must trap");
    let logs = host.logs();
    assert!(logs.iter().any(|(_, line)| line.contains(said)), "{logs:?}");
}

//! The `jwt_auth` plugin, built from source, in real gateways in front of real demo banks. Tokens
//! are signed here with the test keys of `tests/fixtures/jwt/`; the bank's echo shows what
//! reached the upstream on a plain route. On a saga route the verified subject names the client:
//! exactly once per authenticated user, in the shape of `examples/users.toml`.

mod reuse;
mod tokens;
mod users;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::support::{Bank, Gateway, GatewayBuilder, client};
use crate::wasm;
use tokens::{AUDIENCE, ISSUER, claims, fixture, now_secs, private_key, sign, sign_with, with};

/// One jwt_auth plugin named `name` with the key set `jwks` (JSON text) and `extra` lines.
fn plugin(name: &str, jwks: &str, extra: &str) -> String {
    format!(
        "[plugins.{name}]\nmodule = \"{module}\"\ntimeout_ms = 100\n[plugins.{name}.config]\n\
         jwks = '''{jwks}'''\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         claims_to_headers = {{ sub = \"X-User-ID\" }}\n{extra}\n",
        module = wasm::JWT_AUTH,
    )
}

/// Plain routes to the bank's echo (`/api/`: the token stays at the gateway; `/fwd/`: it is
/// forwarded), and a transfer saga whose client is the token's subject.
fn config(a: &Bank, b: &Bank, jwks: &str, extra: &str) -> String {
    let (a, b) = (a.base(), b.base());
    let plugins =
        plugin("jwt_auth", jwks, extra) + &plugin("jwt_forward", jwks, "forward_token = true");
    format!(
        r#"
[upstreams.bank_a]
url = "{a}"
[upstreams.bank_b]
url = "{b}"

{plugins}

[[routes]]
name = "transfers"
methods = ["POST"]
path = "/transfers"
plugins = ["jwt_auth"]
[routes.saga]
mode = "saga"
client_key = "header:X-User-ID"
[[routes.saga.steps]]
name = "debit"
upstream = "bank_a"
action = "POST /debit"
compensate = "POST /debit/compensate"
[[routes.saga.steps]]
name = "credit"
upstream = "bank_b"
action = "POST /credit"
compensate = "POST /credit/compensate"

[[routes]]
name = "api"
path_prefix = "/api/"
strip_prefix = true
upstream = "bank_a"
plugins = ["jwt_auth"]

[[routes]]
name = "fwd"
path_prefix = "/fwd/"
strip_prefix = true
upstream = "bank_a"
plugins = ["jwt_forward"]
"#
    )
}

async fn start(extra: &str) -> (Bank, Bank, Gateway) {
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=1000"]).await;
    let gateway = GatewayBuilder::new(config(&a, &b, &fixture("jwks.json"), extra))
        .start()
        .await;
    (a, b, gateway)
}

/// What came back: status, `WWW-Authenticate`, `Content-Type`, the body as JSON.
struct Answer {
    status: u16,
    challenge: String,
    content_type: String,
    body: Value,
}

async fn get(
    gateway: &Gateway,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = client()
        .get(gateway.url(path))
        .header("x-request-id", "jwt-1");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    answer(request.send().await.unwrap()).await
}

async fn answer(response: reqwest::Response) -> Answer {
    let header = |name| {
        response
            .headers()
            .get(name)
            .map_or(String::new(), |v| v.to_str().unwrap().to_string())
    };
    let (challenge, content_type) = (header("www-authenticate"), header("content-type"));
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        challenge,
        content_type,
        body,
    }
}

/// A refusal: `status`, the challenge (exactly `Bearer` when `error` is empty), and the whole
/// problem+json body.
fn assert_refused(answer: &Answer, status: u16, error: &str, slug: &str, detail: &str) {
    let context = format!("{} {} {}", answer.status, answer.challenge, answer.body);
    assert_eq!(answer.status, status, "{context}");
    if error.is_empty() {
        assert_eq!(answer.challenge, "Bearer", "{context}");
    } else {
        let expected = format!("Bearer error=\"{error}\", error_description=\"");
        assert!(answer.challenge.starts_with(&expected), "{context}");
    }
    assert_eq!(answer.content_type, "application/problem+json", "{context}");
    assert_eq!(
        answer.body["type"],
        format!("urn:txgate:problem:{slug}"),
        "{context}"
    );
    assert_eq!(answer.body["status"], status, "{context}");
    assert!(
        answer.body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{context}"
    );
    assert!(
        answer.body["detail"].as_str().unwrap().contains(detail),
        "{context}"
    );
    assert_eq!(answer.body["request_id"], "jwt-1", "{context}");
}

#[tokio::test]
async fn every_algorithm_passes_and_the_upstream_sees_the_token_subject_not_a_forged_one() {
    // Proves RS256, PS256, ES256, EdDSA and HS256 tokens are accepted, that the upstream gets
    // X-User-ID from the token and never the client's own (not even when the token has no
    // `sub`), and the token only when forwarded.
    let (_a, _b, gateway) = start("").await;
    for (alg, kid) in [
        (Algorithm::RS256, "rsa-1"),
        (Algorithm::PS256, "rsa-1"),
        (Algorithm::PS256, "rsa-1-pss"),
        (Algorithm::ES256, "ec-1"),
        (Algorithm::EdDSA, "ed-1"),
        (Algorithm::HS256, "hs-1"),
    ] {
        let sub = format!("user-{kid}-{alg:?}");
        let token = sign(alg, kid, &claims(&sub));
        let forged = [("X-User-ID", "mallory")];
        let kept = get(&gateway, "/api/echo/who", Some(&token), &forged).await;
        assert_eq!(kept.status, 200, "{alg:?} {kid}: {}", kept.body);
        assert_eq!(
            kept.body["headers"]["x-user-id"],
            json!([sub]),
            "{}",
            kept.body
        );
        assert!(
            kept.body["headers"].get("authorization").is_none(),
            "{}",
            kept.body
        );
        let forwarded = get(&gateway, "/fwd/echo/who", Some(&token), &forged).await;
        assert_eq!(forwarded.status, 200);
        assert_eq!(forwarded.body["headers"]["x-user-id"], json!([sub]));
        assert_eq!(
            forwarded.body["headers"]["authorization"],
            json!([format!("Bearer {token}")])
        );
    }
    // A token without the claim sets no header, and the client's copy is removed all the same.
    let mut subless = claims("alice");
    subless.as_object_mut().unwrap().remove("sub");
    let token = sign(Algorithm::EdDSA, "ed-1", &subless);
    let forged = [("X-User-ID", "mallory")];
    let echoed = get(&gateway, "/api/echo/who", Some(&token), &forged).await;
    assert_eq!(echoed.status, 200);
    assert!(
        echoed.body["headers"].get("x-user-id").is_none(),
        "{}",
        echoed.body
    );
}

#[tokio::test]
async fn bad_tokens_get_401_invalid_token_and_nothing_reaches_the_bank() {
    // Proves every kind of bad token — expired, early, foreign issuer or audience, unknown
    // key, alg none, an alg its key is not for, HS256 keyed with the RSA public key (the PEM
    // text and the JWK's n), a broken signature, no JWT at all — is refused the same way.
    let (a, _b, gateway) = start("").await;
    let now = now_secs();
    let jwks: Value = serde_json::from_str(&fixture("jwks.json")).unwrap();
    let n = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["n"].as_str().unwrap())
        .unwrap();
    let confused = |secret: &[u8]| {
        sign_with(
            Algorithm::HS256,
            "rsa-1",
            &claims("alice"),
            &EncodingKey::from_secret(secret).unwrap(),
        )
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
        URL_SAFE_NO_PAD.encode(claims("alice").to_string())
    );
    let valid = sign(Algorithm::ES256, "ec-1", &claims("alice"));
    let tampered = format!("{}AAAA", valid.trim_end_matches(|c| c != '.'));
    let cases = [
        (
            sign(
                Algorithm::RS256,
                "rsa-1",
                &with(claims("alice"), "exp", json!(now - 3600)),
            ),
            "expired",
        ),
        (
            sign(
                Algorithm::RS256,
                "rsa-1",
                &with(claims("alice"), "nbf", json!(now + 3600)),
            ),
            "not valid yet",
        ),
        (
            sign(
                Algorithm::RS256,
                "rsa-1",
                &with(claims("alice"), "iss", json!("https://evil/")),
            ),
            "issuer",
        ),
        (
            sign(
                Algorithm::RS256,
                "rsa-1",
                &with(claims("alice"), "aud", json!("elsewhere")),
            ),
            "audience",
        ),
        (
            sign_with(
                Algorithm::RS256,
                "rsa-9",
                &claims("alice"),
                &private_key("rsa-1").1,
            ),
            "not in the key set",
        ),
        (none, "not a JWT signed with"),
        (
            sign(Algorithm::RS256, "rsa-1-pss", &claims("alice")),
            "does not fit",
        ),
        (confused(fixture("rsa.pub.pem").as_bytes()), "does not fit"),
        (confused(&n), "does not fit"),
        (tampered, "signature"),
        ("abc".to_string(), "not a JWT"),
    ];
    for (token, detail) in cases {
        let refused = get(&gateway, "/api/echo/who", Some(&token), &[]).await;
        assert_refused(&refused, 401, "invalid_token", "invalid-token", detail);
    }
    assert_eq!(
        a.total_hits().await,
        0,
        "no refused request reached the bank"
    );
}

#[tokio::test]
async fn no_token_gets_a_bare_401_even_with_a_token_in_the_query_or_a_forged_user() {
    // Proves a request without bearer credentials in its Authorization header is 401 with no
    // error code, whatever it carries elsewhere, on a plain route and on a saga route.
    let (a, _b, gateway) = start("").await;
    let token = sign(Algorithm::RS256, "rsa-1", &claims("alice"));
    let forged = [("X-User-ID", "alice")];
    let in_query = format!("/api/echo/who?access_token={token}");
    for refused in [
        get(&gateway, "/api/echo/who", None, &[]).await,
        get(&gateway, &in_query, None, &forged).await,
        get(
            &gateway,
            "/api/echo/who",
            None,
            &[("Authorization", "Basic YWxpY2U6cHc=")],
        )
        .await,
    ] {
        assert_refused(&refused, 401, "", "unauthorized", "no bearer token");
    }
    let saga = client()
        .post(gateway.url("/transfers"))
        .header("x-request-id", "jwt-1")
        .header("X-User-ID", "alice")
        .json(&json!({"from": "alice", "to": "carol", "amount": 10}))
        .send()
        .await
        .unwrap();
    assert_refused(
        &answer(saga).await,
        401,
        "",
        "unauthorized",
        "no bearer token",
    );
    assert_eq!(a.total_hits().await, 0);
}

#[tokio::test]
async fn a_valid_token_without_a_required_claim_or_scope_gets_403() {
    // Proves required claims and scopes are checked after the token verifies: 403
    // insufficient_scope naming the required scopes, and only the granted request goes on.
    let extra = "required_claims = [\"tenant\"]\nrequired_scopes = [\"accounts:read\"]";
    let (a, _b, gateway) = start(extra).await;
    let granted = with(
        with(claims("alice"), "tenant", json!("t1")),
        "scope",
        json!("x accounts:read"),
    );
    let token = sign(Algorithm::EdDSA, "ed-1", &granted);
    assert_eq!(
        get(&gateway, "/api/echo/who", Some(&token), &[])
            .await
            .status,
        200
    );
    for (claims, detail) in [
        (
            with(claims("alice"), "scope", json!("accounts:read")),
            "no `tenant` claim",
        ),
        (
            with(granted, "scope", json!("accounts:write")),
            "lacks `accounts:read`",
        ),
    ] {
        let token = sign(Algorithm::EdDSA, "ed-1", &claims);
        let refused = get(&gateway, "/api/echo/who", Some(&token), &[]).await;
        assert_refused(
            &refused,
            403,
            "insufficient_scope",
            "insufficient-scope",
            detail,
        );
        assert!(
            refused.challenge.ends_with(", scope=\"accounts:read\""),
            "{}",
            refused.challenge
        );
    }
    assert_eq!(a.total_hits().await, 1);
}

#[tokio::test]
async fn a_reload_rotates_the_key_set_and_a_broken_one_is_refused_by_key() {
    // Proves `POST /admin/reload` swaps the keys (the old kid refused, the new one accepted),
    // and that a key set that does not parse fails the reload, names its key in the log, and
    // leaves the running keys in force.
    let (a, b, gateway) = start("").await;
    let old = sign(Algorithm::RS256, "rsa-1", &claims("alice"));
    let new = sign(Algorithm::RS256, "rsa-2", &claims("alice"));
    assert_eq!(
        get(&gateway, "/api/echo/who", Some(&old), &[]).await.status,
        200
    );
    let early = get(&gateway, "/api/echo/who", Some(&new), &[]).await;
    assert_refused(
        &early,
        401,
        "invalid_token",
        "invalid-token",
        "not in the key set",
    );

    gateway.write_config(&config(&a, &b, &fixture("jwks-rotated.json"), ""));
    let (status, body) = gateway.reload().await;
    assert_eq!(status, 200, "{body}");
    let retired = get(&gateway, "/api/echo/who", Some(&old), &[]).await;
    assert_refused(
        &retired,
        401,
        "invalid_token",
        "invalid-token",
        "not in the key set",
    );
    assert_eq!(
        get(&gateway, "/api/echo/who", Some(&new), &[]).await.status,
        200
    );

    let broken = fixture("jwks-rotated.json").replace("\"RS256\"", "\"RS999\"");
    gateway.write_config(&config(&a, &b, &broken, ""));
    let (status, body) = gateway.reload().await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("plugins.jwt_auth"), "{body}");
    assert!(
        body.to_string()
            .contains("the plugin logged: plugin config: jwks.keys[0].alg: `RS999`"),
        "{body}"
    );
    assert!(
        gateway
            .log()
            .contains("jwks.keys[0].alg: `RS999` is not supported"),
        "{}",
        gateway.log()
    );
    assert_eq!(
        get(&gateway, "/api/echo/who", Some(&new), &[]).await.status,
        200
    );
}

//! The gateway reuses `jwt_auth`'s decision for a token it let through (`decisions.reuse`): the
//! same `Authorization` value gets the same header edits without a call into the plugin, a
//! client's forged identity header is still replaced, and the reuse ends when the token expires.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;

use super::tokens::{claims, now_secs, sign, with};
use super::{get, start};

const CALLS: &str = "txgate_plugin_calls_total{plugin=\"jwt_auth\",hook=\"on-request\"}";
const REUSED: &str =
    "txgate_plugin_decisions_reused_total{plugin=\"jwt_auth\",hook=\"on-request\"}";

#[tokio::test]
async fn a_token_let_through_again_gets_the_same_edits_without_a_call_until_it_expires() {
    let (_a, _b, gateway) = start("leeway_secs = 0").await;
    let exp = now_secs() + 3;
    let token = sign(
        Algorithm::ES256,
        "ec-1",
        &with(claims("alice"), "exp", json!(exp)),
    );
    for (n, forged) in ["mallory", "eve", "bob"].into_iter().enumerate() {
        let echoed = get(
            &gateway,
            "/api/echo/who",
            Some(&token),
            &[("X-User-ID", forged)],
        )
        .await;
        assert_eq!(echoed.status, 200, "{}", echoed.body);
        assert_eq!(echoed.body["headers"]["x-user-id"], json!(["alice"]));
        assert!(echoed.body["headers"].get("authorization").is_none());
        assert_eq!(
            gateway.metric(CALLS).await,
            1.0,
            "request {n}: one call only"
        );
        assert_eq!(gateway.metric(REUSED).await, n as f64);
    }

    // Another token, or the same one sent twice, is not the same request: the plugin decides.
    let bob = sign(Algorithm::ES256, "ec-1", &claims("bob"));
    let echoed = get(&gateway, "/api/echo/who", Some(&bob), &[]).await;
    assert_eq!(echoed.body["headers"]["x-user-id"], json!(["bob"]));
    let doubled = [("Authorization", format!("Bearer {token}"))];
    let doubled = [(doubled[0].0, doubled[0].1.as_str())];
    let twice = get(&gateway, "/api/echo/who", Some(&token), &doubled).await;
    assert_eq!(twice.status, 401, "{}", twice.body);
    assert_eq!(gateway.metric(CALLS).await, 3.0);

    // Reused up to the token's expiry and never past it: the first refusal comes at `exp`.
    let mut refused = None;
    for _ in 0..100 {
        let answer = get(&gateway, "/api/echo/who", Some(&token), &[]).await;
        if answer.status != 200 {
            refused = Some((answer, now_secs()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (answer, at) = refused.expect("refused within 5 s of its expiry");
    assert_eq!(answer.status, 401);
    assert!(
        answer.challenge.contains("invalid_token"),
        "{}",
        answer.challenge
    );
    assert!(at >= exp, "refused at {at}, before its exp {exp}");
    assert!(
        answer.body["detail"].as_str().unwrap().contains("expired"),
        "{}",
        answer.body
    );
}

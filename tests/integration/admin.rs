//! The admin listener: health, readiness, metrics and the bearer token.

use reqwest::Method;

use crate::support::{Bank, GatewayBuilder, client};

fn config(bank: &Bank) -> String {
    format!(
        "[upstreams.bank]\nurl = \"{}\"\n\n[[routes]]\nname = \"echo\"\npath_prefix = \"/echo\"\nupstream = \"bank\"\n",
        bank.base()
    )
}

#[tokio::test]
async fn admin_token_is_enforced() {
    // Proves admin calls need the bearer token (missing or wrong: 401 problem+json), while
    // /healthz and /readyz stay open for probes.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(config(&bank))
        .server("admin_token = \"s3cret-0123456789abcdef\"")
        .start()
        .await;
    let missing = client()
        .get(gateway.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let wrong = client()
        .get(gateway.admin_url("/metrics"))
        .bearer_auth("s3creT-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = gateway.admin(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(right.status(), 200);
    for open in ["/healthz", "/readyz"] {
        let response = client().get(gateway.admin_url(open)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{open} needs no token");
    }
}

#[tokio::test]
async fn metrics_count_requests_durations_and_upstream_attempts() {
    // Proves /metrics exposes the contract's request, latency and upstream-attempt series.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(config(&bank)).start().await;
    for _ in 0..3 {
        client().get(gateway.url("/echo")).send().await.unwrap();
    }
    client().get(gateway.url("/missing")).send().await.unwrap();
    let text = gateway.metrics().await;
    assert!(
        text.contains("txgate_requests_total{route=\"echo\",status=\"200\"} 3"),
        "{text}"
    );
    assert!(text.contains("txgate_requests_total{route=\"_unmatched\",status=\"404\"} 1"));
    assert!(text.contains("txgate_request_duration_seconds_count{route=\"echo\"} 3"));
    assert!(
        text.contains("txgate_upstream_attempts_total{upstream=\"bank\",result=\"success\"} 3")
    );
}

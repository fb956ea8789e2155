//! The plain proxy path: routing, limits, request IDs, header hygiene, h2c and TLS.

use serde_json::Value;

use crate::support::{Bank, GatewayBuilder, client};

fn plain_routes(bank: &Bank) -> String {
    format!(
        r#"
[upstreams.bank]
url = "{}"
max_attempts = 1

[[routes]]
name = "transfers"
methods = ["POST"]
path = "/transfers"
upstream = "bank"

[[routes]]
name = "echo"
path_prefix = "/echo"
upstream = "bank"
"#,
        bank.base()
    )
}

async fn problem(response: reqwest::Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "errors are problem+json"
    );
    let body: Value = response.json().await.unwrap();
    for member in ["type", "title", "status", "detail", "request_id"] {
        assert!(
            body.get(member).is_some(),
            "problem lacks `{member}`: {body}"
        );
    }
    body
}

#[tokio::test]
async fn unknown_path_is_404_problem_json() {
    // Proves an unmatched path gets 404 problem+json echoing the client's request ID.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(plain_routes(&bank)).start().await;
    let response = client()
        .get(gateway.url("/nowhere"))
        .header("x-request-id", "req-404")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "req-404");
    let body = problem(response).await;
    assert_eq!(body["status"], 404);
    assert_eq!(body["request_id"], "req-404");
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    // Proves a path matched with the wrong method gets 405, an Allow header and problem+json.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(plain_routes(&bank)).start().await;
    let response = client()
        .get(gateway.url("/transfers"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(problem(response).await["status"], 405);
    assert_eq!(bank.total_hits().await, 0);
}

#[tokio::test]
async fn oversized_body_is_413_and_never_reaches_the_bank() {
    // Proves a body over max_body_bytes gets 413 problem+json whether or not its length is
    // declared, and that nothing reaches the backend.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(plain_routes(&bank))
        .server("max_body_bytes = 64")
        .start()
        .await;
    let declared = client()
        .post(gateway.url("/echo"))
        .body(vec![b'x'; 65])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    assert_eq!(problem(declared).await["status"], 413);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b'y'; 40]), Ok(vec![b'y'; 40])];
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let chunked = client()
        .post(gateway.url("/echo"))
        .body(streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), 413);
    let fits = client()
        .post(gateway.url("/echo"))
        .body(vec![b'z'; 64])
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);
    assert_eq!(
        bank.hits("/echo").await,
        1,
        "only the body within the limit reached the bank"
    );
}

#[tokio::test]
async fn request_headers_over_the_limit_get_431() {
    // Proves the total header size limit answers 431 problem+json without calling the backend.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(plain_routes(&bank))
        .server("max_header_bytes = 2048")
        .start()
        .await;
    let response = client()
        .get(gateway.url("/echo"))
        .header("x-big", "v".repeat(3000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    problem(response).await;
    assert_eq!(bank.total_hits().await, 0);
}

#[tokio::test]
async fn request_id_is_echoed_and_forwarded() {
    // Proves a client's X-Request-ID reaches the backend unchanged and comes back on the response.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(plain_routes(&bank)).start().await;
    let response = client()
        .get(gateway.url("/echo/a"))
        .header("x-request-id", "client-id-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-id-1");
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["headers"]["x-request-id"][0], "client-id-1");
}

#[tokio::test]
async fn missing_request_id_is_generated_and_forwarded() {
    // Proves a request without X-Request-ID gets a fresh UUID, sent upstream and echoed back.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(plain_routes(&bank)).start().await;
    let response = client().get(gateway.url("/echo")).send().await.unwrap();
    let echoed = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(echoed.len(), 36, "a UUID: {echoed}");
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["headers"]["x-request-id"][0], echoed.as_str());
    let other = client().get(gateway.url("/echo")).send().await.unwrap();
    assert_ne!(other.headers()["x-request-id"].to_str().unwrap(), echoed);
}

#[tokio::test]
async fn invalid_request_id_is_400() {
    // Proves an X-Request-ID that is too long or has a space is refused before the backend.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(plain_routes(&bank)).start().await;
    for bad in ["a".repeat(256), "has space".to_string()] {
        let response = client()
            .get(gateway.url("/echo"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(problem(response).await["request_id"], Value::Null);
    }
    assert_eq!(bank.total_hits().await, 0);
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    // Proves Connection, the headers it names, Keep-Alive, TE and friends never cross the
    // gateway, in either direction, and X-Forwarded-For is appended.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(plain_routes(&bank)).start().await;
    let response = client()
        .get(gateway.url("/echo"))
        .header("connection", "x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=9")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic abc")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-kept", "yes")
        .send()
        .await
        .unwrap();
    assert!(
        response.headers().get("keep-alive").is_none(),
        "response hop-by-hop stripped"
    );
    let echo: Value = response.json().await.unwrap();
    let headers = echo["headers"].as_object().unwrap();
    for gone in [
        "connection",
        "x-private",
        "keep-alive",
        "te",
        "proxy-authorization",
    ] {
        assert!(
            !headers.contains_key(gone),
            "`{gone}` reached the backend: {echo}"
        );
    }
    assert_eq!(echo["headers"]["x-kept"][0], "yes");
    assert_eq!(
        echo["headers"]["x-forwarded-for"][0],
        "203.0.113.7, 127.0.0.1"
    );
}

#[tokio::test]
async fn h2c_serves_a_request() {
    // Proves the client port speaks HTTP/2 without TLS (prior knowledge) and proxies over h1.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(plain_routes(&bank)).start().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2.get(gateway.url("/echo/h2")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["path"], "/echo/h2");
}

#[tokio::test]
async fn tls_serves_h1_and_h2_through_alpn() {
    // Proves [server.tls] terminates TLS with rustls and negotiates h2 or http/1.1 by ALPN.
    let bank = Bank::start(&[]).await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let gateway = GatewayBuilder::new(format!("{tls}\n{}", plain_routes(&bank)))
        .start()
        .await;
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let url = format!("https://localhost:{}/echo/tls", gateway.port);
    let h2 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .build()
        .unwrap();
    let response = h2.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.version(),
        reqwest::Version::HTTP_2,
        "ALPN picked h2"
    );
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
    let h1 = reqwest::Client::builder()
        .add_root_certificate(root)
        .http1_only()
        .build()
        .unwrap();
    let response = h1.get(&url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn forged_saga_headers_on_a_plain_route_never_reach_the_bank() {
    // Proves a client cannot speak the backend contract through a plain route: its X-Saga-ID
    // and X-Saga-Step are removed, so the bank sees a compensation with no saga to undo.
    let bank = Bank::start(&["alice=100"]).await;
    let config = format!(
        "[upstreams.bank]\nurl = \"{}\"\nmax_attempts = 1\n[[routes]]\nname = \"bank\"\npath_prefix = \"/bank/\"\nstrip_prefix = true\nupstream = \"bank\"\n",
        bank.base()
    );
    let gateway = GatewayBuilder::new(config).start().await;
    let forged = client()
        .post(gateway.url("/bank/debit/compensate"))
        .header("idempotency-key", "forged.debit.compensate")
        .header("x-saga-id", "someone-elses-saga")
        .header("x-saga-step", "debit")
        .json(&serde_json::json!({"account": "alice", "amount": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        400,
        "the bank refuses a compensation without a saga"
    );
    let seen = bank.requests("/debit/compensate").await;
    assert_eq!(seen.len(), 1);
    let headers = &seen[0]["headers"];
    assert!(
        headers.get("x-saga-id").is_none() && headers.get("x-saga-step").is_none(),
        "{headers}"
    );
    assert_eq!(bank.balance("alice").await, 100);
}

#[tokio::test]
async fn a_path_with_dot_segments_gets_400_before_routing() {
    // Proves `/x/../y` and its percent-encoded forms are refused with 400 problem+json, so a
    // route's prefix can never be escaped, and nothing reaches the backend.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(plain_routes(&bank)).start().await;
    for path in [
        "/echo/../transfers",
        "/echo/%2e%2e/transfers",
        "/echo/.%2E/x",
        "/echo/./x",
    ] {
        let bytes = crate::support::raw::request("GET", path, &[("connection", "close")], "");
        let answer =
            crate::support::raw::exchange(gateway.port, &bytes, std::time::Duration::from_secs(5))
                .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("dot-segment"), "{path}: {answer}");
    }
    assert_eq!(bank.total_hits().await, 0);
}

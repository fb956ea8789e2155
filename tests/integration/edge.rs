//! The edge contract tried as an attacker would (SPEC §3): keys and headers of the backend
//! contract that a client can never send through, paths that climb out of a route in any
//! encoding, methods that are never proxied, hosts that do not add up, identities that are not
//! text, and sockets that try to hold every connection slot.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};

use crate::sagas::{transfer, transfer_routes};
use crate::support::{Bank, Gateway, GatewayBuilder, client, raw, wait_until};

/// A transfer saga from bank A to bank B, and a plain any-method route to bank B (the shape of
/// SPEC §2's `api` route), which an attacker may call directly.
fn saga_and_plain(a: &Bank, b: &Bank, client_key: &str) -> String {
    let routes = transfer_routes(a, b, "")
        .replace("timeout_ms = 1000", "timeout_ms = 5000")
        .replace(
            "mode = \"saga\"\n",
            &format!("mode = \"saga\"\nclient_key = \"{client_key}\"\n"),
        );
    format!(
        "{routes}\n[[routes]]\nname = \"api\"\npath_prefix = \"/bank-b/\"\nstrip_prefix = true\nupstream = \"bank_b\"\n"
    )
}

async fn raw_status(gateway: &Gateway, request: &[u8]) -> String {
    let answer = raw::exchange(gateway.port, request, Duration::from_secs(5)).await;
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_client_cannot_send_a_saga_step_before_the_engine_does() {
    // Proves SPEC §3/§4: the engine's Idempotency-Keys are not made of the saga id (which the
    // client learns from a 202), and a plain route refuses keys of the engine's form, in either
    // encoding. Before, a client sent `<saga_id>.credit.action` with itself as the payee through
    // the plain route while the saga was pending, and the money went to it.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0", "mallory=0"]).await;
    let gateway = GatewayBuilder::new(saga_and_plain(&a, &b, ""))
        .server("request_timeout_ms = 300")
        .start()
        .await;
    b.fault(json!({"kind": "latency", "latency_ms": 1500, "count": 1, "path_prefix": "/credit"}))
        .await;
    let (status, pending) =
        transfer(&gateway, "/transfers", "pay-carol", "alice", "carol", 70).await;
    assert_eq!(status, 202, "{pending}");
    let saga_id = pending["saga_id"].as_str().unwrap().to_string();
    for key in [
        format!("{saga_id}.credit.action"),
        "txgate-0123456789abcdef0123456789abcdef".to_string(),
    ] {
        let forged = client()
            .post(gateway.url("/bank-b/credit"))
            .header("idempotency-key", &key)
            .header("x-saga-id", &saga_id)
            .header("x-saga-step", "credit")
            .json(&json!({"account": "mallory", "amount": 70}))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 400, "{key}");
        let problem: Value = forged.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{problem}"
        );
    }
    wait_until(Duration::from_secs(10), "the saga to complete", || async {
        transfer(&gateway, "/transfers", "pay-carol", "alice", "carol", 70)
            .await
            .0
            == 200
    })
    .await;
    assert_eq!(
        (b.balance("carol").await, b.balance("mallory").await),
        (70, 0)
    );
    let sent = b.requests("/credit").await;
    assert_eq!(sent.len(), 1, "only the saga's own credit reached the bank");
    let key = sent[0]["headers"]["idempotency-key"].as_str().unwrap();
    assert!(
        key.starts_with("txgate-") && !key.contains(&saga_id),
        "{key}"
    );
}

#[tokio::test]
async fn the_gateway_header_never_passes_from_a_client() {
    // Proves the header naming the sending gateway is the engine's, like X-Saga-ID: a client's
    // copy is removed on plain routes.
    let a = Bank::start(&[]).await;
    let b = Bank::start(&["mallory=0"]).await;
    let gateway = GatewayBuilder::new(saga_and_plain(&a, &b, ""))
        .start()
        .await;
    let sent = client()
        .post(gateway.url("/bank-b/credit"))
        .header("idempotency-key", "mallory-1")
        .header("x-txgate-gateway", "gw1")
        .json(&json!({"account": "mallory", "amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200, "an ordinary call of the bank's API");
    let seen = b.requests("/credit").await;
    assert!(
        seen[0]["headers"].get("x-txgate-gateway").is_none(),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_client_key_that_is_not_text_is_refused_not_merged_with_another() {
    // Proves two clients whose X-Client-ID differ only in bytes that are not UTF-8 are never one
    // client: such a value gets 400. Before, both decoded lossily to the same name, and one got
    // the other's saga answer.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let gateway = GatewayBuilder::new(saga_and_plain(&a, &b, "header:x-client-id"))
        .start()
        .await;
    let body = r#"{"from":"alice","to":"carol","amount":5}"#;
    for client_id in [b"acme\xff".as_slice(), b"acme\xfe"] {
        let mut request = b"POST /transfers HTTP/1.1\r\nhost: x\r\nx-request-id: shared\r\ncontent-type: application/json\r\nx-client-id: ".to_vec();
        request.extend_from_slice(client_id);
        request.extend_from_slice(
            format!(
                "\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let status = raw_status(&gateway, &request).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    }
    assert_eq!(a.total_hits().await, 0, "no saga ran");
}

#[tokio::test]
async fn dot_segments_in_every_encoding_get_400_before_routing() {
    // Proves SPEC §3's list: `..;/`, `..%2f`, `%2e%2e%2f`, `..%5c`, double encoding, overlong
    // UTF-8 and NUL are refused like `..`, and nothing reaches the backend.
    let a = Bank::start(&[]).await;
    let b = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(saga_and_plain(&a, &b, ""))
        .start()
        .await;
    for path in [
        "/bank-b/..;/admin",
        "/bank-b/..%2fadmin",
        "/bank-b/%2e%2e%2fadmin",
        "/bank-b/..%5cadmin",
        "/bank-b/%252e%252e/admin",
        "/bank-b/%c0%ae%c0%ae/admin",
        "/bank-b/.%00./admin",
    ] {
        let request = raw::request("GET", path, &[("connection", "close")], "");
        let status = raw_status(&gateway, &request).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{path}: {status}");
    }
    assert_eq!(b.total_hits().await, 0);
}

#[tokio::test]
async fn connect_and_trace_get_405_and_are_never_forwarded() {
    // Proves CONNECT and TRACE are never proxied, even on an any-method route (before, both were
    // forwarded and the client got an empty reply logged as 200).
    let a = Bank::start(&[]).await;
    let b = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(saga_and_plain(&a, &b, ""))
        .start()
        .await;
    let connect = format!(
        "CONNECT 127.0.0.1:{} HTTP/1.1\r\nhost: 127.0.0.1:{}\r\nconnection: close\r\n\r\n",
        b.port, b.port
    );
    let trace = raw::request("TRACE", "/bank-b/echo", &[("connection", "close")], "");
    for request in [connect.into_bytes(), trace] {
        let answer = raw::exchange(gateway.port, &request, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("allow:"), "{answer}");
    }
    assert_eq!(b.total_hits().await, 0);
}

#[tokio::test]
async fn a_request_without_exactly_one_host_gets_400() {
    // Proves RFC 9112 §3.2 at the edge: HTTP/1.1 with no Host, or two, is refused.
    let a = Bank::start(&[]).await;
    let b = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(saga_and_plain(&a, &b, ""))
        .start()
        .await;
    for head in [
        "GET /bank-b/echo HTTP/1.1\r\nconnection: close\r\n\r\n",
        "GET /bank-b/echo HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n",
    ] {
        let status = raw_status(&gateway, head.as_bytes()).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{head:?}: {status}");
    }
    let fine = raw_status(
        &gateway,
        b"GET /bank-b/echo HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(fine.starts_with("HTTP/1.1 200"), "{fine}");
    assert_eq!(b.hits("/echo").await, 1);
}

#[tokio::test]
async fn an_h2_host_that_differs_from_the_authority_gets_400() {
    // Proves RFC 9113 §8.3.1 at the edge: an h2 request whose `host` names another host than its
    // `:authority` is refused; one that agrees is served.
    let a = Bank::start(&[]).await;
    let b = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(saga_and_plain(&a, &b, ""))
        .start()
        .await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let lying = h2
        .get(gateway.url("/bank-b/echo"))
        .header("host", "elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(lying.version(), reqwest::Version::HTTP_2);
    assert_eq!(lying.status(), 400);
    let honest = h2.get(gateway.url("/bank-b/echo")).send().await.unwrap();
    assert_eq!(honest.status(), 200);
    assert_eq!(b.hits("/echo").await, 1);
}

/// Opens an idle connection to the gateway from `source` (a loopback address).
async fn idle_from(gateway: &Gateway, source: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind((std::net::Ipv4Addr::from(source), 0).into())
        .unwrap();
    socket
        .connect(([127, 0, 0, 1], gateway.port).into())
        .await
        .unwrap()
}

/// What the gateway says to a connection that sends a request and reads to the end.
async fn answer_to(mut stream: TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream
        .write_all(b"GET /bank-b/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection_slot() {
    // Proves the per-client cap: idle sockets from one address stop at
    // `max_connections_per_client`, past which that address gets 503 problem+json, while
    // another address is still served.
    let a = Bank::start(&[]).await;
    let b = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(saga_and_plain(&a, &b, ""))
        .server("max_connections = 50")
        .server("max_connections_per_client = 10")
        .start()
        .await;
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(idle_from(&gateway, [127, 0, 0, 2]).await);
    }
    let refused = answer_to(idle_from(&gateway, [127, 0, 0, 2]).await).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("application/problem+json"), "{refused}");
    let served = answer_to(idle_from(&gateway, [127, 0, 0, 3]).await).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    drop(idle);
}

#[tokio::test]
async fn every_connection_over_the_limit_gets_a_503_not_a_bare_close() {
    // Proves that past `max_connections` each excess client is answered 503 problem+json, not
    // only the first few (before, most got the socket closed with no answer).
    let a = Bank::start(&[]).await;
    let b = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(saga_and_plain(&a, &b, ""))
        .server("max_connections = 8")
        .start()
        .await;
    let mut idle = Vec::new();
    for host in 0..8u8 {
        idle.push(idle_from(&gateway, [127, 0, 1, host + 1]).await);
    }
    let mut excess = Vec::new();
    for n in 0..200u8 {
        excess.push(idle_from(&gateway, [127, 0, 2, n.max(1)]).await);
    }
    let answers = futures_util::future::join_all(excess.into_iter().map(answer_to)).await;
    let answered = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 503"))
        .count();
    assert_eq!(answered, answers.len(), "every excess client got its 503");
    drop(idle);
}

#[tokio::test]
async fn a_reload_of_a_broken_file_is_422_and_names_the_problem() {
    // Proves a reload of a file that does not parse, or has an unknown key, is the operator's
    // error (422 problem+json naming it), not the gateway's (500); the running config stays.
    let a = Bank::start(&[]).await;
    let b = Bank::start(&[]).await;
    let config = saga_and_plain(&a, &b, "");
    let gateway = GatewayBuilder::new(config.clone()).start().await;
    for (broken, named) in [
        (format!("{config}\n[[routes]\nname = "), "TOML"),
        (
            config.replace("timeout_ms = 5000", "timeout_msx = 5000"),
            "timeout_msx",
        ),
    ] {
        gateway.write_config(&broken);
        let (status, body) = gateway.reload().await;
        assert_eq!(status, 422, "{body}");
        assert!(body.to_string().contains(named), "{body}");
    }
    assert_eq!(gateway.readyz().await, 200);
}

#[tokio::test]
async fn admin_answers_name_what_is_missing_and_what_is_allowed() {
    // Proves an unknown saga is "Not found" (not "No route for this path"), and a known admin
    // call asked with the wrong method is 405 with `Allow`, never 404.
    let a = Bank::start(&[]).await;
    let b = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(saga_and_plain(&a, &b, ""))
        .start()
        .await;
    let missing = gateway.admin_json("/admin/sagas/nope").await;
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["title"], "Not found");
    for (path, allow) in [
        ("/admin/sagas/nope/resolve", "POST"),
        ("/admin/sagas/nope/retry", "POST"),
        ("/admin/reload", "POST"),
    ] {
        let wrong = gateway
            .admin(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 405, "{path}");
        assert_eq!(wrong.headers()["allow"], allow, "{path}");
    }
}

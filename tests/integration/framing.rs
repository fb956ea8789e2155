//! The gateway owns framing and a saga call's identity: a plugin that replaces a body cannot
//! leave the backend's `Content-Length` behind (which desynchronises keep-alive: the client
//! would take the tail for the next response), a plugin that sets `Content-Length` or
//! `Transfer-Encoding` is refused, and `on-step-request` can neither overwrite `X-Saga-ID`,
//! `X-Saga-Step` or `Idempotency-Key` nor send a call to a dot-segment path.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::sagas::transfer;
use crate::support::{Bank, GatewayBuilder, client};
use crate::wasm;

fn config(bank: &Bank, mode: &str) -> String {
    format!(
        r#"
[upstreams.bank]
url = "{bank}"
max_attempts = 1
[plugins.framer]
module = "{module}"
[plugins.framer.config]
mode = "{mode}"
[[routes]]
name = "transfers"
methods = ["POST"]
path = "/transfers"
plugins = ["framer"]
[routes.saga]
mode = "saga"
[[routes.saga.steps]]
name = "debit"
upstream = "bank"
action = "POST /debit"
compensate = "POST /debit/compensate"
[[routes]]
name = "plain"
path_prefix = "/plain"
strip_prefix = true
upstream = "bank"
plugins = ["framer"]
"#,
        bank = bank.base(),
        module = wasm::FRAMER,
    )
}

/// One response read off a kept-alive connection by its own framing: the head, then exactly
/// `Content-Length` bytes.
async fn read_response(reader: &mut BufReader<TcpStream>) -> (String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .expect("a response head within 10 s")
            .expect("read");
        assert!(
            read > 0,
            "the gateway closed the connection; head so far: {head}"
        );
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.expect("the body");
    (head, body)
}

#[tokio::test]
async fn a_body_replaced_in_on_response_is_framed_by_the_gateway_and_keep_alive_holds() {
    // Proves the client gets a Content-Length that matches the body the plugin wrote, so the
    // second response on the same connection is the backend's answer to the second request,
    // not the tail of the first.
    let bank = Bank::start(&["alice=100"]).await;
    let gateway = GatewayBuilder::new(config(&bank, "body")).start().await;
    let stream = TcpStream::connect(("127.0.0.1", gateway.port))
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    for round in 0..2 {
        let request = format!(
            "GET /plain/accounts/alice HTTP/1.1\r\nhost: 127.0.0.1\r\nx-request-id: keep-{round}\r\n\r\n"
        );
        reader
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let (head, body) = read_response(&mut reader).await;
        assert!(head.starts_with("HTTP/1.1 200"), "round {round}: {head}");
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with('{'), "round {round}: {body}");
        assert!(
            body.ends_with("and a much longer tail the backend never sent"),
            "round {round}: {body}"
        );
    }
}

#[tokio::test]
async fn a_plugin_setting_content_length_or_transfer_encoding_is_refused_and_counted() {
    // Proves a wrong Content-Length or a `chunked` the body does not follow never reaches the
    // client: the plugin's change is an output failure (503 under on_error = "reject"),
    // counted, and the client gets a whole problem+json answer.
    let bank = Bank::start(&["alice=100"]).await;
    for mode in ["content-length", "chunked"] {
        let gateway = GatewayBuilder::new(config(&bank, mode)).start().await;
        let response = client()
            .get(gateway.url("/plain/accounts/alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503, "{mode}");
        let length = response.content_length();
        let body = response.bytes().await.unwrap();
        assert_eq!(length, Some(body.len() as u64), "{mode}");
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["status"], 503, "{mode}: {problem}");
        let errors = gateway
            .metric("txgate_plugin_errors_total{plugin=\"framer\",kind=\"output\"}")
            .await;
        assert_eq!(errors, 1.0, "{mode}");
        let header = if mode == "chunked" {
            "transfer-encoding"
        } else {
            "content-length"
        };
        assert!(
            gateway.log().contains(header),
            "{mode}: the log names the header"
        );
    }
}

#[tokio::test]
async fn on_step_request_cannot_change_a_calls_identity_or_send_it_to_a_dot_segment_path() {
    // Proves each forged identity header and the rewritten `/x/../admin` path is refused as
    // the plugin's failure: the call is never sent, the bank's books do not move, and the
    // failure is counted.
    let bank = Bank::start(&["alice=100"]).await;
    for (round, mode) in ["saga-id", "saga-step", "idempotency-key", "path"]
        .into_iter()
        .enumerate()
    {
        let gateway = GatewayBuilder::new(config(&bank, mode)).start().await;
        let (status, answer) = transfer(
            &gateway,
            "/transfers",
            &format!("forge-{round}"),
            "alice",
            "x",
            5,
        )
        .await;
        assert_ne!(status, 200, "{mode}: {answer}");
        assert!(
            gateway
                .metric("txgate_plugin_errors_total{plugin=\"framer\",kind=\"output\"}")
                .await
                >= 1.0,
            "{mode}"
        );
        let (log, _) = bank.request_log().await;
        let forged = log.iter().find(|r| {
            r["path"].as_str().is_some_and(|p| p.contains("admin"))
                || r.to_string().contains("forged")
        });
        assert!(forged.is_none(), "{mode}: the bank got {forged:?}");
        assert!(bank.requests("/debit").await.is_empty(), "{mode}");
        assert_eq!(bank.balance("alice").await, 100, "{mode}");
    }
}

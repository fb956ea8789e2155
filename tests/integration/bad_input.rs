//! Bad input of every kind: each gets its exact answer, and nothing reaches a backend or is lost.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sagas::transfer_routes;
use crate::support::{Bank, Gateway, GatewayBuilder, bin, client};

fn echo(bank: &Bank) -> String {
    format!(
        "[upstreams.bank]\nurl = \"{}\"\n\n[[routes]]\nname = \"echo\"\npath_prefix = \"/echo\"\nupstream = \"bank\"\n",
        bank.base()
    )
}

/// Sends raw bytes and reads the whole answer (the gateway closes after an error).
async fn raw(gateway: &Gateway, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(format!("127.0.0.1:{}", gateway.port))
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn malformed_http_gets_400_and_reaches_nothing() {
    // Proves a request line that is not HTTP, and a request with two different Content-Length
    // headers, are answered 400 problem+json (never an empty body) and never forwarded.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(echo(&bank)).start().await;
    let garbage = raw(&gateway, b"HELLO THERE\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    assert!(
        garbage.contains("application/problem+json") && garbage.contains("\"status\":400"),
        "{garbage}"
    );
    let smuggle = raw(
        &gateway,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 10\r\n\r\nabc",
    )
    .await;
    assert!(smuggle.starts_with("HTTP/1.1 400"), "{smuggle}");
    assert!(smuggle.contains("application/problem+json"), "{smuggle}");
    assert_eq!(bank.total_hits().await, 0);
}

#[tokio::test]
async fn too_many_headers_get_431_problem_json_naming_the_limit() {
    // Proves the header-count limit: more than max_header_count headers get 431 problem+json
    // that names both head limits, and nothing reaches the backend.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(echo(&bank))
        .server("max_header_count = 20")
        .start()
        .await;
    let mut head = b"GET /echo HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..30 {
        head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let answer = raw(&gateway, &head).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        answer.contains("application/problem+json") && answer.contains("20 headers"),
        "{answer}"
    );
    assert_eq!(bank.total_hits().await, 0);
}

#[tokio::test]
async fn huge_headers_get_431_from_the_gateway_or_hyper() {
    // Proves oversized heads are refused: past max_header_bytes with a problem+json 431, far past
    // it by the HTTP layer itself; nothing reaches the backend.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(echo(&bank))
        .server("max_header_bytes = 4096")
        .start()
        .await;
    let over = client()
        .get(gateway.url("/echo"))
        .header("x-big", "a".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 431);
    assert_eq!(over.headers()["content-type"], "application/problem+json");
    let mut head = b"GET /echo HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..400 {
        head.extend_from_slice(format!("X-Many-{i}: {}\r\n", "b".repeat(60)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let way_over = raw(&gateway, &head).await;
    assert!(
        way_over.starts_with("HTTP/1.1 431") && way_over.contains("application/problem+json"),
        "{}",
        &way_over[..way_over.len().min(300)]
    );
    assert_eq!(bank.total_hits().await, 0);
}

#[tokio::test]
async fn bad_request_ids_get_400_problem_json() {
    // Proves an empty, a 256-character, a duplicated, and a control-character X-Request-ID are
    // each refused with 400 problem+json, and nothing reaches the backend.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(echo(&bank)).start().await;
    let cases: [&[u8]; 4] = [
        b"X-Request-ID: \r\n",
        format!("X-Request-ID: {}\r\n", "r".repeat(256))
            .leak()
            .as_bytes(),
        b"X-Request-ID: one\r\nX-Request-ID: two\r\n",
        b"X-Request-ID: tab\there\r\n",
    ];
    for case in cases {
        let mut request = b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
        request.extend_from_slice(case);
        request.extend_from_slice(b"\r\n");
        let answer = raw(&gateway, &request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("invalid-request-id"), "{answer}");
    }
    assert_eq!(bank.total_hits().await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_the_expected_json_moves_no_money() {
    // Proves a transfer with a body of broken JSON or of the wrong types is refused by the bank
    // (a business rejection, 400) and the books are untouched.
    let a = Bank::start(&["alice=100"]).await;
    let b = Bank::start(&["carol=100"]).await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .start()
        .await;
    for (n, body) in [
        "{\"from\": ",
        "{\"from\": \"alice\", \"to\": \"carol\", \"amount\": \"ten\"}",
        "[1,2,3]",
    ]
    .into_iter()
    .enumerate()
    {
        let response = client()
            .post(gateway.url("/transfers"))
            .header("x-request-id", format!("bad-json-{n}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["status"], "compensated");
        assert_eq!(answer["failed_step"], "debit");
    }
    assert_eq!(a.total().await + b.total().await, 200);
    assert_eq!(b.total_hits().await, 0, "the credit was never sent");
}

#[tokio::test]
async fn a_body_over_the_limit_starts_no_saga() {
    // Proves 413 on a saga route happens before any saga exists.
    let a = Bank::start(&["alice=100"]).await;
    let b = Bank::start(&["carol=100"]).await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .server("max_body_bytes = 64")
        .start()
        .await;
    let response = client()
        .post(gateway.url("/transfers"))
        .header("x-request-id", "too-big")
        .body(format!(
            "{{\"from\":\"alice\",\"to\":\"carol\",\"amount\":1,\"pad\":\"{}\"}}",
            "p".repeat(100)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let sagas: Value = gateway.admin_json("/admin/sagas").await;
    assert_eq!(sagas["sagas"], json!([]));
    assert_eq!(a.total_hits().await, 0);
}

#[tokio::test]
async fn a_slow_body_is_cut_with_408() {
    // Proves body_read_timeout_ms: a client that sends its head and then trickles its body gets
    // 408 problem+json, and the request never reaches the backend.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(echo(&bank))
        .server("body_read_timeout_ms = 500")
        .start()
        .await;
    let mut stream = TcpStream::connect(format!("127.0.0.1:{}", gateway.port))
        .await
        .unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nslow")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream.write_all(b".").await.is_err() {
                break;
            }
        }
    };
    trickle.await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request-timeout"), "{answer}");
    assert_eq!(bank.total_hits().await, 0);
}

fn check(config: &str, files: &[(&str, &[u8])]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    std::fs::write(dir.path().join("txgate.toml"), config).unwrap();
    let output = Command::new(bin("txgate"))
        .args(["check", "-c"])
        .arg(dir.path().join("txgate.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_config_with_every_class_of_mistake_reports_each() {
    // Proves check reports an unknown key, a wrong type, bad references, a missing saga call, bad
    // values, a public admin listener without a token, a bad URL, a bad path, a bad method, a
    // missing plugin file, a corrupt plugin and a plugin that is a core module, not a component.
    let config = r#"
[server]
admin_listen = "0.0.0.0:9080"
max_body_bytes = "lots"
[store]
retention_secs = 0
[upstreams.a]
url = "ftp://nowhere"
max_attempts = 0
backoff_base_ms = 100
backoff_max_ms = 10
timeout_msx = 5
[upstreams.b]
url = "http://127.0.0.1:1"
[plugins.missing]
module = "gone.wasm"
[plugins.corrupt]
module = "corrupt.wasm"
[plugins.core]
module = "core.wat"
[[routes]]
name = "r1"
path = "no-slash"
methods = ["get"]
upstream = "c"
plugins = ["nope"]
[[routes]]
name = "r1"
path = "/t"
[routes.saga]
mode = "saga"
[[routes.saga.steps]]
name = "s"
upstream = "z"
action = "POST /x"
"#;
    let stderr = check(
        config,
        &[
            ("corrupt.wasm", b"\0asm\x01\0\0\0garbage"),
            ("core.wat", b"(module)"),
        ],
    );
    for expected in [
        "server.max_body_bytes: invalid type",
        "upstreams.a.timeout_msx: unknown field",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    // The parse errors above stop the whole-config checks: fix the types and run again.
    let fixed = config
        .replace("max_body_bytes = \"lots\"", "")
        .replace("timeout_msx = 5", "");
    let stderr = check(
        &fixed,
        &[
            ("corrupt.wasm", b"\0asm\x01\0\0\0garbage"),
            ("core.wat", b"(module)"),
        ],
    );
    for expected in [
        "server.admin_token: required",
        "store.retention_secs: must be at least 1",
        "upstreams.a.url: `ftp://nowhere` must start with http://",
        "upstreams.a.max_attempts: must be between 1 and 100",
        "upstreams.a.backoff_base_ms: must not exceed backoff_max_ms",
        "plugins.missing.module: no such file",
        "routes[0].path: must start with `/`",
        "routes[0].methods[0]: `get` is not an upper-case HTTP method",
        "routes[0].upstream: unknown upstream `c`",
        "routes[0].plugins[0]: unknown plugin `nope`",
        "routes[1].name: duplicate route name",
        "routes[1].saga.steps[0].upstream: unknown upstream `z`",
        "routes[1].saga.steps[0].compensate: required",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    let plugins_only =
        "[plugins.corrupt]\nmodule = \"corrupt.wasm\"\n[plugins.core]\nmodule = \"core.wat\"\n";
    let stderr = check(
        plugins_only,
        &[
            ("corrupt.wasm", b"\0asm\x01\0\0\0garbage"),
            ("core.wat", b"(module)"),
        ],
    );
    assert!(
        stderr.contains("plugins.corrupt.module: not a WebAssembly component"),
        "{stderr}"
    );
    assert!(
        stderr.contains("plugins.core.module: not a WebAssembly component"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_refuses_a_corrupt_plugin_and_keeps_nothing_half_started() {
    // Proves serve compiles plugins before it is ready: a corrupt module stops the start with
    // exit 1 and the key named, and no client request is ever accepted.
    let bank = Bank::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.wasm"), b"\0asm\x0d\0\x01\0junk").unwrap();
    let body = format!(
        "[plugins.bad]\nmodule = \"{}\"\n{}",
        dir.path().join("bad.wasm").display(),
        echo(&bank)
    );
    let mut gateway = GatewayBuilder::new(body).stopped();
    let (status, log) = gateway.restart_expecting_failure().await;
    assert_eq!(status.code(), Some(1));
    assert!(log.contains("plugins.bad.module"), "{log}");
    assert_eq!(bank.total_hits().await, 0);
}

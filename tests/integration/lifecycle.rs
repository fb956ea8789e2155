//! Connection-level safety and process lifecycle: slowloris, connection limits, SIGTERM.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Bank, GatewayBuilder, client};

fn echo_route(bank: &Bank) -> String {
    format!(
        "[upstreams.bank]\nurl = \"{}\"\n\n[[routes]]\nname = \"echo\"\npath_prefix = \"/echo\"\nupstream = \"bank\"\n",
        bank.base()
    )
}

/// Reads until the server closes the connection; returns how long that took.
async fn time_until_closed(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn slowloris_is_cut_off_while_others_are_served() {
    // Proves a client trickling its headers, and one sending nothing, are disconnected after
    // header_read_timeout_ms, while normal clients are served meanwhile.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(echo_route(&bank))
        .server("header_read_timeout_ms = 600")
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", gateway.port);
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        let started = Instant::now();
        for i in 0..40 {
            if slow
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let closed_after = time_until_closed(&mut slow, Duration::from_secs(5)).await;
        started.elapsed().max(closed_after)
    });
    for _ in 0..5 {
        let response = client().get(gateway.url("/echo")).send().await.unwrap();
        assert_eq!(response.status(), 200, "other clients are served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let silent_closed = time_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(
        silent_closed < Duration::from_secs(2),
        "silent client cut after {silent_closed:?}"
    );
    let slow_closed = trickle.await.unwrap();
    assert!(
        slow_closed < Duration::from_secs(3),
        "slow client cut after {slow_closed:?}"
    );
    assert_eq!(
        bank.hits("/echo").await,
        5,
        "the slow request never reached the backend"
    );
}

#[tokio::test]
async fn connections_over_the_limit_get_503() {
    // Proves max_connections caps concurrent connections: the extra one gets 503 problem+json,
    // and a slot freed is usable again.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(echo_route(&bank))
        .server("max_connections = 2")
        .start()
        .await;
    let addr = format!("127.0.0.1:{}", gateway.port);
    let first = TcpStream::connect(&addr).await.unwrap();
    let second = TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    third.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    drop((first, second));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = client().get(gateway.url("/echo")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn sigterm_lets_in_flight_request_finish_and_exits_zero() {
    // Proves SIGTERM stops new connections but lets an in-flight request complete, and the
    // process exits 0 within the grace period.
    let bank = Bank::start(&[]).await;
    let mut gateway = GatewayBuilder::new(echo_route(&bank))
        .server("shutdown_grace_ms = 5000")
        .start()
        .await;
    let url = gateway.url("/echo?delay_ms=1500");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = TcpStream::connect(format!("127.0.0.1:{}", gateway.port)).await;
    assert!(refused.is_err(), "no new connections after SIGTERM");
    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request answered");
    assert_eq!(response.status(), 200);
    let status = gateway.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status}");
    gateway.restart().await;
    let response = client().get(gateway.url("/echo")).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "a restart on the same ports serves again"
    );
}

#[tokio::test]
async fn shutdown_grace_bounds_a_stuck_request() {
    // Proves a request outliving shutdown_grace_ms is cut and the process still exits 0.
    let bank = Bank::start(&[]).await;
    let mut gateway = GatewayBuilder::new(echo_route(&bank))
        .server("shutdown_grace_ms = 300")
        .start()
        .await;
    let url = gateway.url("/echo?delay_ms=10000");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    gateway.signal(Signal::SIGINT);
    let status = gateway.wait_exit(Duration::from_secs(5)).await;
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        in_flight.await.unwrap().is_err(),
        "the stuck request was cut"
    );
}

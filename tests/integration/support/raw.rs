//! Raw HTTP/1.1 over TCP, for the clients a library would not be: one that hangs up at a chosen
//! moment, or one that sends what no library sends.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request as bytes, with `Content-Length` for the body.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    text.into_bytes()
}

/// Connects, sends `bytes`, and hangs up at once without reading a byte.
pub async fn send_and_hang_up(port: u16, bytes: &[u8]) {
    drop(send_and_keep(port, bytes).await);
}

/// Connects and sends `bytes`, keeping the connection open until the stream is dropped (the
/// client hangs up then, mid-request).
pub async fn send_and_keep(port: u16, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("send");
    stream
}

/// Connects, sends `bytes`, and reads until the server closes (or `timeout`).
pub async fn exchange(port: u16, bytes: &[u8], timeout: Duration) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("send");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

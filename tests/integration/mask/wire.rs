//! One client connection kept alive across requests, each response read by its own framing:
//! the head, then exactly `Content-Length` bytes. A length that disagreed with the body would
//! show here, as a read that never completes or a next response that does not parse.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one response may take to arrive.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(20);
/// The most head lines read from one response.
const HEAD_LINES_MAX: usize = 100;

/// A response as it came off the wire.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The first value of a header (the name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 body")
    }
}

/// An open HTTP/1.1 connection to a gateway.
pub struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// Connects to `port` on loopback.
    pub async fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// Sends `method path` (with `headers` and `body`) on this connection and reads the answer.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let request = crate::support::raw::request(method, path, headers, body);
        self.reader
            .get_mut()
            .write_all(&request)
            .await
            .expect("send on the kept-alive connection");
        tokio::time::timeout(RESPONSE_TIMEOUT, self.read())
            .await
            .unwrap_or_else(|_| {
                panic!("no whole response to {method} {path} within {RESPONSE_TIMEOUT:?}")
            })
    }

    async fn read(&mut self) -> Answer {
        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .await
            .expect("read the status line");
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
        let mut headers = Vec::new();
        for _ in 0..HEAD_LINES_MAX {
            let mut line = String::new();
            self.reader
                .read_line(&mut line)
                .await
                .expect("read a header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("not a header line: {line:?}"));
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("a response without Content-Length: {headers:?}"));
        let mut body = vec![0; length];
        self.reader
            .read_exact(&mut body)
            .await
            .expect("read the body");
        Answer {
            status,
            headers,
            body,
        }
    }
}

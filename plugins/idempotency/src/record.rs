//! What the plugin keeps per key: a claim while the request runs, then the final response.
//!
//! Encoded as a JSON header line, then the raw response body, so the body is replayed exactly.

use serde::{Deserialize, Serialize};
use txgate_plugin_sdk::serde_json;
use txgate_plugin_sdk::{Header, Response};

/// The state of one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// A request holds the key. `boot` is the gateway process that runs it: a record of an
    /// earlier process was left by a crash, and the request is no longer in flight.
    InFlight {
        /// Fingerprint.
        fp: String,
        /// Boot id of the process running it.
        boot: String,
    },
    /// The final response, replayed to retries.
    Done {
        /// Fingerprint.
        fp: String,
        /// Status.
        status: u16,
        /// Headers, in order.
        headers: Vec<(String, String)>,
    },
}

impl Entry {
    /// The fingerprint of the request that owns the key.
    pub(crate) fn fingerprint(&self) -> &str {
        match self {
            Self::InFlight { fp, .. } | Self::Done { fp, .. } => fp,
        }
    }
}

/// Encodes an entry and, for a finished one, its body.
pub(crate) fn encode(entry: &Entry, body: &[u8]) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(entry).expect("an entry always encodes");
    bytes.push(b'\n');
    bytes.extend_from_slice(body);
    bytes
}

/// Decodes what `encode` wrote; `None` for anything else.
pub(crate) fn decode(bytes: &[u8]) -> Option<(Entry, &[u8])> {
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let entry = serde_json::from_slice(&bytes[..split]).ok()?;
    Some((entry, &bytes[split + 1..]))
}

/// The stored response, with `Idempotent-Replayed: true`.
pub(crate) fn replay(status: u16, headers: &[(String, String)], body: &[u8]) -> Response {
    let mut response = Response::new(status).with_body(body.to_vec());
    response.headers = headers
        .iter()
        .map(|(n, v)| Header::new(n.clone(), v.clone()))
        .collect();
    response.set_header("idempotent-replayed", "true");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_with_newlines_and_binary_survives() {
        let entry = Entry::Done {
            fp: "f".into(),
            status: 201,
            headers: vec![("content-type".into(), "application/octet-stream".into())],
        };
        let body = b"line one\nline two\n\0\xff";
        let bytes = encode(&entry, body);
        let (decoded, rest) = decode(&bytes).unwrap();
        assert_eq!(decoded, entry);
        assert_eq!(rest, body);
    }

    #[test]
    fn replay_keeps_headers_and_adds_the_marker() {
        let headers = vec![
            ("x-a".into(), "1".into()),
            ("content-type".into(), "application/json".into()),
        ];
        let response = replay(200, &headers, b"{}");
        assert_eq!(response.header("x-a"), Some("1"));
        assert_eq!(response.header("idempotent-replayed"), Some("true"));
        assert_eq!(response.body, b"{}");
    }

    #[test]
    fn garbage_is_not_an_entry() {
        assert!(decode(b"no newline").is_none());
        assert!(decode(b"{\"state\":\"other\"}\n").is_none());
    }
}

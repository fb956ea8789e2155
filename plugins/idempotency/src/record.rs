//! What the plugin keeps per key: the final response.
//!
//! Encoded as a JSON header line, then the raw response body, so the body is replayed exactly.
//! While the request runs, the key is *held* instead (`kv::hold`, with the fingerprint as the
//! hold's value): a hold is not stored, and ends with its request.

use serde::{Deserialize, Serialize};
use txgate_plugin_sdk::serde_json;
use txgate_plugin_sdk::{Header, Response};

/// The state of one finished key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// The final response, replayed to retries.
    Done {
        /// Fingerprint.
        fp: String,
        /// Status.
        status: u16,
        /// Headers, in order.
        headers: Vec<(String, String)>,
        /// The body was too large to keep: retries get the status and headers without it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        body_omitted: bool,
    },
}

impl Entry {
    /// The fingerprint of the request that owns the key.
    pub(crate) fn fingerprint(&self) -> &str {
        match self {
            Self::Done { fp, .. } => fp,
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

/// The stored response, with `Idempotent-Replayed: true` (and `Idempotent-Body-Omitted: true`
/// when the body was too large to keep).
pub(crate) fn replay(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    omitted: bool,
) -> Response {
    let mut response = Response::new(status).with_body(body.to_vec());
    // The length is the body's own; a stored one would be wrong for an omitted body.
    response.headers = headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("content-length"))
        .map(|(n, v)| Header::new(n.clone(), v.clone()))
        .collect();
    response.set_header("idempotent-replayed", "true");
    if omitted {
        response.set_header("idempotent-body-omitted", "true");
    }
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
            body_omitted: false,
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
        let response = replay(200, &headers, b"{}", false);
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

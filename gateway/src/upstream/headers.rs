//! Header hygiene for proxied messages: hop-by-hop headers (RFC 9110 §7.6.1) are removed in both
//! directions, and the client's address is appended to `X-Forwarded-For`.

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// The connection-specific headers a proxy must not forward, beyond those listed in `Connection`.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends the peer (its IP, as a header value) to `X-Forwarded-For`, folding earlier values
/// into one line, and sets `X-Forwarded-Proto`.
pub fn add_forwarded(headers: &mut HeaderMap, peer_ip: &HeaderValue, tls: bool) {
    if headers.contains_key(&FORWARDED_FOR) {
        let mut chain = String::new();
        for value in headers.get_all(&FORWARDED_FOR) {
            if let Ok(text) = value.to_str() {
                chain.push_str(text.trim());
                chain.push_str(", ");
            }
        }
        chain.push_str(peer_ip.to_str().unwrap_or_default());
        if let Ok(value) = HeaderValue::from_str(&chain) {
            headers.insert(FORWARDED_FOR, value);
        }
    } else {
        // The common case: no proxy before us, so the connection's value is used as it is.
        headers.insert(FORWARDED_FOR, peer_ip.clone());
    }
    let proto = if tls { "https" } else { "http" };
    headers.insert(FORWARDED_PROTO, HeaderValue::from_static(proto));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_standard_and_connection_listed_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn appends_to_an_existing_forwarded_chain() {
        let mut headers = HeaderMap::new();
        headers.append(FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        headers.append(FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        add_forwarded(&mut headers, &HeaderValue::from_static("127.0.0.1"), false);
        assert_eq!(headers[FORWARDED_FOR], "10.0.0.1, 10.0.0.2, 127.0.0.1");
        assert_eq!(headers[FORWARDED_PROTO], "http");
    }

    #[test]
    fn starts_the_chain_when_there_is_none() {
        let mut headers = HeaderMap::new();
        add_forwarded(&mut headers, &HeaderValue::from_static("::1"), true);
        assert_eq!(headers[FORWARDED_FOR], "::1");
        assert_eq!(headers[FORWARDED_PROTO], "https");
    }
}

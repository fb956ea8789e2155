//! `X-Request-ID`: the client's name for one logical operation, and the key of exactly-once.
//!
//! A valid ID is 1 to 255 visible ASCII characters (`0x21..=0x7E`). Saga routes and routes with the
//! idempotency plugin require one; elsewhere a missing ID is generated (a UUID v4).

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::{Error, ErrorKind};

/// The header name.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest accepted ID, in bytes.
pub const REQUEST_ID_BYTES_MAX: usize = 255;

/// Whether a byte string is a valid request ID.
pub fn is_valid(id: &[u8]) -> bool {
    (1..=REQUEST_ID_BYTES_MAX).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Reads the request's ID. `required` routes answer 400 when it is missing; others get a fresh one.
/// An ID that is present but invalid, or given twice, is always a 400: forwarding it would pass on
/// garbage, and guessing which copy the client meant could run an operation under the wrong key.
pub fn extract(headers: &HeaderMap, required: bool) -> Result<(HeaderValue, bool), Error> {
    let mut values = headers.get_all(&HEADER).iter();
    match (values.next(), values.next()) {
        (Some(value), None) if is_valid(value.as_bytes()) => Ok((value.clone(), false)),
        (Some(_), None) => Err(Error::new(
            ErrorKind::InvalidRequestId,
            "X-Request-ID must be 1 to 255 visible ASCII characters",
        )),
        (Some(_), Some(_)) => Err(Error::new(
            ErrorKind::InvalidRequestId,
            "X-Request-ID is given more than once",
        )),
        (None, _) if required => Err(Error::new(
            ErrorKind::InvalidRequestId,
            "this route requires an X-Request-ID header",
        )),
        (None, _) => Ok((generate(), true)),
    }
}

/// A fresh UUID v4, as a header value.
pub fn generate() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).expect("a UUID is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(HEADER, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    #[test]
    fn accepts_visible_ascii_up_to_255_bytes() {
        assert!(is_valid(b"a"));
        assert!(is_valid(&[b'~'; 255]));
        assert!(!is_valid(&[b'a'; 256]));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"has space"));
        assert!(!is_valid(b"tab\there"));
    }

    #[test]
    fn missing_id_is_generated_only_where_optional() {
        let (id, generated) = extract(&HeaderMap::new(), false).unwrap();
        assert!(generated);
        assert_eq!(id.len(), 36);
        let error = extract(&HeaderMap::new(), true).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequestId);
    }

    #[test]
    fn duplicate_or_invalid_id_is_refused() {
        assert!(extract(&headers(&[b"a", b"b"]), false).is_err());
        assert!(extract(&headers(&[b"a b"]), false).is_err());
        assert_eq!(extract(&headers(&[b"abc"]), true).unwrap().0, "abc");
    }
}

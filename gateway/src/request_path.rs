//! The request path, checked before routing: a path with a dot-segment (`.` or `..`), in any
//! encoding, is refused with 400. Routing on it would let `/bank-a/../admin` match the
//! `/bank-a/` route while the backend, normalising it, serves `/admin`.
//!
//! Backends and the proxies in front of them normalise in many ways, so the check reads the path
//! the way the most lenient of them might (SPEC §3): percent-decoded up to
//! [`DECODE_ROUNDS_MAX`] times (double encoding), `\` as well as `/` between segments (IIS),
//! anything from `;` on ignored in a segment (Tomcat's path parameters: `..;/`). A NUL anywhere,
//! or an overlong UTF-8 sequence once decoded (`%c0%ae` for `.`, `%c0%af` for `/`), is refused
//! outright: no backend reads them the same way as another.

use crate::error::{Error, ErrorKind};

/// Percent-decoding rounds tried: enough for any double or triple encoding seen in the wild.
const DECODE_ROUNDS_MAX: usize = 3;

/// Refuses a path with a `.` or `..` segment in any encoding, a NUL, or an overlong UTF-8
/// sequence once decoded.
pub(crate) fn check(path: &str) -> Result<(), Error> {
    inspect(path, path.as_bytes())?;
    // Most paths have no escape at all: they cost no copy.
    let Some(mut decoded) = percent_decode(path.as_bytes()) else {
        return Ok(());
    };
    for _ in 1..DECODE_ROUNDS_MAX {
        inspect(path, &decoded)?;
        match percent_decode(&decoded) {
            Some(next) => decoded = next,
            None => return Ok(()),
        }
    }
    inspect(path, &decoded)
}

/// One reading of the path: refused when it holds a NUL, an overlong sequence, or a
/// dot-segment.
fn inspect(path: &str, bytes: &[u8]) -> Result<(), Error> {
    if bytes.contains(&0) {
        return Err(refused(path, "a NUL byte"));
    }
    if overlong(bytes) {
        return Err(refused(path, "an overlong UTF-8 sequence"));
    }
    let dotted = bytes.split(|b| *b == b'/' || *b == b'\\').any(|segment| {
        let name = segment.split(|b| *b == b';').next().unwrap_or_default();
        name == b"." || name == b".."
    });
    if dotted {
        return Err(refused(path, "a dot-segment (`.` or `..`)"));
    }
    Ok(())
}

/// Whether the bytes hold an overlong UTF-8 sequence: a lead byte that can only start one
/// (`C0`, `C1`), or a three- or four-byte lead followed by a byte that makes it one. Other
/// bytes that are not UTF-8 (Latin-1 in an old URL) name no separator and pass.
fn overlong(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|pair| match pair {
        [0xC0 | 0xC1, _] => true,
        [0xE0, second] => (0x80..=0x9F).contains(second),
        [0xF0, second] => (0x80..=0x8F).contains(second),
        _ => false,
    }) || bytes.last().is_some_and(|b| matches!(b, 0xC0 | 0xC1))
}

/// The bytes with every valid `%XX` decoded; `None` when there was none.
fn percent_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.contains(&b'%') {
        return None;
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?)))
            .flatten();
        match escape {
            Some((high, low)) => {
                out.push((high * 16 + low) as u8);
                changed = true;
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

fn refused(path: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::BadRequest,
        format!("the path `{path}` has {what}, in some encoding; send it normalised"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_refused_in_every_encoding() {
        for path in [
            "/x/../y",
            "/x/./y",
            "/x/%2e%2e/y",
            "/x/%2E./y",
            "/..",
            "/x/.%2e",
            "/x/..;/y",
            "/x/..;jsessionid=1/y",
            "/x/..%2fy",
            "/x/%2e%2e%2fy",
            "/x/..%5cy",
            "/x\\..\\y",
            "/x/%252e%252e/y",
            "/x/%25252e%25252e/y",
            "/x/%c0%ae%c0%ae/y",
            "/x/%e0%80%ae%e0%80%ae/y",
            "/x/.%00./y",
            "/x/%00",
        ] {
            assert!(check(path).is_err(), "{path}");
        }
    }

    #[test]
    fn dots_inside_segments_are_fine() {
        for path in [
            "/",
            "/a.b/c",
            "/x/...",
            "/x/..y",
            "/v1.2/accounts",
            "/x/%2e%2ex",
            "/files/a%2Fb",
            "/x;v=1/y",
            "/caf%C3%A9",
            "/caf%e9",
            "/100%",
        ] {
            assert!(check(path).is_ok(), "{path}");
        }
    }
}

//! The request path, checked before routing: a path with a dot-segment (`.` or `..`, plain or
//! percent-encoded) is refused with 400. Routing on it would let `/bank-a/../admin` match the
//! `/bank-a/` route while the backend, normalising it, serves `/admin`.

use crate::error::{Error, ErrorKind};

/// Refuses a path with a `.` or `..` segment, in any encoding (`%2e`, `%2E`).
pub(crate) fn check(path: &str) -> Result<(), Error> {
    let dotted = path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    });
    if dotted {
        return Err(Error::new(
            ErrorKind::BadRequest,
            format!("the path `{path}` has a dot-segment (`.` or `..`); send it normalised"),
        ));
    }
    Ok(())
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
        ] {
            assert!(check(path).is_ok(), "{path}");
        }
    }
}

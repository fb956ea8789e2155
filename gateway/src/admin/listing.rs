//! What a listing of sagas asks for, from a query string: the admin API's `GET /admin/sagas`
//! and the console's list read the same fields, so the two filter alike.
//!
//! `status`, `route`, the time (`before_ms`, or the console's `before` as a UTC
//! `YYYY-MM-DDTHH:MM`), `limit`, and `q`, the search text (saga id, X-Request-ID or client).

use crate::error::{Error, ErrorKind};
use crate::saga::{LIST_LIMIT_MAX, Status};
use crate::store::SagaFilter;

/// Longest search text.
const QUERY_CHARS_MAX: usize = 512;
/// Longest route name a filter takes (a longer one names no route).
const ROUTE_CHARS_MAX: usize = 128;

/// A parsed listing.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// The filters, the limit included.
    pub(crate) filter: SagaFilter,
    /// The search text, when one was given.
    pub(crate) q: Option<String>,
}

impl Listing {
    /// Reads `query`; `limit` is the number when none is given. Bad input is a 400 that names
    /// the field.
    pub(crate) fn parse(query: &str, limit: usize) -> Result<Self, Error> {
        let mut listing = Listing::default();
        listing.filter.limit = limit;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            match &*key {
                _ if value.is_empty() => {}
                "status" => listing.filter.status = Some(status(value)?.as_str()),
                "route" if value.chars().count() <= ROUTE_CHARS_MAX => {
                    listing.filter.route = Some(value.to_string());
                }
                "route" => {
                    return Err(bad(format!(
                        "route is longer than {ROUTE_CHARS_MAX} characters"
                    )));
                }
                "limit" => {
                    listing.filter.limit =
                        number("limit", value)?.min(LIST_LIMIT_MAX as u64) as usize
                }
                "before_ms" => listing.filter.before_ms = Some(number("before_ms", value)?),
                "before" => listing.filter.before_ms = Some(minute(value)?),
                "q" if value.chars().count() > QUERY_CHARS_MAX => {
                    return Err(bad(format!(
                        "q is longer than {QUERY_CHARS_MAX} characters"
                    )));
                }
                "q" => listing.q = Some(value.to_string()),
                _ => {}
            }
        }
        Ok(listing)
    }
}

fn bad(detail: String) -> Error {
    Error::new(ErrorKind::BadRequest, detail)
}

fn status(value: &str) -> Result<Status, Error> {
    Status::parse(value).ok_or_else(|| {
        bad(format!(
            "unknown status `{value}`; use pending, compensating, stuck, completed or compensated"
        ))
    })
}

fn number(field: &str, value: &str) -> Result<u64, Error> {
    value
        .parse()
        .map_err(|_| bad(format!("{field} `{value}` is not a number")))
}

/// A browser's `datetime-local` value, read as UTC, in ms since the epoch.
fn minute(value: &str) -> Result<u64, Error> {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let at = time::PrimitiveDateTime::parse(value, format).map_err(|_| {
        bad(format!(
            "before `{value}` is not a time like 2026-12-03T06:30"
        ))
    })?;
    let ms = at.assume_utc().unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).map_err(|_| bad(format!("before `{value}` is before 1970")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_read_and_bad_ones_are_named() {
        let listing = Listing::parse(
            "status=stuck&route=transfers&before=2026-12-03T06:30&q=+order-7+&limit=5000",
            50,
        )
        .unwrap();
        assert_eq!(listing.filter.status, Some("stuck"));
        assert_eq!(listing.filter.route.as_deref(), Some("transfers"));
        assert_eq!(listing.filter.before_ms, Some(1_796_279_400_000));
        assert_eq!(listing.filter.limit, LIST_LIMIT_MAX);
        assert_eq!(listing.q.as_deref(), Some("order-7"));
        let empty = Listing::parse("status=&route=&q=", 50).unwrap();
        assert_eq!(
            empty.filter,
            SagaFilter {
                limit: 50,
                ..SagaFilter::default()
            }
        );
        for (query, field) in [
            ("status=lost", "status"),
            ("limit=many", "limit"),
            ("before_ms=soon", "before_ms"),
            ("before=yesterday", "before"),
        ] {
            let error = Listing::parse(query, 50).unwrap_err();
            assert!(
                error.detail().contains(field),
                "{query}: {}",
                error.detail()
            );
        }
    }
}

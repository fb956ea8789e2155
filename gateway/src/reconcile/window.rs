//! The window `txgate reconcile` checks: `--since` and `--until`, each an RFC 3339 time or a
//! duration back from now (`90s`, `15m`, `1h`, `7d`); by default the last 24 hours.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The default `--since`.
const DEFAULT_SINCE: &str = "24h";

/// A window of finish times, ms since the epoch: `[since_ms, until_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, included.
    pub since_ms: u64,
    /// End, excluded.
    pub until_ms: u64,
}

impl Window {
    /// The window the flags give, read against `now_ms`; an error names the flag.
    pub fn parse(since: Option<&str>, until: Option<&str>, now_ms: u64) -> Result<Self, String> {
        let since_ms = instant("--since", since.unwrap_or(DEFAULT_SINCE), now_ms)?;
        let until_ms = match until {
            Some(text) => instant("--until", text, now_ms)?,
            None => now_ms,
        };
        if since_ms >= until_ms {
            return Err(format!(
                "--since must be before --until (the window {since_ms}..{until_ms} ms is empty)"
            ));
        }
        Ok(Self { since_ms, until_ms })
    }
}

/// An RFC 3339 time, or `now_ms` minus a duration.
fn instant(flag: &str, text: &str, now_ms: u64) -> Result<u64, String> {
    if let Some(ago_ms) = duration_ms(text) {
        return Ok(now_ms.saturating_sub(ago_ms));
    }
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        format!("{flag}: `{text}` is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a duration (1h)")
    })?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{flag}: `{text}` is before 1970"))
}

/// `90s`, `15m`, `1h` or `7d`, in ms.
fn duration_ms(text: &str) -> Option<u64> {
    let unit_at = text.len().checked_sub(1)?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn the_default_window_is_the_last_day() {
        let window = Window::parse(None, None, NOW).unwrap();
        assert_eq!(window.until_ms, NOW);
        assert_eq!(window.since_ms, NOW - 86_400_000);
    }

    #[test]
    fn durations_count_back_from_now_and_times_are_rfc_3339() {
        let window = Window::parse(Some("90s"), Some("2030-01-15T08:00:00Z"), NOW).unwrap();
        assert_eq!(window.since_ms, NOW - 90_000);
        assert_eq!(window.until_ms, 1_894_694_400_000);
        let window = Window::parse(Some("2d"), Some("1h"), NOW).unwrap();
        assert_eq!(window.since_ms, NOW - 2 * 86_400_000);
        assert_eq!(window.until_ms, NOW - 3_600_000);
    }

    #[test]
    fn bad_flags_are_named() {
        let error = Window::parse(Some("yesterday"), None, NOW).unwrap_err();
        assert!(error.starts_with("--since:"), "{error}");
        let error = Window::parse(None, Some("5x"), NOW).unwrap_err();
        assert!(error.starts_with("--until:"), "{error}");
        let error = Window::parse(Some("1h"), Some("2h"), NOW).unwrap_err();
        assert!(error.contains("before --until"), "{error}");
    }
}

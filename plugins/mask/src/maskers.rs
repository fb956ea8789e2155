//! What a rule does to the value it selects, and the scan for card numbers.
//!
//! Maskers work on characters (Unicode scalar values), and "digit" means an ASCII digit
//! `0`-`9` only, so the Rust and the Python builds of the plugin give the same answer for any
//! text. `redact` replaces any value, objects and arrays included; the other maskers change
//! strings, and numbers by their literal (which then become strings), and leave `true`,
//! `false`, `null`, objects and arrays as they are.

use std::ops::RangeInclusive;

/// What `redact` leaves.
pub(crate) const REDACTED: &str = "[redacted]";
/// `keep` when a `keep_last` rule does not say.
pub(crate) const KEEP_DEFAULT: usize = 4;
/// The digits of a payment card number (ISO/IEC 7812).
const CARD_DIGITS: RangeInclusive<usize> = 13..=19;
/// The digits a card number keeps.
const CARD_KEEP: usize = 4;
/// What stands for a hidden character.
const HIDDEN: char = '*';

/// A masker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mask {
    /// Every character but the last `n` becomes `*`.
    KeepLast(usize),
    /// `alice@example.com` becomes `a***@example.com`.
    Email,
    /// Every digit but the last 2 becomes `*`; other characters (a leading `+`) stay.
    Phone,
    /// The value becomes `"[redacted]"`.
    Redact,
}

/// A value as the maskers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// A string, decoded.
    Text(String),
    /// A number, as its literal in the body.
    Number(String),
    /// `true`, `false`, `null`, an object or an array.
    Other,
}

impl Mask {
    /// The masked value.
    pub(crate) fn apply(self, value: Value) -> Value {
        let text = match (self, value) {
            (Self::Redact, _) => return Value::Text(REDACTED.into()),
            (_, Value::Text(text) | Value::Number(text)) => text,
            (_, other) => return other,
        };
        Value::Text(match self {
            Self::KeepLast(keep) => keep_last(&text, keep),
            Self::Email => email(&text),
            Self::Phone => phone(&text),
            Self::Redact => REDACTED.into(),
        })
    }
}

/// Every character but the last `keep` becomes `*`.
fn keep_last(text: &str, keep: usize) -> String {
    let count = text.chars().count();
    let hidden = count.saturating_sub(keep);
    text.chars()
        .enumerate()
        .map(|(i, c)| if i < hidden { HIDDEN } else { c })
        .collect()
}

/// The local part's first character, `***`, and `@domain` as it was. Without `@` the whole
/// text is a local part. Splits at the last `@` (a quoted local part may hold one). An empty
/// text stays empty: there is nothing to hide.
fn email(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let (local, domain) = match text.rfind('@') {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let first: String = local.chars().take(1).collect();
    format!("{first}***{domain}")
}

/// Every ASCII digit but the last 2 becomes `*`; anything else (`+`, spaces, dashes,
/// brackets) stays.
fn phone(text: &str) -> String {
    let digits = text.chars().filter(char::is_ascii_digit).count();
    let hidden = digits.saturating_sub(2);
    let mut seen = 0;
    text.chars()
        .map(|c| {
            if !c.is_ascii_digit() {
                return c;
            }
            seen += 1;
            if seen <= hidden { HIDDEN } else { c }
        })
        .collect()
}

/// `text` with every run of 13 to 19 ASCII digits that passes the Luhn check masked but its
/// last 4; `None` when there is none. A run is maximal: 20 digits in a row are no card number,
/// and neither is a card number written with spaces or dashes between its groups.
pub(crate) fn luhn_scan(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Option<Vec<char>> = None;
    let mut at = 0;
    while at < chars.len() {
        let run = chars[at..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if run == 0 {
            at += 1;
            continue;
        }
        let digits = &chars[at..at + run];
        if CARD_DIGITS.contains(&run) && luhn_valid(digits) {
            let masked = out.get_or_insert_with(|| chars.clone());
            masked[at..at + run - CARD_KEEP].fill(HIDDEN);
        }
        at += run;
    }
    out.map(|chars| chars.into_iter().collect())
}

/// The Luhn (mod 10) check over ASCII digits.
fn luhn_valid(digits: &[char]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).unwrap_or(0);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(mask: Mask, value: &str) -> String {
        match mask.apply(Value::Text(value.into())) {
            Value::Text(text) => text,
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn keep_last_hides_all_but_the_last_characters() {
        assert_eq!(
            text(Mask::KeepLast(4), "4111111111111111"),
            "************1111"
        );
        assert_eq!(text(Mask::KeepLast(2), "Zürich"), "****ch");
        assert_eq!(text(Mask::KeepLast(4), "abc"), "abc");
        assert_eq!(text(Mask::KeepLast(0), "abc"), "***");
        assert_eq!(text(Mask::KeepLast(4), ""), "");
    }

    #[test]
    fn a_number_becomes_a_string() {
        assert_eq!(
            Mask::KeepLast(4).apply(Value::Number("123456789".into())),
            Value::Text("*****6789".into())
        );
        assert_eq!(
            Mask::KeepLast(4).apply(Value::Number("12".into())),
            Value::Text("12".into())
        );
        assert_eq!(
            Mask::Phone.apply(Value::Number("4915112345678".into())),
            Value::Text("***********78".into())
        );
    }

    #[test]
    fn email_keeps_the_first_character_and_the_domain() {
        assert_eq!(text(Mask::Email, "alice@example.com"), "a***@example.com");
        assert_eq!(text(Mask::Email, "a@b.c"), "a***@b.c");
        assert_eq!(
            text(Mask::Email, "\"x@y\"@example.com"),
            "\"***@example.com"
        );
        assert_eq!(text(Mask::Email, "@example.com"), "***@example.com");
        assert_eq!(text(Mask::Email, "no-at-sign"), "n***");
        assert_eq!(text(Mask::Email, "élodie@exemple.fr"), "é***@exemple.fr");
        assert_eq!(text(Mask::Email, ""), "");
    }

    #[test]
    fn phone_keeps_the_plus_the_layout_and_the_last_two_digits() {
        assert_eq!(text(Mask::Phone, "+4915112345678"), "+***********78");
        assert_eq!(
            text(Mask::Phone, "+49 (151) 1234-5678"),
            "+** (***) ****-**78"
        );
        assert_eq!(text(Mask::Phone, "12"), "12");
        assert_eq!(text(Mask::Phone, "call me"), "call me");
    }

    #[test]
    fn redact_replaces_anything_and_the_others_leave_what_is_not_text() {
        for value in [
            Value::Other,
            Value::Number("1".into()),
            Value::Text("x".into()),
        ] {
            assert_eq!(Mask::Redact.apply(value), Value::Text(REDACTED.into()));
        }
        for mask in [Mask::KeepLast(4), Mask::Email, Mask::Phone] {
            assert_eq!(mask.apply(Value::Other), Value::Other);
        }
    }

    #[test]
    fn luhn_scan_masks_valid_card_numbers_only() {
        assert_eq!(
            luhn_scan("card 4111111111111111, thanks").as_deref(),
            Some("card ************1111, thanks")
        );
        // One digit off: the check fails.
        assert_eq!(luhn_scan("card 4111111111111112"), None);
        // 13 and 19 digits; Amex's 15.
        assert_eq!(luhn_scan("4222222222222").as_deref(), Some("*********2222"));
        assert_eq!(
            luhn_scan("4000000000000000006").as_deref(),
            Some("***************0006")
        );
        assert_eq!(
            luhn_scan("x378282246310005y").as_deref(),
            Some("x***********0005y")
        );
        // 12 and 20 digits are no card numbers, even when the check passes.
        assert_eq!(luhn_scan("000000000000"), None);
        assert_eq!(luhn_scan("00000000000000000000"), None);
        assert_eq!(luhn_scan("4111 1111 1111 1111"), None);
        assert_eq!(
            luhn_scan("a 4111111111111111 b 5500000000000004").as_deref(),
            Some("a ************1111 b ************0004")
        );
    }
}

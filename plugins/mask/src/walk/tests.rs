//! The walker on its own: which bytes change, rule order, escaping, and what is JSON.

use super::*;

fn rules(list: &[(&str, Mask)]) -> Vec<Rule> {
    list.iter()
        .map(|(path, mask)| Rule {
            path: Path::parse(path).unwrap(),
            mask: *mask,
        })
        .collect()
}

fn masked(body: &str, list: &[(&str, Mask)], luhn: bool) -> Result<Option<String>, Refusal> {
    mask(body.as_bytes(), &rules(list), luhn)
}

#[test]
fn only_masked_values_change_and_every_other_byte_stays() {
    let body = "{ \"z\": 1.50, \"id\" : 123456789012345678901234567890,\n  \"card\":\"4111111111111111\", \"a\":[1e400, \"\\u00e9\"] }";
    let out = masked(body, &[("$.card", Mask::KeepLast(4))], false).unwrap();
    assert_eq!(
        out.as_deref(),
        Some(
            "{ \"z\": 1.50, \"id\" : 123456789012345678901234567890,\n  \"card\":\"************1111\", \"a\":[1e400, \"\\u00e9\"] }"
        )
    );
}

#[test]
fn nothing_selected_is_no_change() {
    assert_eq!(
        masked("{\"a\":1}", &[("$.b", Mask::Redact)], true),
        Ok(None)
    );
    // A value the maskers leave as it was is not rewritten (its escapes stay).
    assert_eq!(
        masked(
            "[\"\\u0061bc\", true]",
            &[("$[*]", Mask::KeepLast(4))],
            false
        ),
        Ok(None)
    );
}

#[test]
fn rules_apply_in_order_and_redact_replaces_containers() {
    let body = r#"{"p":{"card":"4111111111111111","n":[1,2]},"q":null}"#;
    assert_eq!(
        masked(
            body,
            &[("$.p", Mask::Redact), ("$..card", Mask::KeepLast(4))],
            false
        ),
        Ok(Some(r#"{"p":"[redacted]","q":null}"#.into()))
    );
    assert_eq!(
        masked(
            body,
            &[("$..card", Mask::KeepLast(4)), ("$.p.n", Mask::Redact)],
            false
        ),
        Ok(Some(
            r#"{"p":{"card":"************1111","n":"[redacted]"},"q":null}"#.into()
        ))
    );
    assert_eq!(
        masked(
            body,
            &[("$.q", Mask::Redact), ("$.q", Mask::KeepLast(4))],
            false
        ),
        Ok(Some(
            r#"{"p":{"card":"4111111111111111","n":[1,2]},"q":"******ted]"}"#.into()
        ))
    );
    assert_eq!(
        masked(body, &[("$", Mask::Redact)], false),
        Ok(Some(r#""[redacted]""#.into()))
    );
}

#[test]
fn luhn_scan_reaches_every_string_but_not_member_names_or_numbers() {
    let body = r#"{"4111111111111111":"card 4111111111111111","n":4111111111111111}"#;
    assert_eq!(
        masked(body, &[], true),
        Ok(Some(
            r#"{"4111111111111111":"card ************1111","n":4111111111111111}"#.into()
        ))
    );
    assert_eq!(masked(body, &[], false), Ok(None));
}

#[test]
fn replacements_are_escaped_as_json() {
    assert_eq!(
        masked(
            "[\"ab\\\"c\\n\\u0001d\"]",
            &[("$[0]", Mask::KeepLast(5))],
            false
        ),
        Ok(Some("[\"**\\\"c\\n\\u0001d\"]".into()))
    );
}

#[test]
fn what_is_not_json_is_refused() {
    for body in [
        "",
        " ",
        "{",
        "{\"a\"}",
        "{\"a\":1,}",
        "[1,]",
        "[01]",
        "[1.]",
        "[.5]",
        "[-]",
        "[1e]",
        "[+1]",
        "NaN",
        "[Infinity]",
        "tru",
        "nul",
        "{'a':1}",
        "\"a\" \"b\"",
        "[\"\\x\"]",
        "[\"\\ud800\"]",
        "[\"tab\there\"]",
        "\u{feff}{}",
        "{} x",
        "[1 2]",
        "{\"a\" 1}",
    ] {
        assert_eq!(masked(body, &[], true), Err(Refusal::NotJson), "{body:?}");
    }
    assert_eq!(mask(b"[\"\xff\"]", &[], true), Err(Refusal::NotJson));
    for body in [
        "0",
        "-0.5e+10",
        "1E-2",
        "\"\"",
        "[]",
        "{}",
        " [ true , false , null ] ",
        "[\"\\ud83d\\ude00\"]",
        "{\"a\":{\"a\":{}}}",
    ] {
        assert_eq!(masked(body, &[], true), Ok(None), "{body:?}");
    }
}

#[test]
fn nesting_is_bounded() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert_eq!(masked(&deep(DEPTH_MAX), &[], true), Ok(None));
    assert_eq!(
        masked(&deep(DEPTH_MAX + 1), &[], true),
        Err(Refusal::TooDeep)
    );
}

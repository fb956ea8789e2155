//! Property tests that double as fuzzers, for the code that reads untrusted bytes: the config
//! parser, `X-Request-ID` handling, header hygiene, the request path check, and the decoder of
//! stored saga records. None may panic on any input, and each keeps its invariants.
//!
//! CI runs 256 cases per target. A long run gives each target as many seconds as asked:
//!
//! ```text
//! TXGATE_FUZZ_SECS=600 cargo test -p txgate --release fuzz_ -- --nocapture --test-threads 1
//! ```
//!
//! `cargo fuzz` needs a nightly compiler, which this project does not use; proptest runs on
//! stable and shrinks any failure to a minimal input, which is then kept as a regression test.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

use crate::config::load::check_text;
use crate::request_id;
use crate::request_path::check as check_path;
use crate::saga::SagaRecord;
use crate::upstream::{add_forwarded, strip_hop_by_hop};

/// Runs `test` on values of `strategy`: 256 cases, or for `TXGATE_FUZZ_SECS` seconds.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let seconds: u64 = std::env::var("TXGATE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let started = Instant::now();
    let mut cases = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        match runner.run(&strategy, &test) {
            Ok(()) => cases += 256,
            Err(TestError::Fail(reason, value)) => panic!("{name}: {reason} for {value:?}"),
            Err(TestError::Abort(reason)) => panic!("{name}: aborted: {reason}"),
        }
        if started.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
    }
    if seconds > 0 {
        eprintln!(
            "{name}: {cases} cases in {:?}, no failure",
            started.elapsed()
        );
    }
}

const EXAMPLE: &str = include_str!("../../examples/transfer.toml");

/// Random edits of the example config: the parser sees near-valid TOML, where bugs hide.
fn mutated_config() -> impl Strategy<Value = String> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..12);
    edits.prop_map(|edits| {
        let mut bytes = EXAMPLE.as_bytes().to_vec();
        for (at, byte, kind) in edits {
            let at = at.index(bytes.len().max(1));
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at.min(bytes.len()), byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[test]
fn fuzz_config_parser_never_panics() {
    fuzz("config/arbitrary", ".{0,2000}", |text| {
        let _ = check_text(&text);
        Ok(())
    });
    fuzz("config/mutated", mutated_config(), |text| {
        if let Err(issues) = check_text(&text) {
            prop_assert!(!issues.is_empty());
            for issue in issues {
                prop_assert!(!issue.reason.is_empty(), "every issue says why");
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_request_ids_follow_the_contract() {
    fuzz(
        "request-id",
        prop::collection::vec(any::<u8>(), 0..300),
        |bytes| {
            let expected =
                (1..=255).contains(&bytes.len()) && bytes.iter().all(|b| (0x21..=0x7e).contains(b));
            prop_assert_eq!(request_id::is_valid(&bytes), expected);
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                headers.insert(request_id::HEADER, value);
                let extracted = request_id::extract(&headers, true);
                prop_assert_eq!(extracted.is_ok(), expected);
            }
            Ok(())
        },
    );
}

fn header_list() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![
        Just("connection".to_string()),
        Just("keep-alive".to_string()),
        Just("te".to_string()),
        Just("upgrade".to_string()),
        Just("x-forwarded-for".to_string()),
        "[a-z-]{1,20}",
    ];
    prop::collection::vec((name, prop::collection::vec(any::<u8>(), 0..64)), 0..24)
}

#[test]
fn fuzz_header_hygiene_holds_for_any_headers() {
    fuzz("headers", header_list(), |list| {
        let mut headers = HeaderMap::new();
        for (name, value) in &list {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                headers.append(name, value);
            }
        }
        let named: Vec<String> = headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| {
                v.split(',')
                    .map(|n| n.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .collect();
        strip_hop_by_hop(&mut headers);
        for gone in [
            "connection",
            "keep-alive",
            "te",
            "upgrade",
            "transfer-encoding",
        ] {
            prop_assert!(!headers.contains_key(gone));
        }
        for name in named {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                prop_assert!(!headers.contains_key(name));
            }
        }
        add_forwarded(
            &mut headers,
            &http::HeaderValue::from_static("192.0.2.1"),
            false,
        );
        let chain = headers["x-forwarded-for"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        prop_assert!(chain.ends_with("192.0.2.1"));
        Ok(())
    });
}

/// RFC 3986 §5.2.4, on a path whose `%2e`s are already decoded: the oracle for dot-segments.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." if last => out.push(""),
            "." => {}
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    out.join("/")
}

#[test]
fn fuzz_request_paths_with_dot_segments_are_refused() {
    fuzz("path/dot-segments", "(/[a.%2eE]{0,4}){1,6}", |path| {
        let decoded = path.replace("%2e", ".").replace("%2E", ".");
        let normal = remove_dot_segments(&decoded) == decoded;
        prop_assert_eq!(check_path(&path).is_ok(), normal, "{}", path);
        Ok(())
    });
}

#[test]
fn fuzz_stored_saga_records_never_panic_the_decoder() {
    fuzz(
        "saga-record/arbitrary-bytes",
        prop::collection::vec(any::<u8>(), 0..512),
        |bytes| {
            let _ = SagaRecord::decode(&bytes);
            Ok(())
        },
    );
}

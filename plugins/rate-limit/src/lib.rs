//! # txgate-plugin-rate-limit
//!
//! GCRA rate limiting (see `gcra.rs`) on a key taken from a header, the client's IP, or the
//! route. Over the limit, the request is answered 429 at once — nothing reaches an upstream — with
//! `Retry-After`, and the IETF httpapi draft's `RateLimit-Policy` and `RateLimit` headers.
//!
//! ```toml
//! [plugins.rate_limit]
//! module = "rate_limit.wasm"
//! state = "volatile"            # limits need no disk; "durable" keeps them across restarts
//! [plugins.rate_limit.config]
//! key = "header:x-client-id"    # or "ip" (the default) or "route"
//! per_second = 50               # steady rate, a positive number
//! burst = 100                   # requests allowed at once, a whole number >= 1
//! ```
//!
//! A request without the key header is limited under the key `anonymous`.

mod gcra;

use gcra::{Gcra, Verdict};
use serde::Deserialize;
use txgate_plugin_sdk::{HookError, Plugin, Request, RequestDecision, Response, clock, config, kv};

/// Compare-and-swap attempts under contention before the request is limited.
const UPDATE_TRIES_MAX: usize = 8;

/// `[plugins.NAME.config]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_key")]
    key: String,
    per_second: f64,
    burst: u64,
}

fn default_key() -> String {
    "ip".into()
}

/// The bucket a request counts against.
fn bucket(settings: &Settings, request: &Request<'_>) -> Result<String, HookError> {
    let route = request.route();
    let key = match settings.key.as_str() {
        "ip" => format!("ip:{}", request.client_ip()),
        "route" => format!("route:{route}"),
        spec => {
            let name = spec.strip_prefix("header:").ok_or_else(|| {
                HookError::failed(format!(
                    "key must be \"ip\", \"route\" or \"header:NAME\", not `{spec}`"
                ))
            })?;
            match request.header(name) {
                Some(value) => format!("h:{value}"),
                None => "anonymous".into(),
            }
        }
    };
    // A key is at most 512 bytes in the host store; a longer header value is cut, not refused.
    Ok(format!(
        "{route}/{}",
        key.chars().take(400).collect::<String>()
    ))
}

fn limited(gcra: &Gcra, retry_after_us: u64, request: &Request<'_>) -> RequestDecision {
    let retry_after = retry_after_us.div_ceil(1_000_000).max(1);
    let detail = format!("over the rate limit; retry in {retry_after} s");
    let response = Response::problem(
        429,
        "rate-limited",
        "Too many requests",
        &detail,
        &request.request_id(),
    )
    .with_header("retry-after", &retry_after.to_string())
    .with_header(
        "ratelimit-policy",
        &format!("\"gcra\";q={};w={}", gcra.burst(), gcra.window_secs()),
    )
    .with_header("ratelimit", &format!("\"gcra\";r=0;t={retry_after}"));
    RequestDecision::Respond(response)
}

/// The plugin.
pub struct RateLimit;

#[txgate_plugin_sdk::plugin]
impl Plugin for RateLimit {
    fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let settings = config::shared::<Settings>()?;
        let gcra = Gcra::new(settings.per_second, settings.burst).map_err(HookError::failed)?;
        let key = bucket(&settings, request)?;
        for _ in 0..UPDATE_TRIES_MAX {
            let now_us = clock::now_unix_ms().saturating_mul(1000);
            let stored = kv::get(&key)?;
            let tat = stored
                .as_deref()
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|t| t.parse().ok());
            match gcra.check(tat, now_us) {
                Verdict::Limit { retry_after_us } => {
                    return Ok(limited(&gcra, retry_after_us, request));
                }
                Verdict::Allow { tat_us, .. } => {
                    let next = tat_us.to_string();
                    let ttl = Some(gcra.ttl_ms(tat_us, now_us));
                    if kv::compare_and_swap(&key, stored.as_deref(), Some(next.as_bytes()), ttl)? {
                        return Ok(RequestDecision::pass());
                    }
                }
            }
        }
        Ok(limited(&gcra, gcra_interval_us(&settings), request))
    }
}

fn gcra_interval_us(settings: &Settings) -> u64 {
    (1e6 / settings.per_second).ceil() as u64
}

txgate_plugin_sdk::export!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::json;
    use txgate_plugin_sdk::testing::Harness;

    fn request(client: Option<&str>) -> Request<'static> {
        let request = Request::new("GET", "/api/accounts").with_route("api");
        match client {
            Some(client) => request.with_header("x-client-id", client),
            None => request,
        }
    }

    fn limited_response(decision: RequestDecision) -> Option<Response> {
        match decision {
            RequestDecision::Respond(response) => Some(response),
            RequestDecision::Continue(_) => None,
        }
    }

    #[test]
    fn over_the_limit_answers_429_with_the_draft_headers() {
        let host = Harness::new()
            .with_config(json!({"key": "header:x-client-id", "per_second": 2, "burst": 2}));
        for _ in 0..2 {
            assert!(
                limited_response(host.on_request::<RateLimit>(request(Some("a"))).unwrap())
                    .is_none()
            );
        }
        let response =
            limited_response(host.on_request::<RateLimit>(request(Some("a"))).unwrap()).unwrap();
        assert_eq!(response.status, 429);
        assert_eq!(response.header("retry-after"), Some("1"));
        assert_eq!(
            response.header("ratelimit-policy"),
            Some("\"gcra\";q=2;w=1")
        );
        assert_eq!(response.header("ratelimit"), Some("\"gcra\";r=0;t=1"));
        host.advance_ms(500);
        assert!(
            limited_response(host.on_request::<RateLimit>(request(Some("a"))).unwrap()).is_none()
        );
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        let host =
            Harness::new().with_config(json!({"key": "route", "per_second": 0.2, "burst": 1}));
        host.on_request::<RateLimit>(request(None)).unwrap();
        host.advance_ms(1_500);
        let response =
            limited_response(host.on_request::<RateLimit>(request(None)).unwrap()).unwrap();
        assert_eq!(response.header("retry-after"), Some("4"), "3.5 s left");
    }

    #[test]
    fn clients_are_limited_independently_and_anonymous_shares_one_bucket() {
        let host = Harness::new()
            .with_config(json!({"key": "header:x-client-id", "per_second": 1, "burst": 1}));
        assert!(
            limited_response(host.on_request::<RateLimit>(request(Some("a"))).unwrap()).is_none()
        );
        assert!(
            limited_response(host.on_request::<RateLimit>(request(Some("b"))).unwrap()).is_none()
        );
        assert!(
            limited_response(host.on_request::<RateLimit>(request(Some("a"))).unwrap()).is_some()
        );
        assert!(limited_response(host.on_request::<RateLimit>(request(None)).unwrap()).is_none());
        assert!(limited_response(host.on_request::<RateLimit>(request(None)).unwrap()).is_some());
        assert!(host.kv("api/anonymous").is_some());
    }

    #[test]
    fn the_ip_is_the_default_key() {
        let host = Harness::new().with_config(json!({"per_second": 1, "burst": 1}));
        host.on_request::<RateLimit>(request(None)).unwrap();
        let elsewhere = request(None).with_client_ip("10.0.0.9");
        assert!(limited_response(host.on_request::<RateLimit>(elsewhere).unwrap()).is_none());
    }

    #[test]
    fn a_config_mistake_fails_the_hook_instead_of_letting_everything_through() {
        let host = Harness::new().with_config(json!({"per_second": 0, "burst": 1}));
        assert!(host.on_request::<RateLimit>(request(None)).is_err());
        let host =
            Harness::new().with_config(json!({"per_second": 1, "burst": 1, "key": "cookie:x"}));
        assert!(host.on_request::<RateLimit>(request(None)).is_err());
    }
}

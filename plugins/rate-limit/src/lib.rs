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
//!
//! A full key-value quota (`kv_keys_max`, `kv_bytes_max`) keeps limiting: a client whose bucket
//! cannot be stored is over its limit, so a flood of invented client ids cannot turn the limiter
//! into an outage for everyone else, nor into a bypass. The answer never shows the quota, key
//! names or store errors; those go to the gateway's log.

mod gcra;

use gcra::{Gcra, Verdict};
use serde::Deserialize;
use txgate_plugin_sdk::{
    HookError, KvError, Plugin, Request, RequestDecision, Response, clock, config, kv, log,
};

/// Compare-and-swap attempts under contention before the request is limited. A try is lost only
/// to another request on the same key that was let through meanwhile, so this is about how many
/// requests on one key may be in flight at once: 64 is the gateway's bound on concurrent calls of
/// one plugin. With 8, a burst of 30 requests on one key (well under its limit) got 429s when
/// a fleet's database made each try slower.
const UPDATE_TRIES_MAX: usize = 64;

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

/// Longest part of a bucket's key taken from the request (after the route's name): the host
/// store takes keys of at most 512 bytes. A longer header value is cut, not refused.
const KEY_PART_BYTES_MAX: usize = 400;

/// The bucket a request counts against: `ROUTE/ip:ADDRESS`, `ROUTE/route:ROUTE`,
/// `ROUTE/h:VALUE` or `ROUTE/anonymous`. Built in one buffer: this runs on every request.
fn bucket(settings: &Settings, request: &Request<'_>) -> Result<String, HookError> {
    let route = request.route();
    let (prefix, value) = match settings.key.as_str() {
        "ip" => ("ip:", Some(request.client_ip())),
        "route" => ("route:", None),
        spec => {
            let name = spec.strip_prefix("header:").ok_or_else(|| {
                HookError::failed(format!(
                    "key must be \"ip\", \"route\" or \"header:NAME\", not `{spec}`"
                ))
            })?;
            match request.header(name) {
                Some(value) => ("h:", Some(value)),
                None => ("anonymous", Some(String::new())),
            }
        }
    };
    // `None`: the route's name again.
    let value = value.as_deref().unwrap_or(&route);
    let mut key = String::with_capacity(route.len() + 1 + prefix.len() + value.len());
    key.push_str(&route);
    key.push('/');
    key.push_str(prefix);
    let room = KEY_PART_BYTES_MAX.saturating_sub(prefix.len());
    // Cut on a character boundary, so that the key stays text.
    key.push_str(&value[..value.floor_char_boundary(room)]);
    Ok(key)
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

/// What a request gets when its bucket could not be written. A full quota is over the limit:
/// letting the request through would make a flood of new keys a way around the limiter, and
/// failing the hook (503) would make it an outage for every new client. Keys expire once their
/// window has passed, so the client is told to retry after one window. Any other store error
/// fails the hook: the gateway answers with its `on_error` policy and logs the cause.
fn unstored(
    gcra: &Gcra,
    key: &str,
    error: KvError,
    request: &Request<'_>,
) -> Result<RequestDecision, HookError> {
    match error {
        KvError::LimitReached(detail) => {
            log::warn(&format!(
                "the key-value quota is full ({detail}): `{key}` is limited until keys expire"
            ));
            Ok(limited(gcra, gcra.window_secs() * 1_000_000, request))
        }
        other => Err(other.into()),
    }
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
                    match kv::compare_and_swap(&key, stored.as_deref(), Some(next.as_bytes()), ttl)
                    {
                        Ok(true) => return Ok(RequestDecision::pass()),
                        // Another request moved the TAT first: decide again on the new one.
                        Ok(false) => {}
                        Err(error) => return unstored(&gcra, &key, error, request),
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
    fn a_long_header_value_is_cut_to_a_key_the_store_takes() {
        let host = Harness::new()
            .with_config(json!({"key": "header:x-client-id", "per_second": 1, "burst": 1}));
        // 300 three-byte characters: 900 bytes, over the store's 512-byte keys if not cut.
        let long = "€".repeat(300);
        assert!(
            limited_response(host.on_request::<RateLimit>(request(Some(&long))).unwrap()).is_none()
        );
        assert!(
            limited_response(host.on_request::<RateLimit>(request(Some(&long))).unwrap()).is_some(),
            "the same client, limited by the same bucket"
        );
        let key = format!("api/h:{}", "€".repeat(132));
        assert_eq!(
            key.len(),
            402,
            "the cut keeps whole characters: 396 of 398 bytes"
        );
        assert!(host.kv(&key).is_some());
    }

    #[test]
    fn the_ip_is_the_default_key() {
        let host = Harness::new().with_config(json!({"per_second": 1, "burst": 1}));
        host.on_request::<RateLimit>(request(None)).unwrap();
        let elsewhere = request(None).with_client_ip("10.0.0.9");
        assert!(limited_response(host.on_request::<RateLimit>(elsewhere).unwrap()).is_none());
    }

    /// Runs [`unstored`] on a real hook call, as the rate limiter does when a write fails.
    struct FailedWrite;

    #[txgate_plugin_sdk::plugin]
    impl Plugin for FailedWrite {
        fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
            let gcra = Gcra::new(2.0, 4).unwrap();
            let error = match request.header("x-error").as_deref() {
                Some("full") => KvError::LimitReached("namespace holds 5 keys of 5".into()),
                _ => KvError::Unavailable("the disk is full".into()),
            };
            unstored(&gcra, "api/h:new-client", error, request)
        }
    }

    #[test]
    fn a_full_quota_limits_the_client_without_telling_it_why() {
        let host = Harness::new();
        let decision = host
            .on_request::<FailedWrite>(request(None).with_header("x-error", "full"))
            .unwrap();
        let response = limited_response(decision).expect("limited, not passed");
        assert_eq!(response.status, 429);
        assert_eq!(
            response.header("retry-after"),
            Some("2"),
            "one window: 4 at 2/s"
        );
        assert_eq!(
            response.header("ratelimit-policy"),
            Some("\"gcra\";q=4;w=2")
        );
        assert_eq!(response.header("ratelimit"), Some("\"gcra\";r=0;t=2"));
        let body = String::from_utf8(response.body.clone()).unwrap();
        for secret in ["keys", "new-client", "quota"] {
            assert!(!body.contains(secret), "{secret} leaked: {body}");
        }
        let logged = host.logs();
        assert!(
            logged
                .iter()
                .any(|(_, line)| line.contains("5 keys of 5") && line.contains("new-client")),
            "{logged:?}"
        );
    }

    #[test]
    fn another_store_error_fails_the_hook() {
        let host = Harness::new();
        assert!(host.on_request::<FailedWrite>(request(None)).is_err());
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

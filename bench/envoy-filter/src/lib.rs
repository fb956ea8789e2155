//! # txgate-bench-envoy-filter
//!
//! The Envoy side of `bench/plugins.sh`: a proxy-wasm HTTP filter that does the work txgate's
//! `rate_limit` and `add_header` plugins do on the txgate side, so the two plugin runtimes are
//! compared on the same job.
//!
//! - A GCRA limit on one bucket per route: the theoretical arrival time lives in Envoy's shared
//!   data (shared by every worker's VM, like txgate's volatile key-value store) and is updated by
//!   compare-and-swap. Over the limit, the request is answered 429 with `Retry-After`.
//! - A header added to the request on its way upstream and to the response on its way back.
//!
//! Config (the filter's `configuration` value, JSON):
//! `{"per_second": 100000, "burst": 100000, "header": "x-served-by", "value": "envoy"}`.
//!
//! Built for `wasm32-wasip1` (Envoy's ABI is proxy-wasm 0.2.1, not the component model).

// proxy-wasm's `main!` exports the module's entry points with `#[no_mangle]`, which the
// `unsafe_code` lint counts as unsafe; nothing else here is.
#![allow(unsafe_code)]

use std::time::UNIX_EPOCH;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};
use serde::Deserialize;

/// Compare-and-swap attempts under contention before the request is limited.
const UPDATE_TRIES_MAX: usize = 8;
/// The shared-data key of the route's bucket.
const BUCKET_KEY: &str = "rate-limit/route";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// The filter's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    per_second: f64,
    burst: u64,
    header: String,
    value: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            per_second: 100.0,
            burst: 100,
            header: "x-served-by".into(),
            value: "envoy".into(),
        }
    }
}

#[derive(Default)]
struct Root {
    settings: Settings,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            return true;
        };
        match serde_json::from_slice::<Settings>(&bytes) {
            Ok(settings) if settings.per_second > 0.0 && settings.burst > 0 => {
                self.settings = settings;
                true
            }
            _ => false,
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            settings: self.settings.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    settings: Settings,
}

impl Context for Filter {}

impl Filter {
    /// One GCRA decision against the shared bucket: `None` to pass, `Some(retry_after_s)` to
    /// limit.
    fn limit(&self) -> Option<u64> {
        let interval_us = 1e6 / self.settings.per_second;
        let tau_us = interval_us * (self.settings.burst - 1) as f64;
        for _ in 0..UPDATE_TRIES_MAX {
            let now_us = self
                .get_current_time()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            let (stored, cas) = self.get_shared_data(BUCKET_KEY);
            let tat = stored
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(now_us)
                .max(now_us) as f64;
            let now = now_us as f64;
            if tat - now > tau_us {
                return Some(((tat - tau_us - now) / 1e6).ceil().max(1.0) as u64);
            }
            let next = ((tat + interval_us) as u64).to_string();
            match self.set_shared_data(BUCKET_KEY, Some(next.as_bytes()), cas) {
                Ok(()) => return None,
                Err(Status::CasMismatch) => continue,
                Err(_) => return Some(1),
            }
        }
        Some(1)
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Some(retry_after) = self.limit() {
            let retry_after = retry_after.to_string();
            self.send_http_response(
                429,
                vec![
                    ("retry-after", retry_after.as_str()),
                    ("content-type", "application/problem+json"),
                ],
                Some(br#"{"type":"urn:txgate:problem:rate-limited","status":429}"#),
            );
            return Action::Pause;
        }
        self.add_http_request_header(&self.settings.header, &self.settings.value);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header(&self.settings.header, &self.settings.value);
        Action::Continue
    }
}

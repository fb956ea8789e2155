//! # txgate-plugin-idempotency
//!
//! Idempotency keys at the edge (SPEC §3). The key is the route plus the client's X-Request-ID
//! (partitioned by client when `client_key` is set); the fingerprint is the method, path and body.
//!
//! - First request: claimed "in flight" by compare-and-swap, so of concurrent duplicates exactly
//!   one proceeds. The claim is volatile (it must not outlive the process, and need not wait for
//!   the disk); the final response is stored durably (before the client sees it) and kept
//!   `ttl_secs`.
//! - Retry after completion, same fingerprint: the stored response, byte for byte, with
//!   `Idempotent-Replayed: true`.
//! - Retry while in flight: 409 with `Retry-After`. Same key, other fingerprint: 422. No
//!   X-Request-ID from the client: 400.
//! - A claim records the gateway's boot id. A claim from an earlier boot was left by a crash: the
//!   request is no longer in flight, and its retry takes the key over and runs. On a saga route
//!   the gateway then answers with the saga's outcome (it never runs a saga twice per
//!   X-Request-ID); elsewhere the request runs again with the same X-Request-ID, so the upstream
//!   can dedup.
//! - 202 (a saga still running) and 503 are not final: the claim is released, so the retry the
//!   client is told to make is not refused.

mod record;
mod settings;

use record::{Entry, decode, encode, replay};
use settings::{Settings, fingerprint};
use txgate_plugin_sdk::{
    HookError, Plugin, Request, RequestDecision, Response, config, kv, process,
};

/// Claim attempts under contention before answering 409.
const CLAIM_TRIES_MAX: usize = 8;

/// The plugin.
pub struct Idempotency;

fn problem(
    status: u16,
    slug: &str,
    title: &str,
    detail: &str,
    request: &Request,
) -> RequestDecision {
    RequestDecision::Respond(Response::problem(
        status,
        slug,
        title,
        detail,
        &request.request_id,
    ))
}

fn in_flight(request: &Request) -> RequestDecision {
    let detail = "a request with this X-Request-ID is still running; retry shortly";
    match problem(
        409,
        "request-in-flight",
        "Request in flight",
        detail,
        request,
    ) {
        RequestDecision::Respond(response) => {
            RequestDecision::Respond(response.with_header("retry-after", "1"))
        }
        other => other,
    }
}

/// Claims the key if it still holds `expected`. The claim is volatile: it must not outlive the
/// process, and so need not wait for the disk.
fn take(
    key: &str,
    expected: Option<&[u8]>,
    claim: &[u8],
    settings: &Settings,
) -> Result<bool, HookError> {
    Ok(kv::compare_and_swap_volatile(
        key,
        expected,
        Some(claim),
        Some(settings.ttl_ms()),
    )?)
}

/// This process's claim on a key, for a request with fingerprint `fp`.
fn claim(fp: &str) -> Vec<u8> {
    let entry = Entry::InFlight {
        fp: fp.to_string(),
        boot: process::boot_id(),
    };
    encode(&entry, &[])
}

impl Plugin for Idempotency {
    fn on_request(request: Request) -> Result<RequestDecision, HookError> {
        let settings = config::shared::<Settings>()?;
        if !settings.covers(&request) {
            return Ok(RequestDecision::pass());
        }
        if !request.request_id_from_client {
            let detail = "this route needs an X-Request-ID header: the idempotency key";
            return Ok(problem(
                400,
                "missing-request-id",
                "Missing idempotency key",
                detail,
                &request,
            ));
        }
        let key = settings.key(&request);
        let fp = fingerprint(&request);
        let claim = claim(&fp);
        for _ in 0..CLAIM_TRIES_MAX {
            let current = kv::get(&key)?;
            let Some(stored) = current else {
                if take(&key, None, &claim, &settings)? {
                    return Ok(RequestDecision::pass());
                }
                continue;
            };
            let Some((entry, body)) = decode(&stored) else {
                // Not ours to read (written by another version?): replace it with our claim.
                if take(&key, Some(&stored), &claim, &settings)? {
                    return Ok(RequestDecision::pass());
                }
                continue;
            };
            if entry.fingerprint() != fp {
                let detail =
                    "this X-Request-ID was used for a different request (method, path or body)";
                return Ok(problem(
                    422,
                    "idempotency-key-reused",
                    "Idempotency key reused",
                    detail,
                    &request,
                ));
            }
            match entry {
                Entry::Done {
                    status, headers, ..
                } => {
                    return Ok(RequestDecision::Respond(replay(status, &headers, body)));
                }
                Entry::InFlight { boot, .. } if boot == process::boot_id() => {
                    return Ok(in_flight(&request));
                }
                Entry::InFlight { .. } => {
                    // Left by a gateway that crashed: the request is not running any more.
                    if take(&key, Some(&stored), &claim, &settings)? {
                        return Ok(RequestDecision::pass());
                    }
                }
            }
        }
        Ok(in_flight(&request))
    }

    fn on_response(request: Request, response: Response) -> Result<Response, HookError> {
        let settings = config::shared::<Settings>()?;
        if !settings.covers(&request) || !request.request_id_from_client {
            return Ok(response);
        }
        let key = settings.key(&request);
        let fp = fingerprint(&request);
        let claim = claim(&fp);
        if matches!(response.status, 202 | 503) {
            kv::compare_and_swap_volatile(&key, Some(&claim), None, None)?;
            return Ok(response);
        }
        let entry = Entry::Done {
            fp,
            status: response.status,
            headers: response
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        };
        let done = encode(&entry, &response.body);
        kv::compare_and_swap(&key, Some(&claim), Some(&done), Some(settings.ttl_ms()))?;
        Ok(response)
    }
}

txgate_plugin_sdk::export!(Idempotency);

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::json;
    use txgate_plugin_sdk::testing::Harness;

    fn transfer(id: &str, body: &str) -> Request {
        Request::new("POST", "/transfers")
            .with_route("transfers")
            .with_header("x-request-id", id)
            .with_body(body)
    }

    fn answer(decision: RequestDecision) -> Response {
        match decision {
            RequestDecision::Respond(response) => response,
            RequestDecision::Continue(_) => panic!("expected an answer from the plugin"),
        }
    }

    fn passes(decision: &RequestDecision) -> bool {
        matches!(decision, RequestDecision::Continue(_))
    }

    #[test]
    fn first_request_runs_and_a_retry_replays_it_byte_for_byte() {
        let host = Harness::new();
        let request = transfer("a", "{\"amount\":5}");
        assert!(passes(
            &host.on_request::<Idempotency>(request.clone()).unwrap()
        ));
        let sent = Response::json(201, &json!({"ok": true})).with_header("x-upstream", "bank");
        host.on_response::<Idempotency>(request.clone(), sent.clone())
            .unwrap();
        let replayed = answer(host.on_request::<Idempotency>(request).unwrap());
        assert_eq!(replayed.status, 201);
        assert_eq!(replayed.body, sent.body);
        assert_eq!(replayed.header("x-upstream"), Some("bank"));
        assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    }

    #[test]
    fn a_duplicate_in_flight_gets_409_with_retry_after() {
        let host = Harness::new();
        let request = transfer("b", "{}");
        host.on_request::<Idempotency>(request.clone()).unwrap();
        let conflict = answer(host.on_request::<Idempotency>(request).unwrap());
        assert_eq!(conflict.status, 409);
        assert_eq!(conflict.header("retry-after"), Some("1"));
    }

    #[test]
    fn the_same_key_with_another_body_gets_422() {
        let host = Harness::new();
        host.on_request::<Idempotency>(transfer("c", "{\"amount\":1}"))
            .unwrap();
        let reused = answer(
            host.on_request::<Idempotency>(transfer("c", "{\"amount\":2}"))
                .unwrap(),
        );
        assert_eq!(reused.status, 422);
    }

    #[test]
    fn no_request_id_from_the_client_gets_400() {
        let host = Harness::new();
        let mut request = transfer("generated", "{}");
        request.request_id_from_client = false;
        assert_eq!(
            answer(host.on_request::<Idempotency>(request).unwrap()).status,
            400
        );
    }

    #[test]
    fn a_claim_left_by_a_crash_is_not_in_flight_after_a_restart() {
        let host = Harness::new();
        let request = transfer("d", "{}");
        host.on_request::<Idempotency>(request.clone()).unwrap();
        host.restart();
        assert!(
            passes(&host.on_request::<Idempotency>(request).unwrap()),
            "the retry runs, never 409"
        );
    }

    #[test]
    fn a_pending_answer_releases_the_key_for_the_retry() {
        let host = Harness::new();
        let request = transfer("e", "{}");
        host.on_request::<Idempotency>(request.clone()).unwrap();
        host.on_response::<Idempotency>(request.clone(), Response::new(202))
            .unwrap();
        assert!(passes(&host.on_request::<Idempotency>(request).unwrap()));
    }

    #[test]
    fn records_expire_after_ttl_and_other_methods_pass_untouched() {
        let host = Harness::new().with_config(json!({"ttl_secs": 60}));
        let request = transfer("f", "{}");
        host.on_request::<Idempotency>(request.clone()).unwrap();
        host.on_response::<Idempotency>(request.clone(), Response::new(200))
            .unwrap();
        host.advance_ms(61_000);
        assert!(passes(&host.on_request::<Idempotency>(request).unwrap()));
        let get = Request::new("GET", "/transfers").with_header("x-request-id", "f");
        assert!(passes(
            &host.on_request::<Idempotency>(get.clone()).unwrap()
        ));
        assert!(
            passes(&host.on_request::<Idempotency>(get).unwrap()),
            "GET is never held"
        );
    }

    #[test]
    fn clients_are_kept_apart_by_client_key() {
        let host = Harness::new().with_config(json!({"client_key": "header:x-client"}));
        let acme = transfer("g", "{}").with_header("x-client", "acme");
        let globex = transfer("g", "{\"other\":true}").with_header("x-client", "globex");
        host.on_request::<Idempotency>(acme).unwrap();
        assert!(
            passes(&host.on_request::<Idempotency>(globex).unwrap()),
            "another client's key"
        );
    }
}

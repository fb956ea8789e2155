//! # txgate-plugin-idempotency
//!
//! Idempotency keys at the edge (SPEC §3). The key is the route plus the client's X-Request-ID
//! (partitioned by client when `client_key` is set); the fingerprint is the method, path and body.
//!
//! - First request: it *holds* the key (`kv::hold`, with its fingerprint), so of concurrent
//!   duplicates exactly one proceeds. A hold is not stored: it ends with its request, however
//!   the request ends (answered, a later plugin failing, the client hanging up), and with the
//!   gateway process, so a key never answers 409 for longer than its request runs.
//! - Its final response is stored durably (before the client sees it) and kept `ttl_secs`.
//! - Retry after completion, same fingerprint: the stored response, byte for byte, with
//!   `Idempotent-Replayed: true`.
//! - Retry while the first runs: 409 with `Retry-After`. Same key, other fingerprint: 422. No
//!   X-Request-ID from the client: 400.
//! - After a crash the key is free: on a saga route the gateway answers with the saga's outcome
//!   (it never runs a saga twice per X-Request-ID); elsewhere the request runs again with the
//!   same X-Request-ID, so the upstream can dedup.
//! - 202 (a saga still running), 503, and errors the gateway made itself (problem+json of type
//!   `urn:txgate:problem:*`: the request never ran to its end) are not final: nothing is
//!   stored, so a retry runs (and, on a saga route, gets the saga's answer).
//! - A response too large to store (over 1 MiB with its headers) is stored without its body:
//!   retries get its status and headers, an empty body and `Idempotent-Body-Omitted: true`.

mod record;
mod settings;

use record::{Entry, decode, encode, replay};
use settings::{Settings, fingerprint};
use txgate_plugin_sdk::{
    Header, HookError, KvError, Plugin, Request, RequestDecision, Response, ResponseChanges,
    ResponseView, config, kv, log, serde_json,
};

/// The largest value the gateway's key-value store takes (the WIT `kv` interface says so).
const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// A record's own bytes besides the body and headers: the fingerprint, status and framing.
const RECORD_OVERHEAD_BYTES: usize = 256;

/// The plugin.
pub struct Idempotency;

fn problem(
    status: u16,
    slug: &str,
    title: &str,
    detail: &str,
    request: &Request<'_>,
) -> RequestDecision {
    RequestDecision::Respond(Response::problem(
        status,
        slug,
        title,
        detail,
        &request.request_id(),
    ))
}

fn in_flight(request: &Request<'_>) -> RequestDecision {
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

fn reused(request: &Request<'_>) -> RequestDecision {
    let detail = "this X-Request-ID was used for a different request (method, path or body)";
    problem(
        422,
        "idempotency-key-reused",
        "Idempotency key reused",
        detail,
        request,
    )
}

/// The stored answer for `key`, if the request with fingerprint `fp` has one.
fn stored(
    key: &str,
    fp: &str,
    request: &Request<'_>,
) -> Result<Option<RequestDecision>, HookError> {
    let Some(bytes) = kv::get(key)? else {
        return Ok(None);
    };
    let Some((entry, body)) = decode(&bytes) else {
        log::warn(&format!(
            "idempotency: an unreadable record under {key} is ignored"
        ));
        return Ok(None);
    };
    if entry.fingerprint() != fp {
        return Ok(Some(reused(request)));
    }
    let Entry::Done {
        status,
        headers,
        body_omitted,
        ..
    } = entry;
    Ok(Some(RequestDecision::Respond(replay(
        status,
        &headers,
        body,
        body_omitted,
    ))))
}

/// Whether a response is the request's final answer, to keep for retries. Not final: a 202 or
/// 503 (the client is told to retry), a replay, and an error the gateway made itself
/// (`urn:txgate:problem:*`): such a request never ran to its end (it was refused, or another
/// request owns its saga), and keeping its answer would hide the real one from every retry.
fn is_final(status: u16, headers: &[Header], body: &[u8]) -> bool {
    let header = |name: &str| txgate_plugin_sdk::find_header(headers, name);
    if matches!(status, 202 | 503) || header("idempotent-replayed").is_some() {
        return false;
    }
    let problem = header("content-type").is_some_and(|c| c.starts_with("application/problem+json"));
    let gateways = || {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                v["type"]
                    .as_str()
                    .map(|t| t.starts_with("urn:txgate:problem:"))
            })
            .unwrap_or(false)
    };
    !(problem && gateways())
}

#[txgate_plugin_sdk::plugin]
impl Plugin for Idempotency {
    fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let settings = config::shared::<Settings>()?;
        if !settings.covers(request) {
            return Ok(RequestDecision::pass());
        }
        if !request.request_id_from_client() {
            let detail = "this route needs an X-Request-ID header: the idempotency key";
            return Ok(problem(
                400,
                "missing-request-id",
                "Missing idempotency key",
                detail,
                request,
            ));
        }
        let key = settings.key(request);
        let fp = fingerprint(request);
        // Held first, then read once: a hold is in memory, a read may go to disk. A stored
        // answer still wins over a holder, so a retry after completion is replayed even while
        // another retry of it holds the key.
        let holder = kv::hold(&key, fp.as_bytes())?;
        if let Some(answer) = stored(&key, &fp, request)? {
            return Ok(answer);
        }
        match holder {
            Some(holder) if holder != fp.as_bytes() => Ok(reused(request)),
            Some(_) => Ok(in_flight(request)),
            None => Ok(RequestDecision::pass()),
        }
    }

    fn on_response(
        request: &Request<'_>,
        response: &ResponseView<'_>,
    ) -> Result<ResponseChanges, HookError> {
        let settings = config::shared::<Settings>()?;
        if !settings.covers(request) || !request.request_id_from_client() {
            return Ok(ResponseChanges::none());
        }
        let status = response.status();
        let sent_headers = response.headers();
        let body = response.body();
        if !is_final(status, &sent_headers, &body) {
            return Ok(ResponseChanges::none());
        }
        let key = settings.key(request);
        let headers: Vec<(String, String)> = sent_headers
            .into_iter()
            .map(|h| (h.name, h.value))
            .collect();
        let entry = |body_omitted| Entry::Done {
            fp: fingerprint(request),
            status,
            headers: headers.clone(),
            body_omitted,
        };
        let ttl = Some(settings.ttl_ms());
        // Checked before encoding, so a large body is never copied only to be refused.
        let header_bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 8).sum();
        let whole = body.len() + header_bytes + RECORD_OVERHEAD_BYTES <= VALUE_BYTES_MAX;
        let record = if whole {
            encode(&entry(false), &body)
        } else {
            log::warn(&format!(
                "idempotency: the response for {key} is too large to keep whole; retries get it without its body"
            ));
            encode(&entry(true), &[])
        };
        match kv::set(&key, &record, ttl) {
            Ok(()) => {}
            Err(KvError::LimitReached(detail)) => {
                // The client still gets its answer; a retry runs again (the upstream sees the
                // same X-Request-ID) or, on a saga route, gets the saga's answer.
                log::error(&format!(
                    "idempotency: not stored, the plugin is at its quota: {detail}"
                ));
            }
            Err(error) => return Err(error.into()),
        }
        Ok(ResponseChanges::none())
    }
}

txgate_plugin_sdk::export!(Idempotency);

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::json;
    use txgate_plugin_sdk::testing::Harness;

    fn transfer(id: &str, body: &str) -> Request<'static> {
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
        let first = host.request();
        assert!(passes(
            &first.on_request::<Idempotency>(request.clone()).unwrap()
        ));
        let sent = Response::json(201, &json!({"ok": true})).with_header("x-upstream", "bank");
        first
            .on_response::<Idempotency>(request.clone(), sent.clone())
            .unwrap();
        drop(first);
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
        let first = host.request();
        first.on_request::<Idempotency>(request.clone()).unwrap();
        let conflict = answer(host.on_request::<Idempotency>(request).unwrap());
        assert_eq!(conflict.status, 409);
        assert_eq!(conflict.header("retry-after"), Some("1"));
    }

    #[test]
    fn the_same_key_with_another_body_gets_422_in_flight_and_after() {
        let host = Harness::new();
        let first = host.request();
        let original = transfer("c", "{\"amount\":1}");
        first.on_request::<Idempotency>(original.clone()).unwrap();
        let other = || transfer("c", "{\"amount\":2}");
        assert_eq!(
            answer(host.on_request::<Idempotency>(other()).unwrap()).status,
            422
        );
        first
            .on_response::<Idempotency>(original, Response::new(200))
            .unwrap();
        drop(first);
        assert_eq!(
            answer(host.on_request::<Idempotency>(other()).unwrap()).status,
            422
        );
    }

    #[test]
    fn no_request_id_from_the_client_gets_400() {
        let host = Harness::new();
        let request = Request::new("POST", "/transfers")
            .with_route("transfers")
            .with_generated_request_id("generated")
            .with_body("{}");
        assert_eq!(
            answer(host.on_request::<Idempotency>(request).unwrap()).status,
            400
        );
    }

    #[test]
    fn a_request_that_ends_without_an_answer_frees_its_key() {
        // The client hung up, or a later plugin failed: on-response never ran for this plugin.
        let host = Harness::new();
        let request = transfer("d", "{}");
        let gone = host.request();
        gone.on_request::<Idempotency>(request.clone()).unwrap();
        drop(gone);
        assert!(
            passes(&host.on_request::<Idempotency>(request).unwrap()),
            "never 409"
        );
    }

    #[test]
    fn a_key_held_when_the_gateway_crashed_is_free_after_the_restart() {
        let host = Harness::new();
        let request = transfer("d2", "{}");
        let first = host.request();
        first.on_request::<Idempotency>(request.clone()).unwrap();
        host.restart();
        assert!(
            passes(&host.on_request::<Idempotency>(request).unwrap()),
            "the retry runs, never 409"
        );
    }

    #[test]
    fn a_pending_answer_stores_nothing_so_the_retry_runs() {
        let host = Harness::new();
        let request = transfer("e", "{}");
        let first = host.request();
        first.on_request::<Idempotency>(request.clone()).unwrap();
        first
            .on_response::<Idempotency>(request.clone(), Response::new(202))
            .unwrap();
        drop(first);
        assert!(passes(&host.on_request::<Idempotency>(request).unwrap()));
    }

    #[test]
    fn an_error_the_gateway_made_is_not_kept_for_retries() {
        // Another request's saga owns this X-Request-ID: the engine's 422 must not become the
        // answer every later retry of the original gets.
        let host = Harness::new();
        let request = transfer("owned", "{}");
        let problem = Response::problem(422, "request-id-reused", "Reused", "no", "owned");
        host.on_response::<Idempotency>(request.clone(), problem)
            .unwrap();
        assert!(passes(&host.on_request::<Idempotency>(request).unwrap()));
    }

    #[test]
    fn a_response_too_large_to_keep_replays_without_its_body() {
        let host = Harness::new();
        let request = transfer("big", "{}");
        let first = host.request();
        first.on_request::<Idempotency>(request.clone()).unwrap();
        let huge = Response::new(200).with_body(vec![b'x'; 2 * 1024 * 1024]);
        let sent = first
            .on_response::<Idempotency>(request.clone(), huge)
            .unwrap();
        assert_eq!(sent.body.len(), 2 * 1024 * 1024, "the client gets it whole");
        drop(first);
        let replayed = answer(host.on_request::<Idempotency>(request).unwrap());
        assert_eq!(replayed.status, 200);
        assert!(replayed.body.is_empty());
        assert_eq!(replayed.header("idempotent-body-omitted"), Some("true"));
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
        let holder = host.request();
        assert!(passes(
            &holder.on_request::<Idempotency>(get.clone()).unwrap()
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
        let first = host.request();
        first.on_request::<Idempotency>(acme).unwrap();
        assert!(
            passes(&host.on_request::<Idempotency>(globex).unwrap()),
            "another client's key"
        );
    }
}

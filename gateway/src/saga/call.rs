//! One saga call: built with the backend contract's headers (SPEC §4), sent through the
//! upstream's breaker and per-attempt timeout, and classified.

use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::record::{Answer, Attempt, SagaRecord};
use crate::error::Error;
use crate::plugin::Chain;
use crate::step::{Phase, StepAnswer, StepCall, Verdict};
use crate::upstream::{Fence, OutboundRequest, Upstream, UpstreamResponse, is_retryable_status};

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const SAGA_ID: HeaderName = HeaderName::from_static("x-saga-id");
const SAGA_STEP: HeaderName = HeaderName::from_static("x-saga-step");
/// Names the gateway that sent the call, so a backend's journal tells who sent what.
const GATEWAY: HeaderName = HeaderName::from_static("x-txgate-gateway");

/// The backend contract's headers: only the engine sends them, so plain routes remove a
/// client's copies (SPEC §3).
pub const BACKEND_CONTRACT_HEADERS: [HeaderName; 3] = [SAGA_ID, SAGA_STEP, GATEWAY];

/// The gateway's own reading (SPEC §4); plugins may override it.
pub(super) fn default_verdict(result: &Result<UpstreamResponse, Error>) -> Verdict {
    match result {
        Ok(response) if response.status.is_success() => Verdict::Success,
        Ok(response) if is_retryable_status(response.status) => Verdict::Retry,
        Ok(response) if response.status.is_client_error() => Verdict::Reject,
        _ => Verdict::Retry,
    }
}

fn value(text: &str) -> HeaderValue {
    // Ids, step names and request ids are validated visible ASCII; a bad one is a bug, and an
    // empty value is the safe way to send it.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The call the gateway sends for `phase` of step `i`, before plugins shape it. `None` when the
/// plan's method is not one (a record written by hand).
pub(super) fn build(
    record: &SagaRecord,
    i: usize,
    phase: Phase,
    gateway: &str,
) -> Option<StepCall> {
    let step = record.plan.get(i)?;
    let planned = step.call(phase);
    let method = Method::from_bytes(planned.method.as_bytes()).ok()?;
    let mut headers = HeaderMap::with_capacity(6);
    headers.insert(crate::request_id::HEADER, value(&record.request_id));
    headers.insert(IDEMPOTENCY_KEY, value(&record.idempotency_key(i, phase)));
    headers.insert(SAGA_ID, value(&record.id));
    headers.insert(SAGA_STEP, value(&step.name));
    headers.insert(GATEWAY, value(gateway));
    if let Some(content_type) = record
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert(http::header::CONTENT_TYPE, content_type);
    }
    Some(StepCall {
        saga_id: record.id.clone(),
        route: record.route.clone(),
        step: step.name.as_str().into(),
        phase,
        request_id: record.request_id.clone(),
        method,
        path: planned.path.clone(),
        headers,
        body: record.body.clone(),
    })
}

/// The `status` call `txgate reconcile` sends for step `i` (SPEC §10): a `GET` of `path` with
/// the key of the step's effect (its action or try) and the saga's headers, as the backend
/// keyed them. `None` for a step the plan does not have.
pub fn status_request(record: &SagaRecord, i: usize, path: &str) -> Option<OutboundRequest> {
    let mut call = build(record, i, record.effect_phase(), "reconcile")?;
    call.headers.remove(http::header::CONTENT_TYPE);
    Some(OutboundRequest {
        method: Method::GET,
        path_and_query: path.to_string(),
        headers: call.headers,
        body: bytes::Bytes::new(),
    })
}

/// The answer as the saga hooks see it.
pub(super) fn answer_of(result: &Result<UpstreamResponse, Error>) -> StepAnswer {
    match result {
        Ok(response) => StepAnswer {
            status: Some(response.status.as_u16()),
            headers: response.headers.clone(),
            body: response.body.clone(),
            error: None,
        },
        Err(error) => StepAnswer {
            error: Some(error.to_string()),
            ..StepAnswer::default()
        },
    }
}

/// What one attempt came to.
#[derive(Debug)]
pub(super) struct Outcome {
    /// The reading (after plugins).
    pub(super) verdict: Verdict,
    /// The upstream's answer, when it answered.
    pub(super) answer: Option<Answer>,
    /// What went wrong, when it did.
    pub(super) error: Option<String>,
    /// Whether the attempt may have put a byte on the wire.
    pub(super) reached: bool,
}

/// A call about to be sent: what plugins see, and what goes on the wire.
pub(super) struct Sending<'a> {
    /// The upstream.
    upstream: &'a Upstream,
    /// The call.
    call: &'a StepCall,
    /// Its request, built once per call, not per attempt.
    outbound: OutboundRequest,
    /// The route's plugins.
    chain: Option<&'a Chain>,
}

impl<'a> Sending<'a> {
    /// `call` to `upstream`, shown to `chain`'s plugins.
    pub(super) fn new(
        upstream: &'a Upstream,
        call: &'a StepCall,
        chain: Option<&'a Chain>,
    ) -> Self {
        let outbound = OutboundRequest {
            method: call.method.clone(),
            path_and_query: call.path.clone(),
            headers: call.headers.clone(),
            body: call.body.clone(),
        };
        Self {
            upstream,
            call,
            outbound,
            chain,
        }
    }
}

/// Sends one attempt, records it on the saga, and classifies it.
pub(super) async fn attempt(
    record: &mut SagaRecord,
    i: usize,
    sending: &Sending<'_>,
    fence: Option<&Fence>,
) -> Outcome {
    let (outcome, attempt) = attempt_alone(i, sending, fence).await;
    record.attempt(attempt);
    outcome
}

/// Sends one attempt and classifies it, leaving the record to the caller: calls sent at once
/// (a message's steps) are recorded one after the other when they are all back.
pub(super) async fn attempt_alone(
    i: usize,
    sending: &Sending<'_>,
    fence: Option<&Fence>,
) -> (Outcome, Attempt) {
    let Sending {
        upstream,
        call,
        outbound,
        chain,
    } = sending;
    let started = Instant::now();
    let at_ms = crate::store::now_unix_ms();
    let result = upstream.attempt(outbound, fence).await;
    let reached = result.as_ref().map_or_else(|e| !e.never_sent(), |_| true);
    let mut verdict = default_verdict(&result);
    if let Some(chain) = chain
        && let Some(overridden) = chain.on_step_response(call, &answer_of(&result)).await
    {
        verdict = overridden;
    }
    let (answer, error) = match result {
        Ok(response) => {
            let answer = Answer {
                status: response.status.as_u16(),
                body: response.body.to_vec(),
            };
            let error = (verdict != Verdict::Success)
                .then(|| format!("upstream answered {}", answer.status));
            (Some(answer), error)
        }
        Err(error) => (None, Some(error.to_string())),
    };
    let attempt = Attempt {
        step: i,
        phase: call.phase,
        at_ms,
        status: answer.as_ref().map(|a| a.status),
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        error: error.clone(),
    };
    let outcome = Outcome {
        verdict,
        answer,
        error,
        reached,
    };
    (outcome, attempt)
}

/// A step's forward answer, as `on-compensate` sees it.
pub(super) fn stored_answer(answer: &Option<Answer>) -> Option<StepAnswer> {
    answer.as_ref().map(|a| StepAnswer {
        status: Some(a.status),
        body: bytes::Bytes::from(a.body.clone()),
        ..StepAnswer::default()
    })
}

/// An attempt that never went out, for operators.
pub(super) fn not_sent(step: usize, phase: Phase, error: String) -> Attempt {
    Attempt {
        step,
        phase,
        at_ms: crate::store::now_unix_ms(),
        status: None,
        latency_ms: 0,
        error: Some(error),
    }
}

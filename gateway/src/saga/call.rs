//! One saga call: built with the backend contract's headers (SPEC §4), shaped by the plugins'
//! saga hooks, sent through the upstream's breaker and per-attempt timeout, and classified.

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::record::{Answer, Attempt, Phase, SagaRecord};
use super::route::SagaStep;
use crate::error::Error;
use crate::plugin::{Chain, wit};
use crate::upstream::{OutboundRequest, UpstreamResponse, is_retryable_status};

/// How an attempt's outcome is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// 2xx.
    Success,
    /// A business rejection: any 4xx but 408, 425 and 429.
    Reject,
    /// Worth retrying with the same Idempotency-Key.
    Retry,
}

/// The gateway's own reading (SPEC §4); plugins may override it.
pub(super) fn default_class(result: &Result<UpstreamResponse, Error>) -> Class {
    match result {
        Ok(response) if response.status.is_success() => Class::Success,
        Ok(response) if is_retryable_status(response.status) => Class::Retry,
        Ok(response) if response.status.is_client_error() => Class::Reject,
        _ => Class::Retry,
    }
}

fn wit_phase(phase: Phase) -> wit::Phase {
    match phase {
        Phase::Action => wit::Phase::Action,
        Phase::Compensate => wit::Phase::Compensate,
        Phase::Try => wit::Phase::Try,
        Phase::Confirm => wit::Phase::Confirm,
        Phase::Cancel => wit::Phase::Cancel,
    }
}

fn header(name: &str, value: &str) -> wit::Header {
    wit::Header {
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// The call the gateway sends for `phase` of step `index`, before plugins shape it.
pub(super) fn build(record: &SagaRecord, step: &SagaStep, phase: Phase) -> wit::StepCall {
    let configured = step.call(phase);
    let mut headers = vec![
        header("x-request-id", &record.request_id),
        header(
            "idempotency-key",
            &format!("{}.{}.{}", record.id, step.name, phase.as_str()),
        ),
        header("x-saga-id", &record.id),
        header("x-saga-step", &step.name),
    ];
    if let Some(content_type) = &record.content_type {
        headers.push(header("content-type", content_type));
    }
    wit::StepCall {
        saga_id: record.id.clone(),
        route: record.route.clone(),
        step: step.name.clone(),
        phase: wit_phase(phase),
        request_id: record.request_id.clone(),
        method: configured.method.as_str().to_string(),
        path: configured.path.clone(),
        headers,
        body: record.body.clone(),
    }
}

/// Runs `on-step-request` when the route has plugins.
pub(super) async fn shape(
    chain: Option<&Chain>,
    call: wit::StepCall,
) -> Result<wit::StepCall, String> {
    match chain {
        Some(chain) => chain.on_step_request(call).await.map_err(|failure| {
            format!(
                "plugin `{}` failed ({}): {}",
                failure.plugin, failure.kind, failure.detail
            )
        }),
        None => Ok(call),
    }
}

fn outbound(call: &wit::StepCall) -> OutboundRequest {
    let mut headers = HeaderMap::with_capacity(call.headers.len());
    for h in &call.headers {
        // Plugin output was validated in the chain; the gateway's own headers are valid.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_str(&h.value),
        ) {
            headers.append(name, value);
        }
    }
    OutboundRequest {
        method: Method::from_bytes(call.method.as_bytes()).unwrap_or(Method::POST),
        path_and_query: call.path.clone(),
        headers,
        body: Bytes::from(call.body.clone()),
    }
}

fn answer_of(result: &Result<UpstreamResponse, Error>) -> wit::StepAnswer {
    match result {
        Ok(response) => wit::StepAnswer {
            status: Some(response.status.as_u16()),
            headers: crate::plugin::wit_headers(&response.headers),
            body: response.body.to_vec(),
            error: None,
        },
        Err(error) => wit::StepAnswer {
            status: None,
            headers: Vec::new(),
            body: Vec::new(),
            error: Some(error.to_string()),
        },
    }
}

/// What one attempt came to.
#[derive(Debug)]
pub(super) struct Outcome {
    /// The reading (after plugins).
    pub(super) class: Class,
    /// The upstream's answer, when it answered.
    pub(super) answer: Option<Answer>,
    /// What went wrong, when it did.
    pub(super) error: Option<String>,
}

/// Sends one attempt, records it on the saga, and classifies it.
pub(super) async fn attempt(
    record: &mut SagaRecord,
    step: &SagaStep,
    index: usize,
    phase: Phase,
    call: &wit::StepCall,
    chain: Option<&Chain>,
) -> Outcome {
    let started = Instant::now();
    let at_ms = crate::store::now_unix_ms();
    let result = step.upstream.attempt(&outbound(call)).await;
    let mut class = default_class(&result);
    if let Some(chain) = chain {
        let answer = answer_of(&result);
        if let Some(verdict) = chain.on_step_response(call, &answer).await {
            class = match verdict {
                wit::Classification::Success => Class::Success,
                wit::Classification::Reject => Class::Reject,
                wit::Classification::Retry => Class::Retry,
            };
        }
    }
    let (answer, error) = match result {
        Ok(response) => {
            let answer = Answer {
                status: response.status.as_u16(),
                body: response.body.to_vec(),
            };
            let error =
                (class != Class::Success).then(|| format!("upstream answered {}", answer.status));
            (Some(answer), error)
        }
        Err(error) => (None, Some(error.to_string())),
    };
    record.attempt(Attempt {
        step: index,
        phase,
        at_ms,
        status: answer.as_ref().map(|a| a.status),
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        error: error.clone(),
    });
    Outcome {
        class,
        answer,
        error,
    }
}

/// The forward call of a step as `on-compensate` sees it (the action that is being undone).
pub(super) fn as_answer(answer: &Option<Answer>) -> Option<wit::StepAnswer> {
    answer.as_ref().map(|a| wit::StepAnswer {
        status: Some(a.status),
        headers: Vec::new(),
        body: a.body.clone(),
        error: None,
    })
}

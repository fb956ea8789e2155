//! What clients and operators see of a saga, as JSON.
//!
//! Clients (SPEC §3): `{"saga_id", "status", "steps": [{"name", "status", "body"}]}`, plus
//! `failed_step` and `error` when compensated. 200 when completed; the rejecting step's status
//! after a business rejection; 502 when an upstream stayed unavailable; 503 when a plugin failed;
//! 202 with `"status": "pending"` while the saga is still running.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::record::{ActionOutcome, Answer, Cause, OperatorAction, SagaRecord, Status, Undo};

/// An upstream body: JSON when it parses (copied through as is), otherwise a string.
#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Json(&'a RawValue),
    Text(Cow<'a, str>),
}

fn body(answer: &Answer) -> Body<'_> {
    match serde_json::from_slice::<&RawValue>(&answer.body) {
        Ok(raw) => Body::Json(raw),
        Err(_) => Body::Text(String::from_utf8_lossy(&answer.body)),
    }
}

#[derive(Serialize)]
struct StepView<'a> {
    name: &'a str,
    status: Option<u16>,
    body: Option<Body<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compensation: Option<&'static str>,
}

#[derive(Serialize)]
struct ClientView<'a> {
    saga_id: &'a str,
    status: &'a str,
    steps: Vec<StepView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_step: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn undo_name(undo: Undo) -> Option<&'static str> {
    match undo {
        Undo::None => None,
        Undo::Sent => Some("pending"),
        Undo::Done => Some("done"),
        Undo::Skipped => Some("skipped"),
    }
}

fn steps(record: &SagaRecord) -> Vec<StepView<'_>> {
    record
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| StepView {
            name: record.step_name(i),
            status: step.answer.as_ref().map(|a| a.status),
            body: step.answer.as_ref().map(body),
            compensation: undo_name(step.undo),
        })
        .collect()
}

fn status_code(record: &SagaRecord) -> StatusCode {
    match (record.status, &record.failure) {
        (Status::Completed, _) => StatusCode::OK,
        (status, _) if !status.is_final() => StatusCode::ACCEPTED,
        (_, Some(failure)) => match failure.cause {
            Cause::Rejected => record.steps[failure.step]
                .answer
                .as_ref()
                .and_then(|a| StatusCode::from_u16(a.status).ok())
                .unwrap_or(StatusCode::CONFLICT),
            Cause::Unavailable | Cause::Missing => StatusCode::BAD_GATEWAY,
            Cause::Plugin => StatusCode::SERVICE_UNAVAILABLE,
            Cause::Aborted => StatusCode::CONFLICT,
        },
        (_, None) => StatusCode::BAD_GATEWAY,
    }
}

/// A message's answer to its service: `{"msg_id", "status"}`, 201 for its prepare (a repeat
/// too) and 200 for a submit or an abort.
pub(super) fn message(record: &SagaRecord, status: StatusCode) -> Response<Full<Bytes>> {
    let body = json!({"msg_id": record.id, "status": record.msg_state()});
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.extensions_mut().insert(SagaOf(record.id.clone()));
    response
}

/// The client's answer.
pub fn client(record: &SagaRecord) -> Response<Full<Bytes>> {
    if record.mode == super::record::Mode::Msg {
        return message(record, StatusCode::CREATED);
    }
    let view = ClientView {
        saga_id: &record.id,
        status: if record.status.is_final() {
            record.status.as_str()
        } else {
            "pending"
        },
        steps: steps(record),
        failed_step: record.failure.as_ref().map(|f| record.step_name(f.step)),
        error: record.failure.as_ref().map(|f| f.error.as_str()),
    };
    let body = serde_json::to_vec(&view).expect("the client view always serializes");
    let status = status_code(record);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::ACCEPTED {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    // Not on the wire: tells the request's plugins (and audit events) which saga this was.
    response.extensions_mut().insert(SagaOf(record.id.clone()));
    response
}

/// The saga a client's answer is about, carried in the response's extensions.
#[derive(Debug, Clone)]
pub struct SagaOf(pub Arc<str>);

/// An operator's view: every field, every kept attempt.
pub fn admin(record: &SagaRecord) -> Value {
    let name = |i: usize| record.plan.get(i).map(|s| s.name.clone());
    json!({
        "saga_id": record.id,
        "route": record.route,
        "client": record.client,
        "request_id": record.request_id,
        "plan": record.plan.iter().map(|s| json!({
            "name": s.name,
            "upstream": s.upstream,
            "forward": format!("{} {}", s.forward.method, s.forward.path),
            // A message is never undone: its plan's undo is a placeholder.
            "undo": (record.mode != super::record::Mode::Msg)
                .then(|| format!("{} {}", s.undo.method, s.undo.path)),
            "confirm": s.confirm.as_ref().map(|c| format!("{} {}", c.method, c.path)),
        })).collect::<Vec<_>>(),
        "mode": record.mode.as_str(),
        "msg_state": (record.mode == super::record::Mode::Msg).then(|| record.msg_state()),
        "status": record.status.as_str(),
        "stage": format!("{:?}", record.stage),
        "created_ms": record.created_ms,
        "updated_ms": record.updated_ms,
        "steps": steps(record),
        "failure": record.failure.as_ref().map(|f| json!({
            "step": name(f.step),
            "cause": format!("{:?}", f.cause).to_lowercase(),
            "error": f.error,
        })),
        "failures_in_a_row": record.failures_in_a_row,
        "resolution": record.resolution.as_deref().map(|note| serde_json::from_str::<Value>(note).unwrap_or(json!(note))),
        "actions": record.actions.iter().map(action).collect::<Vec<_>>(),
        "attempts_total": record.attempts_total,
        "attempts": record.attempts.iter().map(|a| json!({
            "step": name(a.step),
            "phase": a.phase.as_str(),
            "at_ms": a.at_ms,
            "status": a.status,
            "latency_ms": a.latency_ms,
            "error": a.error,
        })).collect::<Vec<_>>(),
    })
}

/// An operator's action as the admin API shows it.
fn action(action: &OperatorAction) -> Value {
    let (outcome, refused_because) = match &action.outcome {
        Some(ActionOutcome::Applied) => ("applied", None),
        Some(ActionOutcome::Refused(why)) => ("refused", Some(why.as_str())),
        None => ("asked", None),
    };
    json!({
        "id": action.id,
        "action": action.kind.as_str(),
        "operator": action.operator,
        "reason": action.reason,
        "at_ms": action.at_ms,
        "note": action.note.as_deref().map(|note| serde_json::from_str::<Value>(note).unwrap_or(json!(note))),
        "outcome": outcome,
        "refused_because": refused_because,
    })
}

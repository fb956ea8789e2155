//! The admin calls on sagas (SPEC §6): list, search, look, and the operators' actions (retry,
//! resolve, abort). Each action is recorded in the saga's timeline by the task that runs it,
//! with the operator's name and the reason given, and written to the audit stream.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::listing::Listing;
use super::{Operator, json, not_allowed};
use crate::audit::Subject;
use crate::error::{Error, ErrorKind};
use crate::gateway::Gateway;
use crate::pipeline::read_body;
use crate::saga::{self, Acted, ActionKind, OperatorAction};

/// Largest body an action takes (a resolve's note, a reason).
const NOTE_BYTES_MAX: u64 = 64 * 1024;

/// `GET /admin/sagas?status=S&route=R&before_ms=T&limit=N&q=TEXT`.
pub(super) async fn list(
    gateway: &Gateway,
    query: Option<&str>,
) -> Result<Response<Full<Bytes>>, Error> {
    let Listing { filter, q } = Listing::parse(query.unwrap_or(""), 50)?;
    let engine = gateway.engine();
    let sagas = match q {
        Some(text) => engine.search(&text, filter).await?,
        None => engine.list(filter).await?,
    };
    let body: Vec<_> = sagas.iter().map(saga::admin_view).collect();
    Ok(json(
        StatusCode::OK,
        &json!({ "sagas": body, "limit_max": saga::LIST_LIMIT_MAX }),
    ))
}

/// `/admin/sagas/{id}` and `/admin/sagas/{id}/{action}`.
pub(super) async fn call(
    gateway: &Gateway,
    operator: &Operator,
    method: Method,
    rest: &str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Error> {
    let kind = match (&method, rest.split_once('/')) {
        (&Method::GET, None) => {
            let record = gateway
                .engine()
                .find(rest)
                .await?
                .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no saga `{rest}`")))?;
            return Ok(json(StatusCode::OK, &saga::admin_view(&record)));
        }
        (&Method::POST, Some((_, "retry"))) => ActionKind::Retry,
        (&Method::POST, Some((_, "resolve"))) => ActionKind::Resolve,
        (&Method::POST, Some((_, "abort"))) => ActionKind::Abort,
        (_, None) => return Err(not_allowed(&method, &format!("/admin/sagas/{rest}"), "GET")),
        (_, Some((_, "retry" | "resolve" | "abort"))) => {
            return Err(not_allowed(
                &method,
                &format!("/admin/sagas/{rest}"),
                "POST",
            ));
        }
        _ => {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no admin call {method} /admin/sagas/{rest}"),
            ));
        }
    };
    let id = rest.split_once('/').map_or(rest, |(id, _)| id);
    operator.may_operate(&format!("{} a saga", kind.as_str()))?;
    let action = action_of(kind, operator, request.into_body()).await?;
    let fields = json!({ "reason": action.reason, "action_id": action.id });
    let acted = gateway.engine().act(id, action).await?;
    let subject = Subject {
        saga_id: Some(id.to_string()),
        ..Subject::default()
    };
    audit(gateway, operator, kind.as_str(), Some(&subject), &fields);
    Ok(match acted {
        Acted::Taken(record) => json(StatusCode::OK, &saga::admin_view(&record)),
        Acted::Asked(action_id) => json(
            StatusCode::ACCEPTED,
            &json!({
                "saga_id": id,
                "action_id": action_id,
                "asked": kind.as_str(),
                // A retry's old answer, kept for clients of the earlier API.
                "retrying": kind == ActionKind::Retry,
            }),
        ),
    })
}

/// The action an operator's call asks for, from its body: `{"reason": "..."}` (required for an
/// abort, optional for a retry); for a resolve, the JSON note itself, whose `reason` (if a
/// string) is the reason.
async fn action_of(
    kind: ActionKind,
    operator: &Operator,
    body: Incoming,
) -> Result<OperatorAction, Error> {
    let bytes = read_body(body, &HeaderMap::new(), NOTE_BYTES_MAX).await?;
    if kind != ActionKind::Resolve {
        let reason = reason_in(&bytes, kind == ActionKind::Abort)?;
        return Ok(OperatorAction::new(kind, operator.name.clone(), reason));
    }
    let note: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::new(ErrorKind::BadRequest, format!("the note must be JSON: {e}")))?;
    let reason = note
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut action = OperatorAction::new(kind, operator.name.clone(), reason);
    action.note = Some(note.to_string());
    Ok(action)
}

/// The reason in a body `{"reason": "..."}`; an empty body gives none, unless `required`.
pub(super) async fn reason_of(body: Incoming, required: bool) -> Result<String, Error> {
    let bytes = read_body(body, &HeaderMap::new(), NOTE_BYTES_MAX).await?;
    reason_in(&bytes, required)
}

fn reason_in(bytes: &[u8], required: bool) -> Result<String, Error> {
    let reason = if bytes.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        let body: Value = serde_json::from_slice(bytes).map_err(|e| {
            Error::new(
                ErrorKind::BadRequest,
                format!("the body must be JSON, {{\"reason\": \"...\"}}: {e}"),
            )
        })?;
        match body.get("reason") {
            Some(Value::String(reason)) => reason.trim().to_string(),
            None | Some(Value::Null) => String::new(),
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::BadRequest,
                    "`reason` must be a string",
                ));
            }
        }
    };
    if required && reason.is_empty() {
        return Err(Error::new(
            ErrorKind::BadRequest,
            "this action needs a reason: send {\"reason\": \"...\"}",
        ));
    }
    Ok(reason)
}

/// Writes an operator's action to the audit stream (`operator.<action>`).
pub(super) fn audit(
    gateway: &Gateway,
    operator: &Operator,
    action: &str,
    subject: Option<&Subject>,
    fields: &Value,
) {
    let mut fields = fields.clone();
    if let Some(object) = fields.as_object_mut() {
        object.insert("operator".into(), json!(operator.name));
        object.insert("role".into(), json!(operator.role.as_str()));
    }
    let raw = serde_json::value::to_raw_value(&fields).expect("a JSON value always serializes");
    let subject = subject.cloned().unwrap_or_default();
    gateway
        .audit()
        .write("txgate", &format!("operator.{action}"), &subject, &raw);
}

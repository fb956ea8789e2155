//! The plugin boundary: the gateway's own types to WIT types and back. What a plugin returns
//! is checked here before the gateway uses it (sizes, header names and values, methods, paths);
//! a plugin never changes a saga call's identity (saga, step, phase, request id).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use super::bindings::txgate::plugin::types as wit;
use crate::step::{Phase, StepAnswer, StepCall, Verdict};

/// Most headers a plugin may return in one answer or edit.
const PLUGIN_HEADERS_MAX: usize = 256;
/// Most header bytes (names plus values) a plugin may return in one answer or edit.
const PLUGIN_HEADER_BYTES_MAX: usize = 64 * 1024;

/// Headers as the plugin sees them (values that are not UTF-8 passed lossily).
pub fn wit_headers(headers: &HeaderMap) -> Vec<wit::Header> {
    headers
        .iter()
        .map(|(name, value)| wit::Header {
            name: name.as_str().to_string(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect()
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

/// A saga call as plugins see it.
pub(super) fn wit_call(call: &StepCall) -> wit::StepCall {
    wit::StepCall {
        saga_id: call.saga_id.to_string(),
        route: call.route.to_string(),
        step: call.step.to_string(),
        phase: wit_phase(call.phase),
        request_id: call.request_id.to_string(),
        method: call.method.as_str().to_string(),
        path: call.path.clone(),
        headers: wit_headers(&call.headers),
        body: call.body.to_vec(),
    }
}

/// A saga call's answer as plugins see it.
pub(super) fn wit_answer(answer: &StepAnswer) -> wit::StepAnswer {
    wit::StepAnswer {
        status: answer.status,
        headers: wit_headers(&answer.headers),
        body: answer.body.to_vec(),
        error: answer.error.clone(),
    }
}

/// A plugin's reading of an answer.
pub(super) fn verdict(class: wit::Classification) -> Verdict {
    match class {
        wit::Classification::Success => Verdict::Success,
        wit::Classification::Reject => Verdict::Reject,
        wit::Classification::Retry => Verdict::Retry,
    }
}

/// A call a plugin returned, checked, on top of the call it was given.
pub(super) fn step_call(
    shaped: wit::StepCall,
    given: &StepCall,
    body_bytes_max: usize,
) -> Result<StepCall, String> {
    if shaped.body.len() > body_bytes_max {
        return Err(format!("returned a {}-byte call body", shaped.body.len()));
    }
    let method = Method::from_bytes(shaped.method.as_bytes())
        .map_err(|_| format!("returned an invalid method `{}`", shaped.method))?;
    if !shaped.path.starts_with('/') || shaped.path.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(format!("returned an invalid path `{}`", shaped.path));
    }
    Ok(StepCall {
        method,
        path: shaped.path,
        headers: header_map(&shaped.headers)?,
        body: Bytes::from(shaped.body),
        ..given.clone()
    })
}

/// Headers a plugin returned, within limits.
pub(super) fn header_map(headers: &[wit::Header]) -> Result<HeaderMap, String> {
    check_headers(headers)?;
    let mut map = HeaderMap::with_capacity(headers.len());
    for header in headers {
        let (name, value) = header_pair(header)?;
        map.append(name, value);
    }
    Ok(map)
}

fn check_headers(headers: &[wit::Header]) -> Result<(), String> {
    let bytes: usize = headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    if headers.len() > PLUGIN_HEADERS_MAX || bytes > PLUGIN_HEADER_BYTES_MAX {
        return Err(format!(
            "returned {} headers ({bytes} bytes); the limits are {PLUGIN_HEADERS_MAX} and {PLUGIN_HEADER_BYTES_MAX}",
            headers.len()
        ));
    }
    Ok(())
}

fn header_pair(header: &wit::Header) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(header.name.as_bytes())
        .map_err(|_| format!("returned an invalid header name `{}`", header.name))?;
    let value = HeaderValue::from_str(&header.value)
        .map_err(|_| format!("returned an invalid value for header `{}`", header.name))?;
    Ok((name, value))
}

/// Applies `on-request` header edits: removals first, then each `set` replaces its name.
pub(super) fn apply_changes(
    changes: &wit::HeaderChanges,
    headers: &mut HeaderMap,
) -> Result<(), String> {
    let set = header_map(&changes.set)?;
    for name in &changes.remove {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(name);
        }
    }
    for name in set.keys() {
        headers.remove(name);
    }
    for (name, value) in &set {
        headers.append(name, value.clone());
    }
    Ok(())
}

/// A response a plugin returned, within limits.
pub(super) fn response(
    answer: wit::Response,
    body_bytes_max: usize,
) -> Result<Response<Full<Bytes>>, String> {
    if answer.body.len() > body_bytes_max {
        return Err(format!(
            "answered with a {}-byte body; the limit is {body_bytes_max}",
            answer.body.len()
        ));
    }
    let status = StatusCode::from_u16(answer.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| format!("answered with status {}", answer.status))?;
    let headers = header_map(&answer.headers)?;
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// A response as plugins see it.
pub(super) async fn wit_response(response: &Response<Full<Bytes>>) -> wit::Response {
    use http_body_util::BodyExt;
    let body = response
        .body()
        .clone()
        .collect()
        .await
        .map(|c| c.to_bytes());
    wit::Response {
        status: response.status().as_u16(),
        headers: wit_headers(response.headers()),
        body: body.map(|b| b.to_vec()).unwrap_or_default(),
    }
}

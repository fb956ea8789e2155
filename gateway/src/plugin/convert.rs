//! The plugin boundary: the gateway's own types to WIT types and back. What a plugin returns
//! is checked here before the gateway uses it (sizes, header names and values, methods, paths);
//! a plugin never changes a saga call's identity (saga, step, phase, request id, and the
//! headers that carry them), and never writes framing: the gateway computes `Content-Length`
//! from the body it sends. A length a plugin chose could disagree with the body and
//! desynchronise a keep-alive connection, so the next response read on it would be forged.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

use super::bindings::txgate::plugin::types as wit;
use super::reuse::Changes;
use super::view::ResponseFacts;
use crate::step::{Phase, StepCall, Verdict};

/// Most headers a plugin may return in one answer or edit.
const PLUGIN_HEADERS_MAX: usize = 256;
/// Most header bytes (names plus values) a plugin may return in one answer or edit.
const PLUGIN_HEADER_BYTES_MAX: usize = 64 * 1024;

/// Headers only the gateway writes: the message's framing and the connection's own headers.
static FRAMING: [HeaderName; 7] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// With the backend contract's headers, what carries a saga call's identity (SPEC §4): a
/// plugin never changes them.
static IDEMPOTENCY_KEY: [HeaderName; 1] = [HeaderName::from_static("idempotency-key")];

/// A phase as plugins see it.
pub(super) fn wit_phase(phase: Phase) -> wit::Phase {
    match phase {
        Phase::Action => wit::Phase::Action,
        Phase::Compensate => wit::Phase::Compensate,
        Phase::Try => wit::Phase::Try,
        Phase::Confirm => wit::Phase::Confirm,
        Phase::Cancel => wit::Phase::Cancel,
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

/// A saga call with a plugin's changes applied, checked. The call's identity is never
/// changed: only the method, path, headers and body are open to a plugin.
pub(super) fn changed_call(
    changes: wit::CallChanges,
    given: &StepCall,
    body_bytes_max: usize,
) -> Result<StepCall, String> {
    let mut call = given.clone();
    if let Some(method) = changes.method {
        call.method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("returned an invalid method `{method}`"))?;
    }
    if let Some(path) = changes.path {
        if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(format!("returned an invalid path `{path}`"));
        }
        // Checked as a client's path is: a dot-segment would reach what the route never names.
        let bare = path.split('?').next().unwrap_or_default();
        crate::request_path::check(bare)
            .map_err(|_| format!("returned the path `{path}`, which has a dot-segment"))?;
        call.path = path;
    }
    refuse_reserved(
        &changes.headers,
        &[&IDEMPOTENCY_KEY, &crate::saga::BACKEND_CONTRACT_HEADERS],
        "the saga call's identity",
    )?;
    let mut edits = Edits::parse(&changes.headers)?;
    if let Some(body) = changes.body {
        if body.len() > body_bytes_max {
            return Err(format!("returned a {}-byte call body", body.len()));
        }
        call.body = Bytes::from(body);
        // The gateway frames the new body itself.
        edits.removed.push(header::CONTENT_LENGTH);
    }
    edits.check_result(&call.headers)?;
    edits.apply(&mut call.headers);
    Ok(call)
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
    let bytes = headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    within_limits("returned", headers.len(), bytes)
}

fn within_limits(what: &str, count: usize, bytes: usize) -> Result<(), String> {
    if count > PLUGIN_HEADERS_MAX || bytes > PLUGIN_HEADER_BYTES_MAX {
        return Err(format!(
            "{what} {count} headers ({bytes} bytes); the limits are {PLUGIN_HEADERS_MAX} and {PLUGIN_HEADER_BYTES_MAX}"
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

/// Refuses edits of headers in `reserved`, naming the first.
fn refuse_reserved(
    changes: &wit::HeaderChanges,
    reserved: &[&[HeaderName]],
    what: &str,
) -> Result<(), String> {
    let edited = changes
        .set
        .iter()
        .map(|h| h.name.as_str())
        .chain(changes.remove.iter().map(String::as_str));
    for name in edited {
        if reserved
            .iter()
            .flat_map(|names| names.iter())
            .any(|r| r.as_str().eq_ignore_ascii_case(name.trim()))
        {
            return Err(format!(
                "tried to change `{name}`, part of {what}, which only the gateway writes"
            ));
        }
    }
    Ok(())
}

/// A plugin's header edits, checked and parsed: nothing is applied until all of them are. A
/// remembered decision (`reuse.rs`) keeps them in this form, so that giving it again parses
/// nothing.
#[derive(Debug, Clone, Default)]
pub(super) struct Edits {
    removed: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
}

impl Edits {
    /// Checks and parses `changes`; framing headers are refused.
    pub(super) fn parse(changes: &wit::HeaderChanges) -> Result<Self, String> {
        if changes.set.is_empty() && changes.remove.is_empty() {
            // Most calls change nothing.
            return Ok(Self::default());
        }
        refuse_reserved(changes, &[&FRAMING], "the message's framing")?;
        check_headers(&changes.set)?;
        let set = changes
            .set
            .iter()
            .map(header_pair)
            .collect::<Result<Vec<_>, _>>()?;
        // A name no header can have removes nothing.
        let removed = changes
            .remove
            .iter()
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        Ok(Self { removed, set })
    }

    /// Refuses edits that would leave `headers` over the limits, reckoned before they are
    /// applied, so that a refused edit leaves the headers as they were.
    fn check_result(&self, headers: &HeaderMap) -> Result<(), String> {
        let mut count = headers.len();
        let mut bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        let mut gone: Vec<&HeaderName> = Vec::new();
        for name in self.names() {
            if gone.contains(&name) {
                continue;
            }
            gone.push(name);
            for value in headers.get_all(name) {
                count -= 1;
                bytes -= name.as_str().len() + value.len();
            }
        }
        count += self.set.len();
        bytes += self
            .set
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum::<usize>();
        within_limits("left", count, bytes)
    }

    /// Every name the edits take away before the `set` headers go in: the removed ones, and
    /// each name `set` replaces.
    fn names(&self) -> impl Iterator<Item = &HeaderName> {
        let replaced = self.set.iter().map(|(name, _)| name);
        self.removed.iter().chain(replaced)
    }

    /// Whether the edits change nothing.
    pub(super) fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.set.is_empty()
    }

    /// Removals first, then each `set` replaces its name.
    pub(super) fn apply(&self, headers: &mut HeaderMap) {
        for name in self.names() {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            // Copied, not cloned: a clone shares the remembered bytes' reference count, which
            // every worker would bump on every request given the decision, moving its cache
            // line between cores. `chain/rate_limit_add_header/two_workers`, in alternating
            // runs: 6.7 to 7.1 µs per request with clones (seven runs), 4.2 to 7.0 µs with
            // copies (six); on one worker the same.
            let name = HeaderName::from_bytes(name.as_str().as_bytes()).expect("a parsed name");
            let value = HeaderValue::from_bytes(value.as_bytes()).expect("a parsed value");
            headers.append(name, value);
        }
    }
}

/// A plugin's `on-response` changes of the status and headers, checked and parsed; the form a
/// remembered one is kept in.
#[derive(Debug, Clone)]
pub(super) struct ResponseEdits {
    status: Option<StatusCode>,
    headers: Edits,
}

impl ResponseEdits {
    /// Checks and parses a status and header edits.
    pub(super) fn parse(
        status_code: Option<u16>,
        headers: &wit::HeaderChanges,
    ) -> Result<Self, String> {
        Ok(Self {
            status: status_code.map(status).transpose()?,
            headers: Edits::parse(headers)?,
        })
    }

    /// Applies the edits, and a new body if there is one (checked by [`new_body`]), to the
    /// response, within limits; refused, the response is left as it was.
    pub(super) fn apply(
        &self,
        response: &mut ResponseFacts,
        body: Option<Bytes>,
    ) -> Result<(), String> {
        let Some(body) = body else {
            return self.edit(&self.headers, &mut response.status, &mut response.headers);
        };
        // The gateway frames the new body itself (hyper writes its exact length).
        let mut framed = self.headers.clone();
        framed.removed.push(header::CONTENT_LENGTH);
        framed.removed.push(header::TRANSFER_ENCODING);
        self.edit(&framed, &mut response.status, &mut response.headers)?;
        response.body = body;
        Ok(())
    }

    /// Applies the edits to a response's head, within limits; refused, it is left as it was.
    pub(super) fn apply_to(&self, head: &mut http::response::Parts) -> Result<(), String> {
        self.edit(&self.headers, &mut head.status, &mut head.headers)
    }

    fn edit(
        &self,
        edits: &Edits,
        status: &mut StatusCode,
        headers: &mut HeaderMap,
    ) -> Result<(), String> {
        edits.check_result(headers)?;
        // Checked whole: from here on nothing can fail.
        edits.apply(headers);
        if let Some(new) = self.status {
            *status = new;
        }
        Ok(())
    }
}

impl Changes for Edits {
    /// Header names and values, in bytes: what remembering them costs.
    fn bytes(&self) -> usize {
        let set: usize = (self.set.iter())
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        set + self
            .removed
            .iter()
            .map(|name| name.as_str().len())
            .sum::<usize>()
    }
}

impl Changes for ResponseEdits {
    fn bytes(&self) -> usize {
        self.headers.bytes()
    }
}

/// A new body a plugin returned, within `body_bytes_max`.
pub(super) fn new_body(
    body: Option<Vec<u8>>,
    body_bytes_max: usize,
) -> Result<Option<Bytes>, String> {
    body.map(|new| self::body(new, body_bytes_max)).transpose()
}

/// A response a plugin answered with, within limits.
pub(super) fn answer(
    answer: wit::Answer,
    body_bytes_max: usize,
) -> Result<Response<Full<Bytes>>, String> {
    let status = status(answer.status)?;
    let body = body(answer.body, body_bytes_max)?;
    let mut headers = header_map(&answer.headers)?;
    // A whole answer (a replay, a refusal) is framed by the gateway for the body it carries.
    for name in &FRAMING {
        headers.remove(name);
    }
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

fn status(code: u16) -> Result<StatusCode, String> {
    StatusCode::from_u16(code)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| format!("answered with status {code}"))
}

fn body(body: Vec<u8>, body_bytes_max: usize) -> Result<Bytes, String> {
    if body.len() > body_bytes_max {
        return Err(format!(
            "answered with a {}-byte body; the limit is {body_bytes_max}",
            body.len()
        ));
    }
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> wit::Header {
        wit::Header {
            name: name.into(),
            value: value.into(),
        }
    }

    fn changes(set: Vec<wit::Header>, remove: &[&str]) -> wit::HeaderChanges {
        wit::HeaderChanges {
            set,
            remove: remove.iter().map(|name| name.to_string()).collect(),
        }
    }

    fn response(headers: usize) -> ResponseFacts {
        let mut map = HeaderMap::new();
        map.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        for n in 1..headers {
            let name = HeaderName::from_bytes(format!("x-h{n}").as_bytes()).unwrap();
            map.insert(name, HeaderValue::from_static("v"));
        }
        ResponseFacts {
            status: StatusCode::OK,
            headers: map,
            body: Bytes::from_static(b"{}"),
        }
    }

    fn changed(change: wit::ResponseChanges, facts: &mut ResponseFacts) -> Result<(), String> {
        let body = new_body(change.body, 1024)?;
        ResponseEdits::parse(change.status, &change.headers)?.apply(facts, body)
    }

    #[test]
    fn a_response_change_applies_whole_and_the_gateway_frames_a_new_body() {
        let mut facts = response(3);
        let change = wit::ResponseChanges {
            status: Some(201),
            headers: changes(
                vec![header("x-h1", "new"), header("x-h1", "two")],
                &["x-h2"],
            ),
            body: Some(b"{\"a\":1}".to_vec()),
        };
        changed(change, &mut facts).unwrap();
        assert_eq!(facts.status, StatusCode::CREATED);
        let values: Vec<_> = facts.headers.get_all("x-h1").iter().collect();
        assert_eq!(
            values,
            ["new", "two"],
            "set replaces the name with every value given"
        );
        assert!(facts.headers.get("x-h2").is_none());
        assert!(facts.headers.get(header::CONTENT_LENGTH).is_none());
        assert_eq!(&facts.body[..], b"{\"a\":1}");
    }

    #[test]
    fn a_response_change_that_is_refused_changes_nothing() {
        let full = response(PLUGIN_HEADERS_MAX);
        let mut facts = full.clone();
        let change = wit::ResponseChanges {
            status: Some(500),
            headers: changes(vec![header("x-more", "v")], &[]),
            body: None,
        };
        let refused = changed(change, &mut facts).unwrap_err();
        assert!(refused.contains("left 257 headers"), "{refused}");
        assert_eq!(facts.status, full.status);
        assert_eq!(facts.headers, full.headers);
        // Replacing a header keeps the count: it fits.
        let change = wit::ResponseChanges {
            status: None,
            headers: changes(vec![header("x-h1", "w")], &["x-h1"]),
            body: None,
        };
        changed(change, &mut facts).unwrap();
        assert_eq!(facts.headers.len(), PLUGIN_HEADERS_MAX);
        let framing = wit::ResponseChanges {
            status: None,
            headers: changes(vec![header("Content-Length", "9")], &[]),
            body: None,
        };
        assert!(changed(framing, &mut facts).is_err());
        assert_eq!(facts.headers[header::CONTENT_LENGTH], "2");
    }
}

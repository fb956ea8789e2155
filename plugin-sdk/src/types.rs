//! The values hooks return (answers and changes), with helpers for headers, JSON bodies and
//! responses. What hooks are given is in `view.rs`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An HTTP header. Names are lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Lower-case name.
    pub name: String,
    /// Value.
    pub value: String,
}

impl Header {
    /// A header; the name is lower-cased.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into().to_ascii_lowercase(),
            value: value.into(),
        }
    }
}

/// Looks up the first value of a header, case-insensitively.
pub fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// A response: the one a plugin answers with in `on_request`
/// ([`RequestDecision::Respond`]), and what the test harness gives and returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<Header>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a status and no body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// A JSON response with `content-type: application/json`.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        Self::new(status)
            .with_header("content-type", "application/json")
            .with_body(body)
    }

    /// An RFC 9457 problem+json response, in the gateway's own style.
    pub fn problem(status: u16, slug: &str, title: &str, detail: &str, request_id: &str) -> Self {
        let body = serde_json::json!({
            "type": format!("urn:txgate:problem:{slug}"),
            "title": title,
            "status": status,
            "detail": detail,
            "request_id": request_id,
        });
        Self::new(status)
            .with_header("content-type", "application/problem+json")
            .with_body(body.to_string())
    }

    /// Sets a header (builder style), replacing earlier values of that name.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.set_header(name, value);
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Replaces every value of a header with one value.
    pub fn set_header(&mut self, name: &str, value: &str) {
        let header = Header::new(name, value);
        self.headers.retain(|h| h.name != header.name);
        self.headers.push(header);
    }

    /// The first value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body parsed as JSON.
    pub fn json_body<T: DeserializeOwned>(&self) -> Result<T, HookError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HookError::Failed(format!("response body is not the expected JSON: {e}")))
    }
}

/// Header edits: removals first, then each `set` replaces every value of its name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderChanges {
    /// Headers to set.
    pub set: Vec<Header>,
    /// Names to remove.
    pub remove: Vec<String>,
}

impl HeaderChanges {
    /// No edits.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a header to set (builder style).
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.set.push(Header::new(name, value));
        self
    }

    /// Adds a header to remove (builder style).
    pub fn remove(mut self, name: &str) -> Self {
        self.remove.push(name.to_ascii_lowercase());
        self
    }
}

/// Applies header edits to a list: removals first, then each `set` replaces its name.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn apply_header_changes(headers: &mut Vec<Header>, changes: &HeaderChanges) {
    headers.retain(|h| {
        !changes
            .remove
            .iter()
            .chain(changes.set.iter().map(|s| &s.name))
            .any(|name| name.eq_ignore_ascii_case(&h.name))
    });
    headers.extend(changes.set.iter().cloned());
}

/// What `on_response` changes in the response; what it leaves out stays as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseChanges {
    /// A new status code.
    pub status: Option<u16>,
    /// Header edits.
    pub headers: HeaderChanges,
    /// A new body.
    pub body: Option<Vec<u8>>,
}

impl ResponseChanges {
    /// No change: the response goes on as it is.
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets the status (builder style).
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets a header, replacing every value of its name (builder style).
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.headers = self.headers.set(name, value);
        self
    }

    /// Removes a header (builder style).
    pub fn remove(mut self, name: &str) -> Self {
        self.headers = self.headers.remove(name);
        self
    }

    /// Replaces the body (builder style).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// `response` with these changes applied, as the client would get it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn applied_to(&self, mut response: Response) -> Response {
        if let Some(status) = self.status {
            response.status = status;
        }
        apply_header_changes(&mut response.headers, &self.headers);
        if let Some(body) = &self.body {
            response.body = body.clone();
        }
        response
    }
}

/// What `on_step_request` or `on_compensate` changes in a saga call; what it leaves out stays
/// as it is. A call's identity (saga, step, phase, request ID) never changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallChanges {
    /// A new method.
    pub method: Option<String>,
    /// A new path and query (starting with `/`).
    pub path: Option<String>,
    /// Header edits.
    pub headers: HeaderChanges,
    /// A new body.
    pub body: Option<Vec<u8>>,
}

impl CallChanges {
    /// No change: the call is sent as it is.
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets the method (builder style).
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Sets the path and query (builder style).
    pub fn path(mut self, path: &str) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Sets a header, replacing every value of its name (builder style).
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.headers = self.headers.set(name, value);
        self
    }

    /// Removes a header (builder style).
    pub fn remove(mut self, name: &str) -> Self {
        self.headers = self.headers.remove(name);
        self
    }

    /// Replaces the body (builder style).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
}

/// The hooks of the WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `on_request`.
    OnRequest,
    /// `on_step_request`.
    OnStepRequest,
    /// `on_step_response`.
    OnStepResponse,
    /// `on_compensate`.
    OnCompensate,
    /// `on_response`.
    OnResponse,
}

/// What `on_request` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestDecision {
    /// Carry on, with these edits to the request headers.
    Continue(HeaderChanges),
    /// Answer the client now.
    Respond(Response),
}

impl RequestDecision {
    /// Carry on unchanged.
    pub fn pass() -> Self {
        Self::Continue(HeaderChanges::none())
    }
}

/// The phase of a saga call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Saga forward call.
    Action,
    /// Saga undo.
    Compensate,
    /// TCC reservation.
    Try,
    /// TCC commit.
    Confirm,
    /// TCC release.
    Cancel,
}

/// How a saga reads an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Success.
    Success,
    /// Business rejection.
    Reject,
    /// Retry.
    Retry,
}

/// What `on_compensate` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompensateDecision {
    /// Send the undo, with these changes (`CallChanges::none()`: as it is).
    Send(CallChanges),
    /// The step needs no undo.
    Skip,
}

/// Why a hook gave no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookError {
    /// A deliberate failure with a reason.
    Failed(String),
}

impl HookError {
    /// A deliberate failure.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self::Failed(reason.into())
    }
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for HookError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_ignores_case_and_set_replaces() {
        let mut response = Response::new(200).with_header("X-A", "1");
        response.set_header("x-a", "2");
        assert_eq!(response.header("X-a"), Some("2"));
        assert_eq!(response.headers.len(), 1);
    }

    #[test]
    fn request_id_header_fills_the_request_id() {
        let request = crate::Request::new("post", "/t").with_header("X-Request-ID", "abc");
        assert_eq!(request.method(), "POST");
        assert_eq!(request.request_id(), "abc");
        assert!(request.request_id_from_client());
    }

    #[test]
    fn changes_remove_then_set_and_keep_what_they_leave_out() {
        let sent = Response::new(200)
            .with_header("x-a", "1")
            .with_header("x-b", "2")
            .with_body("body");
        let changes = ResponseChanges::none().remove("X-A").set("x-b", "3");
        let changed = changes.applied_to(sent);
        assert_eq!(changed.header("x-a"), None);
        assert_eq!(changed.header("x-b"), Some("3"));
        assert_eq!(
            (changed.status, changed.body.as_slice()),
            (200, &b"body"[..])
        );
    }
}

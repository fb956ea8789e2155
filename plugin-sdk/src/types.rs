//! The values hooks receive and return, with helpers for headers, JSON bodies and responses.
//!
//! These mirror the records of `wit/plugin.wit` one for one; the SDK converts between them.

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

/// The client's request (see `on-request` in the WIT world).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The matched route's name.
    pub route: String,
    /// Upper-case method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Every header.
    pub headers: Vec<Header>,
    /// The whole body.
    pub body: Vec<u8>,
    /// The client's IP address.
    pub client_ip: String,
    /// `X-Request-ID` (the client's, or generated).
    pub request_id: String,
    /// Whether the client sent `X-Request-ID`.
    pub request_id_from_client: bool,
    /// Whether the route runs a saga.
    pub saga_route: bool,
}

impl Request {
    /// A request for tests: `method` on `path`, route `"test"`, client `127.0.0.1`, no request
    /// ID.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            route: "test".into(),
            method: method.to_ascii_uppercase(),
            path: path.into(),
            client_ip: "127.0.0.1".into(),
            ..Self::default()
        }
    }

    /// Adds a header (builder style). `x-request-id` also sets [`Request::request_id`].
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let header = Header::new(name, value);
        if header.name == "x-request-id" {
            self.request_id = value.into();
            self.request_id_from_client = true;
        }
        self.headers.push(header);
        self
    }

    /// Sets the body (builder style).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the route name (builder style).
    pub fn with_route(mut self, route: &str) -> Self {
        self.route = route.into();
        self
    }

    /// The first value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HookError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HookError::Failed(format!("request body is not the expected JSON: {e}")))
    }
}

/// A response.
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

/// One saga call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCall {
    /// Saga id.
    pub saga_id: String,
    /// Route name.
    pub route: String,
    /// Step name.
    pub step: String,
    /// Phase.
    pub phase: Phase,
    /// The client's `X-Request-ID`.
    pub request_id: String,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers.
    pub headers: Vec<Header>,
    /// Body.
    pub body: Vec<u8>,
}

impl StepCall {
    /// The first value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HookError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HookError::Failed(format!("step body is not the expected JSON: {e}")))
    }
}

/// What came back from a saga call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepAnswer {
    /// Status; `None` when no answer came.
    pub status: Option<u16>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Body.
    pub body: Vec<u8>,
    /// Why no answer came.
    pub error: Option<String>,
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
    /// Send this undo call.
    Send(StepCall),
    /// The step needs no undo.
    Skip,
}

/// Why a hook gave no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookError {
    /// The hook is not implemented; the gateway skips it from then on.
    NotImplemented,
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
            Self::NotImplemented => f.write_str("hook not implemented"),
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
        let request = Request::new("post", "/t").with_header("X-Request-ID", "abc");
        assert_eq!(request.method, "POST");
        assert_eq!(request.request_id, "abc");
        assert!(request.request_id_from_client);
    }
}

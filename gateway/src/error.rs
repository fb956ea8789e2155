//! The gateway's one error type, and the one place it becomes an HTTP response
//! ([`Error::into_response`], RFC 9457 problem+json).
//!
//! An error carries a [`ErrorKind`] (which fixes its status, title and whether a retry is safe), the
//! side it came from, a human-readable detail, and optionally its cause and extra response headers
//! (`Allow` on 405, `Retry-After` on 503).

use std::fmt;
use std::path::Path;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::config::ConfigIssue;

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong, at the granularity a client or operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed (bad header, bad body).
    BadRequest,
    /// `X-Request-ID` is missing where required, or not 1–255 visible ASCII characters.
    InvalidRequestId,
    /// No route matches the path, or the thing asked for does not exist (a saga id).
    NotFound,
    /// A route matches the path but not the method.
    MethodNotAllowed,
    /// The body is over `max_body_bytes`.
    PayloadTooLarge,
    /// The body did not arrive within `body_read_timeout_ms`.
    RequestTimeout,
    /// The request headers are over `max_header_bytes` or `max_header_count`.
    HeadersTooLarge,
    /// The request URI is longer than the gateway parses.
    UriTooLong,
    /// Missing or wrong admin token.
    Unauthorized,
    /// The operator's role does not allow the call (a `read` operator asking for a change).
    Forbidden,
    /// The target is not in a state that allows the call (an admin call on a finished saga).
    Conflict,
    /// Too many connections, or shutting down.
    Overloaded,
    /// The upstream refused or dropped the connection before any byte was sent.
    UpstreamConnect,
    /// The upstream did not answer within `timeout_ms`.
    UpstreamTimeout,
    /// The upstream's answer was broken (protocol error, reset mid-response).
    UpstreamProtocol,
    /// The upstream's body is over `max_response_bytes`.
    UpstreamResponseTooLarge,
    /// The upstream's circuit breaker is open.
    BreakerOpen,
    /// A plugin trapped, ran out of time or memory, and its policy is `reject`.
    PluginFailed,
    /// The config file is wrong; the detail lists every issue.
    Config,
    /// A reload failed (the new config is invalid, a plugin does not compile); the running
    /// config stays.
    ReloadFailed,
    /// The durable store failed or refused to start.
    Store,
    /// The store cannot write now (disk full, I/O error, database unreachable): new work is
    /// refused until it can.
    StoreUnavailable,
    /// An X-Request-ID was reused with another method, path or body.
    FingerprintMismatch,
    /// A reload asked for a change that needs a restart; nothing was applied.
    ReloadRefused,
    /// Anything else: a bug, or the operating system said no.
    Internal,
}

/// Which side of the gateway an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong.
    Downstream,
    /// A backend failed.
    Upstream,
    /// A plugin failed.
    Plugin,
    /// The gateway itself.
    Internal,
}

impl ErrorKind {
    /// The HTTP status this kind answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest | Self::InvalidRequestId => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Overloaded | Self::BreakerOpen | Self::PluginFailed | Self::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::FingerprintMismatch | Self::ReloadRefused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UpstreamConnect | Self::UpstreamProtocol | Self::UpstreamResponseTooLarge => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::ReloadFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Config | Self::Store | Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable slug, used in the problem `type` URI and in metrics.
    pub fn slug(self) -> &'static str {
        match self {
            Self::BadRequest => "bad-request",
            Self::InvalidRequestId => "invalid-request-id",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::PayloadTooLarge => "payload-too-large",
            Self::RequestTimeout => "request-timeout",
            Self::HeadersTooLarge => "headers-too-large",
            Self::UriTooLong => "uri-too-long",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Conflict => "conflict",
            Self::Overloaded => "overloaded",
            Self::UpstreamConnect => "upstream-connect",
            Self::UpstreamTimeout => "upstream-timeout",
            Self::UpstreamProtocol => "upstream-protocol",
            Self::UpstreamResponseTooLarge => "upstream-response-too-large",
            Self::BreakerOpen => "breaker-open",
            Self::PluginFailed => "plugin-failed",
            Self::Config => "config",
            Self::ReloadFailed => "reload-failed",
            Self::Store => "store",
            Self::StoreUnavailable => "store-unavailable",
            Self::FingerprintMismatch => "request-id-reused",
            Self::ReloadRefused => "reload-needs-restart",
            Self::Internal => "internal",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::BadRequest => "Bad request",
            Self::InvalidRequestId => "Missing or invalid X-Request-ID",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed on this route",
            Self::PayloadTooLarge => "Request body too large",
            Self::RequestTimeout => "Request body too slow",
            Self::HeadersTooLarge => "Request headers too large",
            Self::UriTooLong => "Request URI too long",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Not allowed for this operator",
            Self::Conflict => "Not allowed in the current state",
            Self::Overloaded => "Gateway overloaded",
            Self::UpstreamConnect => "Upstream unreachable",
            Self::UpstreamTimeout => "Upstream timed out",
            Self::UpstreamProtocol => "Upstream answered badly",
            Self::UpstreamResponseTooLarge => "Upstream response too large",
            Self::BreakerOpen => "Upstream circuit breaker open",
            Self::PluginFailed => "Plugin failed",
            Self::Config => "Configuration error",
            Self::ReloadFailed => "Reload failed; the running config stays",
            Self::Store => "Store error",
            Self::StoreUnavailable => "The store cannot write; retry later",
            Self::FingerprintMismatch => "X-Request-ID reused for a different request",
            Self::ReloadRefused => "This change needs a restart; nothing was reloaded",
            Self::Internal => "Internal error",
        }
    }

    /// The side the error came from.
    pub fn side(self) -> Side {
        match self {
            Self::BadRequest
            | Self::InvalidRequestId
            | Self::NotFound
            | Self::MethodNotAllowed
            | Self::PayloadTooLarge
            | Self::RequestTimeout
            | Self::HeadersTooLarge
            | Self::UriTooLong
            | Self::Unauthorized
            | Self::Forbidden
            | Self::Conflict
            | Self::FingerprintMismatch => Side::Downstream,
            Self::UpstreamConnect
            | Self::UpstreamTimeout
            | Self::UpstreamProtocol
            | Self::UpstreamResponseTooLarge
            | Self::BreakerOpen => Side::Upstream,
            Self::PluginFailed => Side::Plugin,
            Self::Overloaded
            | Self::Config
            | Self::ReloadFailed
            | Self::ReloadRefused
            | Self::Store
            | Self::StoreUnavailable
            | Self::Internal => Side::Internal,
        }
    }
}

/// The gateway's error.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    detail: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    cause: Option<Cause>,
}

impl Error {
    /// A new error with a detail for humans.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            headers: Vec::new(),
            cause: None,
        }
    }

    /// Every issue of a config file, one per line, each naming the file and the key.
    pub fn config(file: &Path, issues: Vec<ConfigIssue>) -> Self {
        let file = file.display();
        let lines: Vec<String> = issues.iter().map(|i| format!("{file}: {i}")).collect();
        Self::new(ErrorKind::Config, lines.join("\n"))
    }

    /// Attaches the underlying cause.
    pub fn with_cause(mut self, cause: impl Into<Cause>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// Adds a header to the error response (`Allow`, `Retry-After`).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The detail.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Whether the failed operation may be retried without applying anything twice.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::UpstreamConnect
                | ErrorKind::UpstreamTimeout
                | ErrorKind::UpstreamProtocol
                | ErrorKind::BreakerOpen
                | ErrorKind::Overloaded
                | ErrorKind::StoreUnavailable
        )
    }

    /// Whether the failed call provably never reached its upstream: no connection was made (or
    /// none in time), or the breaker refused it. Such a call applied nothing (SPEC §4).
    pub fn never_sent(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::UpstreamConnect | ErrorKind::BreakerOpen
        )
    }

    /// The RFC 9457 body.
    fn problem(&self, request_id: Option<&str>) -> Bytes {
        let problem = serde_json::json!({
            "type": format!("urn:txgate:problem:{}", self.kind.slug()),
            "title": self.kind.title(),
            "status": self.kind.status().as_u16(),
            "detail": self.detail,
            "request_id": request_id,
        });
        Bytes::from(problem.to_string())
    }

    /// The whole HTTP/1.1 response, for the rare place that writes bytes itself (an answer in
    /// place of hyper's own to an unparsable request); it closes the connection.
    pub fn to_http1_bytes(&self) -> Bytes {
        let status = self.kind.status();
        let body = self.problem(None);
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        );
        for (name, value) in &self.headers {
            if let Ok(value) = value.to_str() {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        Bytes::from(bytes)
    }

    /// The one place an error becomes an HTTP response: RFC 9457 problem+json.
    pub fn into_response(self, request_id: Option<&str>) -> Response<Full<Bytes>> {
        let status = self.kind.status();
        let mut response = Response::new(Full::new(self.problem(request_id)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.kind == ErrorKind::StoreUnavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            headers.insert(crate::request_id::HEADER, id);
        }
        response
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Config => write!(f, "{}", self.detail)?,
            kind => write!(f, "{}: {}", kind.title(), self.detail)?,
        }
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_json_carries_every_rfc9457_member() {
        let error = Error::new(ErrorKind::PayloadTooLarge, "body over 10 bytes");
        let response = error.into_response(Some("req-1"));
        assert_eq!(response.status(), 413);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(response.headers()["x-request-id"], "req-1");
    }

    #[test]
    fn only_failures_that_applied_nothing_are_retryable() {
        assert!(Error::new(ErrorKind::UpstreamConnect, "").is_retryable());
        assert!(!Error::new(ErrorKind::PayloadTooLarge, "").is_retryable());
        assert_eq!(ErrorKind::PluginFailed.side(), Side::Plugin);
    }
}

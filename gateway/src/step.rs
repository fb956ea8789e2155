//! One saga call as plain data: what the saga engine builds and sends, and what the plugins'
//! saga hooks read and reshape. The WIT types exist only inside `plugin/`, which converts to and
//! from these.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};

/// A call's phase: the last part of its `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Saga forward call.
    Action,
    /// Saga undo.
    Compensate,
    /// TCC reserve.
    Try,
    /// TCC commit.
    Confirm,
    /// TCC release.
    Cancel,
}

impl Phase {
    /// The name used in `Idempotency-Key` and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Action => "action",
            Self::Compensate => "compensate",
            Self::Try => "try",
            Self::Confirm => "confirm",
            Self::Cancel => "cancel",
        }
    }
}

/// One call a saga makes to an upstream.
#[derive(Debug, Clone)]
pub struct StepCall {
    /// The saga's id.
    pub saga_id: Arc<str>,
    /// The route's name.
    pub route: Arc<str>,
    /// The step's name.
    pub step: Arc<str>,
    /// Which call of the step.
    pub phase: Phase,
    /// The client's X-Request-ID.
    pub request_id: Arc<str>,
    /// Method.
    pub method: Method,
    /// Path and query on the step's upstream.
    pub path: String,
    /// Headers, the backend contract's included.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// What came back from one attempt of a call.
#[derive(Debug, Clone, Default)]
pub struct StepAnswer {
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// Why no answer came, when none did.
    pub error: Option<String>,
}

/// How an attempt's outcome is read (SPEC §4; plugins may override it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Success,
    /// A business rejection: any 4xx but 408, 425 and 429.
    Reject,
    /// Worth retrying with the same Idempotency-Key.
    Retry,
}

/// What `on-compensate` decided about an undo.
#[derive(Debug, Clone)]
pub enum UndoDecision {
    /// Send this call.
    Send(StepCall),
    /// The step needs no undo.
    Skip,
}

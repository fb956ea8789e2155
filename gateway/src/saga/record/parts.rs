//! The parts a saga's record is made of: its mode and status, where it is, each step's
//! progress, why it compensates, and the attempts operators see.

use serde::{Deserialize, Serialize};

use crate::step::Phase;

/// Saga, TCC, or a transactional message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Actions, compensations on failure.
    Saga,
    /// Tries, then confirms or cancels.
    Tcc,
    /// A message: prepared, then (once its service committed) delivered to every step, each
    /// until it takes it; never compensated (SPEC §9).
    Msg,
}

impl Mode {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Saga => "saga",
            Self::Tcc => "tcc",
            Self::Msg => "msg",
        }
    }
}

/// The status the admin API filters on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Running forward (actions, tries, confirms).
    Pending,
    /// Undoing after a failure.
    Compensating,
    /// An undo or confirm failed 20 times; still retried.
    Stuck,
    /// Every step applied.
    Completed,
    /// Every applied step undone (or resolved by an operator).
    Compensated,
}

impl Status {
    /// Whether the saga is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated)
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Compensating => "compensating",
            Self::Stuck => "stuck",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
        }
    }

    /// Parses an API name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Compensating,
            Self::Stuck,
            Self::Completed,
            Self::Compensated,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Where the saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Sending step `i`'s action or try.
    Forward(usize),
    /// Sending step `i`'s confirm (TCC).
    Confirm(usize),
    /// Sending step `i`'s compensation or cancel.
    Undo(usize),
    /// Over.
    Finished,
    /// A message waiting for its service's submit or abort, or the back-check's answer.
    Prepared,
}

/// An upstream's answer, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

/// What happened to a step's undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Undo {
    /// Not needed (yet, or at all).
    None,
    /// Sent (maybe more than once), not yet acknowledged.
    Sent,
    /// Acknowledged.
    Done,
    /// A plugin said the step needs no undo.
    Skipped,
}

/// One step's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState {
    /// The upstream may hold this step's effect: its forward call may have been sent (and, in a
    /// saga, was not rejected). Exactly these steps are undone on failure.
    pub touched: bool,
    /// The forward call's final answer, when one came.
    pub answer: Option<Answer>,
    /// The forward call succeeded.
    pub done: bool,
    /// The confirm was acknowledged (TCC).
    pub confirmed: bool,
    /// The undo.
    pub undo: Undo,
}

/// Why a saga compensates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// An upstream refused (4xx): the business said no.
    Rejected,
    /// An upstream stayed unavailable after its retries (the step is in doubt).
    Unavailable,
    /// A plugin failed before the call could be sent.
    Plugin,
    /// The step's upstream is not in the running config.
    Missing,
    /// An operator aborted the saga.
    Aborted,
}

/// The failure that started the compensation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The step that failed.
    pub step: usize,
    /// Why.
    pub cause: Cause,
    /// What went wrong, for humans.
    pub error: String,
}

/// How a forward call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// Why.
    pub cause: Cause,
    /// The upstream's last answer, when one came.
    pub answer: Option<Answer>,
    /// What went wrong, for humans.
    pub error: String,
    /// Whether an attempt may have applied the step: one that may have reached the backend
    /// without a definite answer (here or before a restart). For a rejection, only the attempts
    /// before it count: a backend's 409 "in progress" rejects a repeat, not the first call.
    pub reached: bool,
}

/// One call attempt, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Step index.
    pub step: usize,
    /// Phase.
    pub phase: Phase,
    /// When it started, ms since the Unix epoch.
    pub at_ms: u64,
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

//! A saga's durable record and the state machine that moves it.
//!
//! Every transition is a method that checks it is legal (an illegal one is a bug: it panics in
//! debug builds and is refused in release). A finished saga never moves again; a saga never goes
//! from compensating back to running forward.
//!
//! ```text
//!   Forward(0) ─ok─► Forward(1) ─ok─► … ─ok─► Completed            (saga)
//!   Forward(0) ─ok─► … ─ok─► Confirm(0) ─► … ─► Completed           (tcc)
//!   Forward(i) ─reject / in doubt─► Undo(j) ─► Undo(j-1) … ─► Compensated
//!   Undo(j) ─20 failures─► (status stuck, still Undo(j); retried) ─► Compensated
//! ```

use serde::{Deserialize, Serialize};

/// Most attempts kept per saga (the count of all is kept too).
pub(super) const ATTEMPTS_KEPT_MAX: usize = 64;
/// Consecutive failures of an undo or confirm after which a saga is `stuck`.
pub(super) const STUCK_AFTER_FAILURES: u32 = 20;

/// Saga or TCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Actions, compensations on failure.
    Saga,
    /// Tries, then confirms or cancels.
    Tcc,
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

/// A call's phase (the last part of its `Idempotency-Key`).
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
    /// The step's name.
    pub name: String,
    /// The upstream may hold this step's effect: its forward call was sent (and, in a saga, not
    /// rejected). Exactly these steps are undone on failure.
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

/// A saga, as stored (postcard) under `saga/<route>/<request id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaRecord {
    /// Saga id (UUID v7: sorts by creation time).
    pub id: String,
    /// Route name.
    pub route: String,
    /// The client's `X-Request-ID`.
    pub request_id: String,
    /// Saga or TCC.
    pub mode: Mode,
    /// Created, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last changed.
    pub updated_ms: u64,
    /// The client's `Content-Type`.
    pub content_type: Option<String>,
    /// The client's body.
    pub body: Vec<u8>,
    /// Status.
    pub status: Status,
    /// Stage.
    pub stage: Stage,
    /// Per-step progress.
    pub steps: Vec<StepState>,
    /// Why it compensates.
    pub failure: Option<Failure>,
    /// Consecutive failures of the current undo or confirm.
    pub failures_in_a_row: u32,
    /// An operator's note, when resolved by hand (JSON text).
    pub resolution: Option<String>,
    /// The most recent attempts.
    pub attempts: Vec<Attempt>,
    /// Every attempt ever made.
    pub attempts_total: u64,
}

impl SagaRecord {
    /// A new saga, about to send its first call (so step 0 is marked sent).
    pub fn new(
        id: String,
        route: String,
        request_id: String,
        mode: Mode,
        names: &[String],
    ) -> Self {
        let now = crate::store::now_unix_ms();
        let mut steps: Vec<StepState> = names
            .iter()
            .map(|name| StepState {
                name: name.clone(),
                touched: false,
                answer: None,
                done: false,
                confirmed: false,
                undo: Undo::None,
            })
            .collect();
        steps[0].touched = true;
        Self {
            id,
            route,
            request_id,
            mode,
            created_ms: now,
            updated_ms: now,
            content_type: None,
            body: Vec::new(),
            status: Status::Pending,
            stage: Stage::Forward(0),
            steps,
            failure: None,
            failures_in_a_row: 0,
            resolution: None,
            attempts: Vec::new(),
            attempts_total: 0,
        }
    }

    /// Encodes for the store.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a saga record always encodes")
    }

    /// Decodes from the store.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }

    fn touch(&mut self) {
        self.updated_ms = crate::store::now_unix_ms();
    }

    fn legal(&self, ok: bool, what: &str) -> bool {
        debug_assert!(
            ok,
            "illegal saga transition: {what} from {:?}/{:?}",
            self.status, self.stage
        );
        if !ok {
            tracing::error!(saga = %self.id, what, status = ?self.status, stage = ?self.stage, "illegal saga transition refused");
        }
        ok
    }

    /// Records an attempt (keeping the most recent ones).
    pub fn attempt(&mut self, attempt: Attempt) {
        if self.attempts.len() == ATTEMPTS_KEPT_MAX {
            self.attempts.remove(0);
        }
        self.attempts.push(attempt);
        self.attempts_total += 1;
    }

    /// Step `i`'s forward call succeeded: go to the next step, the confirms, or completion.
    pub fn forward_done(&mut self, i: usize, answer: Option<Answer>) {
        if !self.legal(
            self.stage == Stage::Forward(i) && self.status == Status::Pending,
            "forward_done",
        ) {
            return;
        }
        self.touch();
        let step = &mut self.steps[i];
        step.done = true;
        step.answer = answer;
        if i + 1 < self.steps.len() {
            self.steps[i + 1].touched = true;
            self.stage = Stage::Forward(i + 1);
        } else if self.mode == Mode::Tcc {
            self.stage = Stage::Confirm(0);
        } else {
            self.finish(Status::Completed);
        }
    }

    /// Step `i`'s forward call failed: compensate (or cancel) what may have been applied.
    pub fn forward_failed(
        &mut self,
        i: usize,
        cause: Cause,
        answer: Option<Answer>,
        error: String,
    ) {
        if !self.legal(
            self.stage == Stage::Forward(i) && self.status == Status::Pending,
            "forward_failed",
        ) {
            return;
        }
        self.touch();
        self.steps[i].answer = answer;
        // A rejected or unsent call applied nothing; one in doubt may have. TCC cancels every
        // step it tried: a cancel of nothing is a no-op for a backend that keeps the barrier.
        match (cause, self.mode) {
            (Cause::Plugin, _) | (Cause::Rejected, Mode::Saga) => self.steps[i].touched = false,
            _ => {}
        }
        self.failure = Some(Failure {
            step: i,
            cause,
            error,
        });
        self.status = Status::Compensating;
        self.next_undo(i + 1);
    }

    /// Moves to the highest step below `below` that still needs an undo, or finishes.
    fn next_undo(&mut self, below: usize) {
        let pending = (0..below).rev().find(|&j| {
            let step = &self.steps[j];
            step.touched && !matches!(step.undo, Undo::Done | Undo::Skipped)
        });
        match pending {
            Some(j) => self.stage = Stage::Undo(j),
            None => self.finish(Status::Compensated),
        }
    }

    /// Step `j`'s undo is about to be sent.
    pub fn undo_sending(&mut self, j: usize) {
        if self.legal(self.stage == Stage::Undo(j), "undo_sending") {
            self.touch();
            self.steps[j].undo = Undo::Sent;
        }
    }

    /// Step `j`'s undo was acknowledged, or skipped by a plugin.
    pub fn undo_done(&mut self, j: usize, skipped: bool) {
        if !self.legal(self.stage == Stage::Undo(j), "undo_done") {
            return;
        }
        self.touch();
        self.steps[j].undo = if skipped { Undo::Skipped } else { Undo::Done };
        self.failures_in_a_row = 0;
        if self.status == Status::Stuck {
            self.status = Status::Compensating;
        }
        self.next_undo(j);
    }

    /// Step `j`'s confirm was acknowledged (TCC).
    pub fn confirm_done(&mut self, j: usize) {
        if !self.legal(self.stage == Stage::Confirm(j), "confirm_done") {
            return;
        }
        self.touch();
        self.steps[j].confirmed = true;
        self.failures_in_a_row = 0;
        if self.status == Status::Stuck {
            self.status = Status::Pending;
        }
        if j + 1 < self.steps.len() {
            self.stage = Stage::Confirm(j + 1);
        } else {
            self.finish(Status::Completed);
        }
    }

    /// An undo or confirm failed once more. Returns whether the saga just became stuck.
    pub fn retry_failed(&mut self) -> bool {
        if !self.legal(
            matches!(self.stage, Stage::Undo(_) | Stage::Confirm(_)),
            "retry_failed",
        ) {
            return false;
        }
        self.touch();
        self.failures_in_a_row += 1;
        if self.failures_in_a_row >= STUCK_AFTER_FAILURES && self.status != Status::Stuck {
            self.status = Status::Stuck;
            return true;
        }
        false
    }

    /// A plugin refused to build an undo: the saga is stuck at once (it is never sent half-built).
    pub fn stuck_now(&mut self) {
        if self.legal(matches!(self.stage, Stage::Undo(_)), "stuck_now") {
            self.touch();
            self.status = Status::Stuck;
        }
    }

    /// An operator fixed the saga by hand: it is compensated, with their note.
    pub fn resolve(&mut self, note: String) -> bool {
        if !matches!(self.status, Status::Stuck | Status::Compensating) {
            return false;
        }
        self.touch();
        self.resolution = Some(note);
        self.finish(Status::Compensated);
        true
    }

    fn finish(&mut self, status: Status) {
        debug_assert!(status.is_final());
        self.status = status;
        self.stage = Stage::Finished;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saga(mode: Mode, steps: usize) -> SagaRecord {
        let names: Vec<String> = (0..steps).map(|i| format!("s{i}")).collect();
        SagaRecord::new("s".into(), "r".into(), "q".into(), mode, &names)
    }

    fn ok() -> Answer {
        Answer {
            status: 200,
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn saga_completes_step_by_step() {
        let mut record = saga(Mode::Saga, 2);
        record.forward_done(0, Some(ok()));
        assert_eq!(record.stage, Stage::Forward(1));
        assert!(record.steps[1].touched);
        record.forward_done(1, Some(ok()));
        assert_eq!(record.status, Status::Completed);
    }

    #[test]
    fn rejection_compensates_only_the_steps_before_it() {
        let mut record = saga(Mode::Saga, 3);
        record.forward_done(0, Some(ok()));
        record.forward_done(1, Some(ok()));
        record.forward_failed(
            2,
            Cause::Rejected,
            Some(Answer {
                status: 422,
                body: vec![],
            }),
            "no".into(),
        );
        assert_eq!(record.stage, Stage::Undo(1));
        record.undo_done(1, false);
        assert_eq!(record.stage, Stage::Undo(0));
        record.undo_done(0, false);
        assert_eq!(record.status, Status::Compensated);
    }

    #[test]
    fn a_step_in_doubt_is_compensated_too() {
        let mut record = saga(Mode::Saga, 2);
        record.forward_done(0, Some(ok()));
        record.forward_failed(1, Cause::Unavailable, None, "down".into());
        assert_eq!(record.stage, Stage::Undo(1));
    }

    #[test]
    fn rejection_at_the_first_step_needs_no_undo() {
        let mut record = saga(Mode::Saga, 2);
        record.forward_failed(0, Cause::Rejected, None, "no".into());
        assert_eq!(record.status, Status::Compensated);
    }

    #[test]
    fn tcc_confirms_after_every_try_and_cancels_everything_tried() {
        let mut done = saga(Mode::Tcc, 2);
        done.forward_done(0, Some(ok()));
        done.forward_done(1, Some(ok()));
        assert_eq!(done.stage, Stage::Confirm(0));
        done.confirm_done(0);
        done.confirm_done(1);
        assert_eq!(done.status, Status::Completed);
        let mut cancelled = saga(Mode::Tcc, 3);
        cancelled.forward_done(0, Some(ok()));
        cancelled.forward_failed(1, Cause::Rejected, None, "no".into());
        assert_eq!(
            cancelled.stage,
            Stage::Undo(1),
            "the rejected try is cancelled too"
        );
    }

    #[test]
    fn twenty_failures_make_it_stuck_and_success_unsticks() {
        let mut record = saga(Mode::Saga, 1);
        record.forward_failed(0, Cause::Unavailable, None, "down".into());
        let stuck: Vec<bool> = (0..STUCK_AFTER_FAILURES)
            .map(|_| record.retry_failed())
            .collect();
        assert_eq!(stuck.iter().filter(|s| **s).count(), 1);
        assert_eq!(record.status, Status::Stuck);
        record.undo_done(0, false);
        assert_eq!(record.status, Status::Compensated);
    }

    #[test]
    fn a_finished_saga_never_moves_again() {
        let mut record = saga(Mode::Saga, 1);
        record.forward_done(0, Some(ok()));
        let before = record.clone();
        let moved = std::panic::catch_unwind(move || {
            let mut record = record;
            record.forward_failed(0, Cause::Rejected, None, "late".into());
            record
        });
        // Debug builds assert (the closure panics); release builds refuse and change nothing.
        if let Ok(after) = moved {
            assert_eq!(after.status, before.status);
        }
    }

    #[test]
    fn only_stuck_or_compensating_sagas_can_be_resolved() {
        let mut running = saga(Mode::Saga, 1);
        assert!(!running.resolve("{}".into()));
        running.forward_failed(0, Cause::Unavailable, None, "down".into());
        assert!(running.resolve("{\"by\":\"ops\"}".into()));
        assert_eq!(running.status, Status::Compensated);
    }

    #[test]
    fn records_round_trip_through_the_store_encoding() {
        let mut record = saga(Mode::Tcc, 2);
        record.body = b"{\"amount\":1}".to_vec();
        record.attempt(Attempt {
            step: 0,
            phase: Phase::Try,
            at_ms: 1,
            status: Some(200),
            latency_ms: 3,
            error: None,
        });
        assert_eq!(SagaRecord::decode(&record.encode()), Some(record));
    }
}

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
//!
//! A step "may hold an effect" (`touched`) from the moment the saga moves to it: that state is
//! on disk before the first attempt, so after a crash the step counts as possibly sent. A step
//! whose every attempt provably failed before a byte was sent (connection refused, the breaker
//! open, no connection in time) holds nothing, and is not undone (SPEC §4). A submitted message
//! marks every step at once, since its steps are sent without a write between them.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::plan::PlannedStep;
use crate::step::Phase;

mod actions;
mod encoding;
mod keys;
mod msg;
mod parts;

pub(super) use actions::ActionOutcome;
pub use actions::{ActionKind, OperatorAction};
pub use keys::{ENGINE_KEY_PREFIX, is_engine_key};
pub use msg::MsgPlan;
pub(super) use parts::{Answer, Attempt, Cause, Failed, Failure, Stage, StepState, Undo};
pub use parts::{Mode, Status};

/// Most attempts kept per saga (the count of all is kept too).
pub(super) const ATTEMPTS_KEPT_MAX: usize = 64;
/// Consecutive failures of an undo or confirm after which a saga is `stuck`.
pub(super) const STUCK_AFTER_FAILURES: u32 = 20;

/// A saga, as stored (postcard) in its row's `record`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaRecord {
    /// Saga id (UUID v7: sorts by creation time).
    pub id: Arc<str>,
    /// Route name.
    pub route: Arc<str>,
    /// The client, by the route's `client_key` (empty: one shared client).
    pub client: Arc<str>,
    /// The client's `X-Request-ID`.
    pub request_id: Arc<str>,
    /// SHA-256 of the request's method, path and body: a repeat must match it.
    pub fingerprint: [u8; 32],
    /// Saga or TCC.
    pub mode: Mode,
    /// The steps and calls it runs, fixed when it started.
    pub plan: Arc<[PlannedStep]>,
    /// Created, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last changed.
    pub updated_ms: u64,
    /// The client's `Content-Type`.
    pub content_type: Option<String>,
    /// The client's body.
    pub body: Bytes,
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
    /// The secret the engine derives its `Idempotency-Key`s from (SPEC §3, §4): never shown to
    /// a client, so no client can send one of them first. `None` in records of the first
    /// encoding, whose keys were `<saga id>.<step>.<phase>`.
    pub key_secret: Option<[u8; 16]>,
    /// The route's plugins when the saga started, by name: its hooks keep running with them
    /// whatever the route is called later. `None` in records of the first encoding (the route's
    /// plugins, by the route's name).
    pub plugins: Option<Arc<[String]>>,
    /// Operators' actions, newest last (at most `ACTIONS_KEPT_MAX`). Stored after the rest
    /// (see `record/encoding.rs`), so records written before it had them still read.
    #[serde(skip)]
    pub actions: Vec<OperatorAction>,
    /// A message's back-check and timeout (`None` for sagas). Stored after the rest, like
    /// `actions`.
    #[serde(skip)]
    pub msg: Option<Arc<MsgPlan>>,
}

/// SHA-256 of a request's method, path and body: what a repeat of its X-Request-ID must match.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [method.as_bytes(), b"\n", path.as_bytes(), b"\n", body] {
        hash.update(part);
    }
    hash.finalize().into()
}

/// What a new saga starts from.
#[derive(Debug, Clone)]
pub struct NewSaga {
    /// Its id.
    pub id: Arc<str>,
    /// The route.
    pub route: Arc<str>,
    /// The client.
    pub client: Arc<str>,
    /// The X-Request-ID.
    pub request_id: Arc<str>,
    /// The request's fingerprint.
    pub fingerprint: [u8; 32],
    /// Saga or TCC.
    pub mode: Mode,
    /// The route's plan.
    pub plan: Arc<[PlannedStep]>,
    /// The client's `Content-Type`.
    pub content_type: Option<String>,
    /// The client's body.
    pub body: Bytes,
    /// The route's plugins, by name.
    pub plugins: Arc<[String]>,
    /// A message route's back-check.
    pub msg: Option<Arc<MsgPlan>>,
}

impl SagaRecord {
    /// A new saga, about to send its first call (so step 0 may hold an effect from now on).
    pub fn new(start: NewSaga) -> Self {
        let now = crate::store::now_unix_ms();
        let mut steps: Vec<StepState> = start
            .plan
            .iter()
            .map(|_| StepState {
                touched: false,
                answer: None,
                done: false,
                confirmed: false,
                undo: Undo::None,
            })
            .collect();
        // A message sends nothing until its service commits; a saga sends step 0 at once.
        let prepared = start.mode == Mode::Msg;
        steps[0].touched = !prepared;
        Self {
            id: start.id,
            route: start.route,
            client: start.client,
            request_id: start.request_id,
            fingerprint: start.fingerprint,
            mode: start.mode,
            plan: start.plan,
            created_ms: now,
            updated_ms: now,
            content_type: start.content_type,
            body: start.body,
            status: Status::Pending,
            stage: if prepared {
                Stage::Prepared
            } else {
                Stage::Forward(0)
            },
            steps,
            failure: None,
            failures_in_a_row: 0,
            resolution: None,
            attempts: Vec::new(),
            attempts_total: 0,
            key_secret: Some(uuid::Uuid::new_v4().into_bytes()),
            plugins: Some(start.plugins),
            actions: Vec::new(),
            msg: start.msg,
        }
    }

    /// The `Idempotency-Key` of step `i`'s call in `phase`: the same for every attempt, from
    /// any gateway, and different for every other call. Derived from the saga's secret, so a
    /// client that knows the saga id still cannot compute it.
    pub fn idempotency_key(&self, i: usize, phase: Phase) -> String {
        let step = self.step_name(i);
        let Some(secret) = self.key_secret else {
            return format!("{}.{step}.{}", self.id, phase.as_str());
        };
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [
            &secret[..],
            step.as_bytes(),
            b"\0",
            phase.as_str().as_bytes(),
        ] {
            hash.update(part);
        }
        let digest = hash.finalize();
        let mut key = String::with_capacity(ENGINE_KEY_PREFIX.len() + 32);
        key.push_str(ENGINE_KEY_PREFIX);
        for byte in &digest[..16] {
            key.push_str(&format!("{byte:02x}"));
        }
        key
    }

    /// A step's name.
    pub fn step_name(&self, i: usize) -> &str {
        self.plan.get(i).map_or("", |step| step.name.as_str())
    }

    /// The store's row: the indexed columns and the encoded record. A finished saga expires
    /// `retention_ms` after it finished.
    pub fn row(&self, retention_ms: u64) -> crate::store::SagaRow {
        crate::store::SagaRow {
            id: self.id.clone(),
            key: self.key(),
            status: self.status.as_str(),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            expires_at_ms: self
                .status
                .is_final()
                .then(|| self.updated_ms.saturating_add(retention_ms)),
            record: bytes::Bytes::from(self.encode()),
            replaces_bytes: 0,
            epoch: 1,
            admin: None,
        }
    }

    /// The saga's identity.
    pub fn key(&self) -> crate::store::SagaKey {
        crate::store::SagaKey {
            route: self.route.clone(),
            client: self.client.clone(),
            request_id: self.request_id.clone(),
        }
    }

    /// Encodes for the store: a version tag, then the record (see `record/encoding.rs`).
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decodes from the store, whichever encoding wrote it; `None` for bytes that are no
    /// record, or one of a newer encoding.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        encoding::decode(bytes)
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
        if !self.legal(self.forwarding(i), "forward_done") {
            return;
        }
        self.touch();
        self.status = Status::Pending;
        self.failures_in_a_row = 0;
        if self
            .failure
            .as_ref()
            .is_some_and(|f| f.cause == Cause::Missing)
        {
            self.failure = None;
        }
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

    /// Whether the saga is at step `i`'s forward call (running, or stuck there).
    fn forwarding(&self, i: usize) -> bool {
        self.stage == Stage::Forward(i) && matches!(self.status, Status::Pending | Status::Stuck)
    }

    /// Step `i`'s forward call failed: compensate (or cancel) what may have been applied.
    /// `reached` says whether any attempt may have put a byte on the wire, in this process or
    /// (for a resumed step) in an earlier one.
    pub fn forward_failed(&mut self, i: usize, failed: Failed) {
        if !self.legal(self.forwarding(i), "forward_failed") {
            return;
        }
        self.touch();
        self.steps[i].answer = failed.answer;
        // A rejection of the first attempt applied nothing, but TCC cancels every try it made:
        // a cancel of nothing is a no-op for a backend that keeps the barrier. A rejection after
        // an attempt in doubt (a timeout, then 409 "in progress") may sit on top of an effect
        // still to come, so the step stays compensable; the barrier makes the undo safe in
        // either order (SPEC §4). A call that never reached its backend applied nothing, and
        // its undo would wait on the same dead backend.
        self.steps[i].touched = match failed.cause {
            Cause::Rejected => self.mode == Mode::Tcc || failed.reached,
            Cause::Unavailable | Cause::Plugin | Cause::Missing | Cause::Aborted => failed.reached,
        };
        self.failure = Some(Failure {
            step: i,
            cause: failed.cause,
            error: failed.error,
        });
        self.status = Status::Compensating;
        self.failures_in_a_row = 0;
        self.next_undo(i + 1);
    }

    /// The saga cannot go on now (an upstream of its plan is missing): it is `stuck` where it
    /// is, and retried every `backoff_max_ms` until the config has it again or an operator
    /// resolves it.
    /// `i` is the step that cannot go on: the current one, or with a message delivered at once,
    /// any step still to take it.
    pub fn blocked(&mut self, i: usize, error: String) {
        if !self.legal(!self.status.is_final(), "blocked") {
            return;
        }
        self.touch();
        self.failures_in_a_row += 1;
        self.status = Status::Stuck;
        if self.failure.is_none() {
            self.failure = Some(Failure {
                step: i,
                cause: Cause::Missing,
                error,
            });
        }
    }

    /// The step the saga is at.
    pub fn current_step(&self) -> usize {
        match self.stage {
            Stage::Forward(i) | Stage::Confirm(i) | Stage::Undo(i) => i,
            Stage::Finished | Stage::Prepared => 0,
        }
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
    fn resolve(&mut self, note: String) -> bool {
        // A prepared message is aborted, never resolved: a resolve would drop it while its
        // service may still commit and submit.
        if !matches!(self.status, Status::Stuck | Status::Compensating)
            || self.stage == Stage::Prepared
        {
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
mod tests;

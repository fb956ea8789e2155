//! A transactional message's own transitions (SPEC §9). A message is a record of the saga
//! engine with `Mode::Msg`: it starts `Prepared` and sends nothing; its service's submit (or the
//! back-check's 200) moves it to delivering step 0, and its abort (or the back-check's 409)
//! finishes it, delivered nowhere. Delivering is the saga's forward stage, with a difference the
//! task keeps: a step is sent until it takes the message, never compensated.

use serde::{Deserialize, Serialize};

use super::{Answer, Cause, Failure, Mode, SagaRecord, Stage, Status};
use crate::saga::plan::PlannedCall;

/// A message route's back-check, fixed in the message when it is prepared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgPlan {
    /// The back-check call.
    pub check: PlannedCall,
    /// Its upstream, resolved against the running config when it is sent.
    pub check_upstream: String,
    /// Prepared this long without a submit or an abort: ask the back-check.
    pub prepare_timeout_ms: u64,
    /// Every step is delivered at once, not in order. Encoded after the plan (see
    /// `encoding.rs`), so that a message delivered in order is stored as before.
    #[serde(skip)]
    pub parallel: bool,
}

impl SagaRecord {
    /// The service committed: deliver. A message already submitted stays as it is (a repeat);
    /// one rolled back cannot be.
    pub fn submit(&mut self) -> Result<(), String> {
        match self.stage {
            Stage::Prepared => {
                self.touch();
                // It may have been stuck on a back-check it could not send; it is going now.
                self.status = Status::Pending;
                self.failure = None;
                self.stage = Stage::Forward(0);
                // Every step may be sent from now on without another write (at once, or in
                // order without a write between steps), so every step is marked now.
                for step in &mut self.steps {
                    step.touched = true;
                }
                self.failures_in_a_row = 0;
                Ok(())
            }
            _ if self.is_rolled_back() => Err("the message was rolled back".into()),
            _ => Ok(()),
        }
    }

    /// The service rolled back: the message finishes, delivered nowhere. A message rolled back
    /// already stays as it is; one submitted cannot be.
    pub fn roll_back(&mut self, why: String) -> Result<(), String> {
        match self.stage {
            Stage::Prepared => {
                self.touch();
                self.failure = Some(Failure {
                    step: 0,
                    cause: Cause::Aborted,
                    error: why,
                });
                self.finish(Status::Compensated);
                Ok(())
            }
            _ if self.is_rolled_back() => Ok(()),
            _ => Err(format!(
                "the message is {}: its service committed",
                self.msg_state()
            )),
        }
    }

    /// Whether the message's steps are delivered at once rather than in order.
    pub fn delivers_in_parallel(&self) -> bool {
        self.msg.as_ref().is_some_and(|plan| plan.parallel)
    }

    /// Whether step `i` is being delivered now: the message is delivering and it is the current
    /// step, or every step is sent at once and this one has not taken it yet.
    fn delivering(&self, i: usize) -> bool {
        self.mode == Mode::Msg
            && matches!(self.status, Status::Pending | Status::Stuck)
            && i < self.steps.len()
            && match self.stage {
                Stage::Forward(current) if self.delivers_in_parallel() => {
                    current <= i && !self.steps[i].done
                }
                Stage::Forward(current) => current == i,
                _ => false,
            }
    }

    /// Step `i` took the message, in order or at once. The current step becomes the first one
    /// still to take it; the message is delivered once every step took it.
    pub fn delivered(&mut self, i: usize, answer: Option<Answer>) {
        if !self.legal(self.delivering(i), "delivered") {
            return;
        }
        self.touch();
        self.steps[i].done = true;
        self.steps[i].answer = answer;
        // A refusal by another step still holds the message for its operator.
        if self.failure.as_ref().is_none_or(|f| f.step == i) {
            self.status = Status::Pending;
            self.failure = None;
            self.failures_in_a_row = 0;
        }
        match self.steps.iter().position(|step| !step.done) {
            Some(next) => {
                // Marked at the submit already; a record of an earlier build may not have it.
                self.steps[next].touched = true;
                self.stage = Stage::Forward(next);
            }
            None => self.finish(Status::Completed),
        }
    }

    /// Step `i`'s upstream and plugins are in the running config again (a message delivered at
    /// once): a block it caused no longer holds the message.
    pub fn unblocked(&mut self, i: usize) {
        if self
            .failure
            .as_ref()
            .is_some_and(|f| f.step == i && f.cause == Cause::Missing)
        {
            self.touch();
            self.failure = None;
            self.status = Status::Pending;
        }
    }

    /// Step `i` refused the message (a 4xx): it cannot be undone, so the message is stuck for
    /// an operator, and sent again every `backoff_max_ms` meanwhile.
    pub fn delivery_refused(&mut self, i: usize, answer: Option<Answer>, error: String) {
        if !self.legal(self.delivering(i), "delivery_refused") {
            return;
        }
        self.touch();
        self.steps[i].answer = answer;
        self.status = Status::Stuck;
        self.failures_in_a_row += 1;
        self.failure = Some(Failure {
            step: i,
            cause: Cause::Rejected,
            error,
        });
    }

    /// A delivery or back-check failed once more (a timeout, a 5xx, "still running").
    pub fn msg_retry(&mut self) {
        if self.legal(self.mode == Mode::Msg, "msg_retry") {
            self.touch();
            self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        }
    }

    /// Whether the message was rolled back (never delivered).
    pub fn is_rolled_back(&self) -> bool {
        self.mode == Mode::Msg
            && self.status == Status::Compensated
            && self.resolution.is_none()
            && self
                .failure
                .as_ref()
                .is_some_and(|f| f.cause == Cause::Aborted)
    }

    /// The message's state, as its service and operators read it: `prepared`, `submitted`
    /// (delivering), `delivered`, `aborted`, `stuck` or `resolved`.
    pub fn msg_state(&self) -> &'static str {
        match (self.stage, self.status) {
            (Stage::Prepared, _) => "prepared",
            (_, Status::Stuck) => "stuck",
            (_, Status::Completed) => "delivered",
            _ if self.is_rolled_back() => "aborted",
            (Stage::Finished, _) => "resolved",
            _ => "submitted",
        }
    }
}

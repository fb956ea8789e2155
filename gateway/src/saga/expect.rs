//! What a finished saga's record says each step left at its backend: what `txgate reconcile`
//! compares with the backend's own answer (SPEC §10).

use super::record::{Mode, SagaRecord, Status, Undo};
use crate::step::Phase;

/// What a step of a finished saga should have left at its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Its effect: the action applied (saga), or the try confirmed (TCC).
    Applied,
    /// Nothing: the step never ran, or it was compensated (or cancelled).
    Absent,
    /// The record cannot say: an operator resolved the saga by hand without the step's undo,
    /// or a plugin decided the step needed none.
    Unknown,
}

impl SagaRecord {
    /// What step `i` of this finished saga should hold at its backend (`None` while the saga is
    /// unfinished: its steps are still moving).
    pub fn expected(&self, i: usize) -> Option<Expected> {
        let step = self.steps.get(i)?;
        Some(match self.status {
            Status::Completed => Expected::Applied,
            Status::Compensated if !step.touched => Expected::Absent,
            // A message is never undone: what it delivered stays, resolved or not.
            Status::Compensated if self.mode == Mode::Msg && step.done => Expected::Applied,
            Status::Compensated => match step.undo {
                Undo::Done => Expected::Absent,
                Undo::Skipped => Expected::Unknown,
                Undo::None | Undo::Sent if self.resolution.is_some() => Expected::Unknown,
                // Compensated by the engine: every touched step's undo was acknowledged.
                Undo::None | Undo::Sent => Expected::Absent,
            },
            Status::Pending | Status::Compensating | Status::Stuck => return None,
        })
    }

    /// The phase whose key names step `i`'s effect: the action, or the try.
    pub fn effect_phase(&self) -> Phase {
        match self.mode {
            Mode::Saga | Mode::Msg => Phase::Action,
            Mode::Tcc => Phase::Try,
        }
    }
}

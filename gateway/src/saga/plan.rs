//! A saga's plan: its steps, each with its upstream's name and its calls, copied into the saga's
//! record when it starts. A saga finishes with the plan it started with, whatever the config
//! says later (SPEC §7): a reload or a restart with renamed routes, reordered steps or changed
//! calls never sends one of its calls to the wrong place.

use serde::{Deserialize, Serialize};

use crate::step::Phase;

/// `"POST /debit"`, as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCall {
    /// Upper-case method.
    pub method: String,
    /// Path and query on the step's upstream.
    pub path: String,
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// The step's name (in `Idempotency-Key` and `X-Saga-Step`).
    pub name: String,
    /// The upstream's name, resolved against the running config at each call.
    pub upstream: String,
    /// Action (saga) or try (TCC).
    pub forward: PlannedCall,
    /// Compensate (saga) or cancel (TCC).
    pub undo: PlannedCall,
    /// Confirm (TCC).
    pub confirm: Option<PlannedCall>,
}

impl PlannedStep {
    /// The call for a phase.
    pub fn call(&self, phase: Phase) -> &PlannedCall {
        match phase {
            Phase::Action | Phase::Try => &self.forward,
            Phase::Compensate | Phase::Cancel => &self.undo,
            Phase::Confirm => self.confirm.as_ref().unwrap_or(&self.forward),
        }
    }
}

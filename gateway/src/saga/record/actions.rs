//! Operators' actions in a saga's own timeline (SPEC §6): retry, resolve and abort, each with
//! who asked, when, why, and what came of it. Only the saga's task writes them, like every
//! other change of the record, so an action taken on any gateway of a fleet is recorded once,
//! fenced like the rest.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Cause, Failure, Mode, SagaRecord, Stage, Status};

/// Most actions kept per saga: the newest ones (a saga acted on more often than this needs
/// more than a timeline).
pub(super) const ACTIONS_KEPT_MAX: usize = 32;
/// The longest reason kept, in bytes.
pub(super) const REASON_BYTES_MAX: usize = 2048;

/// What an operator asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Send the stuck call again now.
    Retry,
    /// Fixed by hand: mark the saga compensated.
    Resolve,
    /// Stop going forward, and compensate every step that may hold an effect (a prepared
    /// message: roll it back).
    Abort,
    /// A message's service committed: deliver it.
    Submit,
}

impl ActionKind {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Resolve => "resolve",
            Self::Abort => "abort",
            Self::Submit => "submit",
        }
    }
}

/// What came of an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionOutcome {
    /// The saga did it.
    Applied,
    /// The saga could not, and says why (it had moved on meanwhile).
    Refused(String),
}

/// One operator action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAction {
    /// Unique: the admin call waits for this id to show in the record, and a request that
    /// reaches the saga twice is recorded once.
    pub id: Arc<str>,
    /// What.
    pub kind: ActionKind,
    /// Who (the operator's name).
    pub operator: Arc<str>,
    /// Why, as given.
    pub reason: String,
    /// When it was asked, ms since the Unix epoch.
    pub at_ms: u64,
    /// Resolve's JSON note.
    #[serde(default)]
    pub note: Option<String>,
    /// Set by the saga's task when it takes the action.
    #[serde(default)]
    pub outcome: Option<ActionOutcome>,
}

impl OperatorAction {
    /// A new action, asked now; the reason is cut to [`REASON_BYTES_MAX`].
    pub fn new(kind: ActionKind, operator: Arc<str>, mut reason: String) -> Self {
        if reason.len() > REASON_BYTES_MAX {
            let mut end = REASON_BYTES_MAX;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Self {
            id: Arc::from(uuid::Uuid::now_v7().to_string()),
            kind,
            operator,
            reason,
            at_ms: crate::store::now_unix_ms(),
            note: None,
            outcome: None,
        }
    }
}

impl SagaRecord {
    /// Whether the action with this id is in the timeline already.
    pub fn has_action(&self, id: &str) -> bool {
        self.actions.iter().any(|action| &*action.id == id)
    }

    /// Takes an operator's action: applies it when the saga's state allows, and records it
    /// either way. `reached`: whether the call of the step the saga is at may have reached its
    /// backend (an abort leaves a step that provably never did uncompensated, SPEC §4).
    pub fn take_action(&mut self, mut action: OperatorAction, reached: bool) {
        let outcome = match action.kind {
            ActionKind::Retry if self.status.is_final() => Err(self.state_words()),
            ActionKind::Retry => Ok(()),
            ActionKind::Resolve => {
                let note = action.note.clone().unwrap_or_else(|| "{}".into());
                if self.resolve(note) {
                    Ok(())
                } else {
                    Err(format!(
                        "{}; only a stuck or compensating saga can be resolved",
                        self.state_words()
                    ))
                }
            }
            ActionKind::Abort if self.stage == Stage::Prepared => {
                self.roll_back("aborted: the service rolled back".into())
            }
            ActionKind::Abort if self.mode == Mode::Msg => Err(format!(
                "{}; only a prepared message can be aborted",
                self.state_words()
            )),
            ActionKind::Abort => self.abort(reached),
            ActionKind::Submit if self.mode != Mode::Msg => {
                Err("only a message can be submitted".into())
            }
            ActionKind::Submit => self.submit(),
        };
        action.outcome = Some(match outcome {
            Ok(()) => ActionOutcome::Applied,
            Err(why) => ActionOutcome::Refused(why),
        });
        self.touch();
        if self.actions.len() == ACTIONS_KEPT_MAX {
            self.actions.remove(0);
        }
        self.actions.push(action);
    }

    /// Stops a saga going forward: compensates (or cancels) every step that may hold an effect.
    fn abort(&mut self, reached: bool) -> Result<(), String> {
        let Stage::Forward(i) = self.stage else {
            return Err(format!(
                "{}; only a saga still going forward can be aborted",
                self.state_words()
            ));
        };
        if !matches!(self.status, Status::Pending | Status::Stuck) {
            return Err(self.state_words());
        }
        self.steps[i].touched = reached;
        self.failure = Some(Failure {
            step: i,
            cause: Cause::Aborted,
            error: "aborted by an operator".into(),
        });
        self.status = Status::Compensating;
        self.failures_in_a_row = 0;
        self.next_undo(i + 1);
        Ok(())
    }

    fn state_words(&self) -> String {
        let at = match self.stage {
            Stage::Forward(i) => format!(" at step `{}`", self.step_name(i)),
            Stage::Confirm(i) => format!(" confirming step `{}`", self.step_name(i)),
            Stage::Undo(i) => format!(" undoing step `{}`", self.step_name(i)),
            Stage::Finished | Stage::Prepared => String::new(),
        };
        if self.mode == Mode::Msg {
            return format!("the message is {}{at}", self.msg_state());
        }
        format!("the saga is {}{at}", self.status.as_str())
    }
}

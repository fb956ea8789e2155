//! The hooks of the plugin world, as the gateway names them: in metrics labels, and in the set
//! of hooks each plugin says it implements (asked once, at load).

use super::bindings::txgate::plugin::types as wit;

/// The hooks, for metrics labels and the set each plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `on-request`.
    OnRequest = 0,
    /// `on-step-request`.
    OnStepRequest = 1,
    /// `on-step-response`.
    OnStepResponse = 2,
    /// `on-compensate`.
    OnCompensate = 3,
    /// `on-response`.
    OnResponse = 4,
}

impl Hook {
    /// The WIT name.
    pub fn name(self) -> &'static str {
        match self {
            Self::OnRequest => "on-request",
            Self::OnStepRequest => "on-step-request",
            Self::OnStepResponse => "on-step-response",
            Self::OnCompensate => "on-compensate",
            Self::OnResponse => "on-response",
        }
    }

    /// The hook the WIT enum names.
    pub(super) fn of(hook: wit::Hook) -> Self {
        match hook {
            wit::Hook::OnRequest => Self::OnRequest,
            wit::Hook::OnStepRequest => Self::OnStepRequest,
            wit::Hook::OnStepResponse => Self::OnStepResponse,
            wit::Hook::OnCompensate => Self::OnCompensate,
            wit::Hook::OnResponse => Self::OnResponse,
        }
    }
}

/// Every hook, in the order of their metrics.
pub(super) const HOOKS: [Hook; 5] = [
    Hook::OnRequest,
    Hook::OnStepRequest,
    Hook::OnStepResponse,
    Hook::OnCompensate,
    Hook::OnResponse,
];

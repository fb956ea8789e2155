//! A saga route's steps, resolved from the config: each step's upstream and its calls.

use std::sync::Arc;

use crate::config::{Call, RouteConfig, SagaMode, parse_call};
use crate::error::{Error, ErrorKind};
use crate::metrics::Name;
use crate::upstream::{Upstream, Upstreams};

use super::record::{Mode, Phase};

/// One step.
#[derive(Debug)]
pub struct SagaStep {
    /// Step name.
    pub name: String,
    /// Its upstream.
    pub upstream: Arc<Upstream>,
    /// Action (saga) or try (TCC).
    pub forward: Call,
    /// Compensate (saga) or cancel (TCC).
    pub undo: Call,
    /// Confirm (TCC).
    pub confirm: Option<Call>,
}

impl SagaStep {
    /// The configured call for a phase.
    pub fn call(&self, phase: Phase) -> &Call {
        match phase {
            Phase::Action | Phase::Try => &self.forward,
            Phase::Compensate | Phase::Cancel => &self.undo,
            Phase::Confirm => self.confirm.as_ref().unwrap_or(&self.forward),
        }
    }
}

/// A saga or TCC route.
#[derive(Debug)]
pub struct SagaRoute {
    /// Route name.
    pub name: Name,
    /// Saga or TCC.
    pub mode: Mode,
    /// Steps in order.
    pub steps: Vec<SagaStep>,
}

impl SagaRoute {
    /// Resolves a validated route config.
    pub fn new(route: &RouteConfig, upstreams: &Upstreams) -> Result<Self, Error> {
        let saga = route.saga.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("route `{}` has no saga", route.name),
            )
        })?;
        let call = |text: &Option<String>, what: &str| -> Result<Call, Error> {
            let text = text.as_deref().ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!("route `{}`: a step lacks `{what}`", route.name),
                )
            })?;
            parse_call(text).map_err(|reason| Error::new(ErrorKind::Config, reason))
        };
        let steps = saga
            .steps
            .iter()
            .map(|step| {
                let upstream = upstreams.get(&step.upstream).cloned().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        format!("unknown upstream `{}`", step.upstream),
                    )
                })?;
                let (forward, undo, confirm) = match saga.mode {
                    SagaMode::Saga => (
                        call(&step.action, "action")?,
                        call(&step.compensate, "compensate")?,
                        None,
                    ),
                    SagaMode::Tcc => (
                        call(&step.try_call, "try")?,
                        call(&step.cancel, "cancel")?,
                        Some(call(&step.confirm, "confirm")?),
                    ),
                };
                Ok(SagaStep {
                    name: step.name.clone(),
                    upstream,
                    forward,
                    undo,
                    confirm,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self {
            name: Arc::new(route.name.clone()),
            mode: match saga.mode {
                SagaMode::Saga => Mode::Saga,
                SagaMode::Tcc => Mode::Tcc,
            },
            steps,
        })
    }

    /// The forward phase's name in this mode.
    pub fn forward_phase(&self) -> Phase {
        match self.mode {
            Mode::Saga => Phase::Action,
            Mode::Tcc => Phase::Try,
        }
    }

    /// The undo phase's name in this mode.
    pub fn undo_phase(&self) -> Phase {
        match self.mode {
            Mode::Saga => Phase::Compensate,
            Mode::Tcc => Phase::Cancel,
        }
    }
}

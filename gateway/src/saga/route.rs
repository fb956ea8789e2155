//! A saga route, resolved from the config: its mode, how it tells clients apart, and the plan
//! every new saga on it starts with. A message route (`[routes.msg]`) is one too, in
//! `Mode::Msg`, with its back-check.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use super::plan::{PlannedCall, PlannedStep};
use super::record::{Mode, MsgPlan};
use crate::config::{RouteConfig, SagaMode, StepConfig, parse_call};
use crate::error::{Error, ErrorKind};
use crate::metrics::Name;
use crate::step::Phase;

/// Whose X-Request-IDs are kept apart (`[routes.saga] client_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    /// One shared client.
    Shared,
    /// The value of a request header (absent: the shared client).
    Header(HeaderName),
    /// The client's IP address.
    Ip,
}

impl ClientKey {
    /// Parses `""`, `"ip"` or `"header:NAME"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "" => Ok(Self::Shared),
            "ip" => Ok(Self::Ip),
            _ => text
                .strip_prefix("header:")
                .and_then(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
                .map(Self::Header)
                .ok_or_else(|| format!("`{text}` is not \"ip\" or \"header:NAME\"")),
        }
    }

    /// The client a request belongs to.
    pub fn client_of(&self, headers: &HeaderMap, ip: IpAddr) -> String {
        match self {
            Self::Shared => String::new(),
            Self::Header(name) => headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default(),
            Self::Ip => ip.to_string(),
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
    /// How clients are told apart.
    pub client_key: ClientKey,
    /// The steps every new saga of the route runs.
    pub plan: Arc<[PlannedStep]>,
    /// The route's plugins, by name: a saga keeps running its hooks with them.
    pub plugins: Arc<[String]>,
    /// A message route's back-check.
    pub msg: Option<Arc<MsgPlan>>,
    /// A message route's path prefix: its submit and abort calls are under it.
    pub prefix: Option<String>,
}

impl SagaRoute {
    /// Resolves a validated route config.
    pub fn new(route: &RouteConfig) -> Result<Self, Error> {
        let fail = |reason: String| {
            Error::new(
                ErrorKind::Config,
                format!("route `{}`: {reason}", route.name),
            )
        };
        let (mode, client_key, steps, msg) = match (&route.saga, &route.msg) {
            (Some(saga), _) => (saga.mode, &saga.client_key, &saga.steps, None),
            (None, Some(msg)) => {
                let check = planned(&msg.check).map_err(&fail)?;
                let plan = MsgPlan {
                    check,
                    check_upstream: msg.check_upstream.clone(),
                    prepare_timeout_ms: msg.prepare_timeout_ms,
                    parallel: msg.parallel,
                };
                (
                    SagaMode::Msg,
                    &msg.client_key,
                    &msg.steps,
                    Some(Arc::new(plan)),
                )
            }
            (None, None) => return Err(fail("has no saga".into())),
        };
        let plan = steps
            .iter()
            .map(|step| planned_step(step, mode).map_err(&fail))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self {
            name: Arc::new(route.name.clone()),
            mode: match mode {
                SagaMode::Saga => Mode::Saga,
                SagaMode::Tcc => Mode::Tcc,
                SagaMode::Msg => Mode::Msg,
            },
            client_key: ClientKey::parse(client_key).map_err(fail)?,
            plan: plan.into(),
            plugins: route.plugins.clone().into(),
            msg,
            prefix: route.path_prefix.clone(),
        })
    }
}

fn planned(text: &str) -> Result<PlannedCall, String> {
    let call = parse_call(text)?;
    Ok(PlannedCall {
        method: call.method.to_string(),
        path: call.path,
    })
}

/// A step's calls in a mode. A message's step has only its action: it is never undone, so its
/// plan's undo repeats the action and is never sent.
fn planned_step(step: &StepConfig, mode: SagaMode) -> Result<PlannedStep, String> {
    let call = |text: &Option<String>, what: &str| -> Result<PlannedCall, String> {
        planned(
            text.as_deref()
                .ok_or_else(|| format!("a step lacks `{what}`"))?,
        )
    };
    let (forward, undo, confirm) = match mode {
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
        SagaMode::Msg => {
            let action = call(&step.action, "action")?;
            (action.clone(), action, None)
        }
    };
    Ok(PlannedStep {
        name: step.name.clone(),
        upstream: step.upstream.clone(),
        forward,
        undo,
        confirm,
    })
}

/// The forward phase's name in a mode.
pub(super) fn forward_phase(mode: Mode) -> Phase {
    match mode {
        Mode::Saga | Mode::Msg => Phase::Action,
        Mode::Tcc => Phase::Try,
    }
}

/// The undo phase's name in a mode.
pub(super) fn undo_phase(mode: Mode) -> Phase {
    match mode {
        Mode::Saga | Mode::Msg => Phase::Compensate,
        Mode::Tcc => Phase::Cancel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_parse_and_pick_the_client() {
        let mut headers = HeaderMap::new();
        headers.insert("x-client-id", "acme".parse().unwrap());
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let header = ClientKey::parse("header:x-client-id").unwrap();
        assert_eq!(header.client_of(&headers, ip), "acme");
        assert_eq!(header.client_of(&HeaderMap::new(), ip), "");
        assert_eq!(
            ClientKey::parse("ip").unwrap().client_of(&headers, ip),
            "127.0.0.2"
        );
        assert_eq!(ClientKey::parse("").unwrap(), ClientKey::Shared);
        assert!(ClientKey::parse("cookie:x").is_err());
    }
}

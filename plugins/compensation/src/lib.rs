//! # txgate-plugin-compensation
//!
//! Shapes how a saga is undone (SPEC §5.1):
//!
//! - `classify`: a table from upstream status to `"success"`, `"reject"` or `"retry"`,
//!   overriding the gateway's reading of saga answers (for example, a backend that answers 409 to
//!   an action it already applied).
//! - `steps.<step>.compensate_body`: a JSON template for the step's compensation (or cancel)
//!   body, filled from the action's JSON request and response and the saga id (`template.rs`).
//!   A path that does not exist makes the hook fail on purpose: the gateway logs and counts it,
//!   the saga becomes `stuck`, and the compensation is never sent half-filled.
//! - `steps.<step>.skip_compensation = true`: the step needs no undo.
//!
//! Steps with no template get the action's original body. A plugin with no `classify` table
//! is never called on saga answers, and one with no `steps` never on compensations.

mod template;

use std::collections::BTreeMap;

use serde::Deserialize;
use template::{Sources, fill};
use txgate_plugin_sdk::serde_json::{self, Value};
use txgate_plugin_sdk::{
    CallChanges, Classification, CompensateDecision, Hook, HookError, Plugin, StepAnswer, StepCall,
    config,
};

/// `[plugins.NAME.config]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    classify: BTreeMap<String, Class>,
    steps: BTreeMap<String, StepSettings>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Class {
    Success,
    Reject,
    Retry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StepSettings {
    compensate_body: Option<Value>,
    skip_compensation: bool,
}

fn settings() -> Result<std::sync::Arc<Settings>, HookError> {
    let settings = config::shared::<Settings>()?;
    if let Some(bad) = settings.classify.keys().find(|k| k.parse::<u16>().is_err()) {
        return Err(HookError::failed(format!(
            "classify keys are status codes, not `{bad}`"
        )));
    }
    Ok(settings)
}

/// The plugin.
pub struct Compensation;

#[txgate_plugin_sdk::plugin]
impl Plugin for Compensation {
    /// Only the hooks the config uses. A config that does not parse keeps both, so that each
    /// call reports it instead of the plugin silently doing nothing.
    fn hooks() -> Vec<Hook> {
        let Ok(settings) = settings() else {
            return vec![Hook::OnStepResponse, Hook::OnCompensate];
        };
        let mut hooks = Vec::new();
        if !settings.classify.is_empty() {
            hooks.push(Hook::OnStepResponse);
        }
        if !settings.steps.is_empty() {
            hooks.push(Hook::OnCompensate);
        }
        hooks
    }

    fn on_step_response(
        _call: &StepCall<'_>,
        answer: &StepAnswer<'_>,
    ) -> Result<Option<Classification>, HookError> {
        let settings = settings()?;
        let class = answer
            .status()
            .and_then(|status| settings.classify.get(&status.to_string()));
        Ok(class.map(|class| match class {
            Class::Success => Classification::Success,
            Class::Reject => Classification::Reject,
            Class::Retry => Classification::Retry,
        }))
    }

    fn on_compensate(
        undo: &StepCall<'_>,
        action: &StepCall<'_>,
        action_answer: Option<&StepAnswer<'_>>,
    ) -> Result<CompensateDecision, HookError> {
        let settings = settings()?;
        let step_name = undo.step();
        let Some(step) = settings.steps.get(&step_name) else {
            return Ok(CompensateDecision::Send(CallChanges::none()));
        };
        if step.skip_compensation {
            return Ok(CompensateDecision::Skip);
        }
        let Some(template) = &step.compensate_body else {
            return Ok(CompensateDecision::Send(CallChanges::none()));
        };
        let request: Option<Value> = serde_json::from_slice(&action.body()).ok();
        let response: Option<Value> =
            action_answer.and_then(|a| serde_json::from_slice(&a.body()).ok());
        let saga_id = undo.saga_id();
        let sources = Sources {
            request: request.as_ref(),
            response: response.as_ref(),
            saga_id: &saga_id,
        };
        let body = fill(template, &sources).map_err(|reason| {
            HookError::failed(format!("step `{step_name}`: compensate_body: {reason}"))
        })?;
        let body = serde_json::to_vec(&body).map_err(|e| HookError::failed(e.to_string()))?;
        Ok(CompensateDecision::Send(
            CallChanges::none()
                .set("content-type", "application/json")
                .body(body),
        ))
    }
}

txgate_plugin_sdk::export!(Compensation);

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::Phase;
    use txgate_plugin_sdk::serde_json::json;
    use txgate_plugin_sdk::testing::Harness;

    fn call(step: &str, phase: Phase, body: &str) -> StepCall<'static> {
        StepCall::new(step, phase)
            .with_header("content-type", "text/plain")
            .with_body(body)
    }

    fn answer(status: u16, body: &str) -> StepAnswer<'static> {
        StepAnswer::new(status).with_body(body)
    }

    #[test]
    fn classify_overrides_by_status_and_leaves_the_rest() {
        let host =
            Harness::new().with_config(json!({"classify": {"409": "success", "500": "reject"}}));
        let step = call("debit", Phase::Action, "{}");
        let verdict = host
            .on_step_response::<Compensation>(step.clone(), answer(409, ""))
            .unwrap();
        assert_eq!(verdict, Some(Classification::Success));
        assert_eq!(
            host.on_step_response::<Compensation>(step.clone(), answer(500, ""))
                .unwrap(),
            Some(Classification::Reject)
        );
        assert_eq!(
            host.on_step_response::<Compensation>(step, answer(200, ""))
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_template_builds_the_compensation_body() {
        let config = json!({"steps": {"debit": {"compensate_body": {"account": "$request.from", "amount": "$response.applied", "saga": "$saga_id"}}}});
        let host = Harness::new().with_config(config);
        let undo = call("debit", Phase::Compensate, "{\"from\":\"alice\"}");
        let decision = host
            .on_compensate::<Compensation>(
                undo.clone(),
                call("debit", Phase::Action, "{\"from\":\"alice\",\"amount\":5}"),
                Some(answer(200, "{\"applied\":-5}")),
            )
            .unwrap();
        let CompensateDecision::Send(changes) = decision else {
            panic!("expected a call")
        };
        let undo = undo.changed(&changes);
        let body: Value = serde_json::from_slice(&undo.body()).unwrap();
        assert_eq!(
            body,
            json!({"account": "alice", "amount": -5, "saga": "s-1"})
        );
        assert_eq!(
            undo.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            undo.headers().len(),
            1,
            "the action's content-type is replaced"
        );
    }

    #[test]
    fn a_missing_path_fails_the_hook_and_sends_nothing() {
        let config = json!({"steps": {"debit": {"compensate_body": {"tx": "$response.tx_id"}}}});
        let host = Harness::new().with_config(config);
        let error = host
            .on_compensate::<Compensation>(
                call("debit", Phase::Compensate, "{}"),
                call("debit", Phase::Action, "{}"),
                Some(answer(200, "{\"applied\":-5}")),
            )
            .unwrap_err();
        assert!(matches!(error, HookError::Failed(reason) if reason.contains("tx_id")));
    }

    #[test]
    fn skip_compensation_skips_and_other_steps_keep_their_body() {
        let config = json!({"steps": {"notify": {"skip_compensation": true}}});
        let host = Harness::new().with_config(config);
        let skipped = host
            .on_compensate::<Compensation>(
                call("notify", Phase::Compensate, ""),
                call("notify", Phase::Action, ""),
                None,
            )
            .unwrap();
        assert_eq!(skipped, CompensateDecision::Skip);
        let kept = host
            .on_compensate::<Compensation>(
                call("debit", Phase::Compensate, "orig"),
                call("debit", Phase::Action, "orig"),
                None,
            )
            .unwrap();
        assert_eq!(kept, CompensateDecision::Send(CallChanges::none()));
    }

    #[test]
    fn without_config_the_hooks_are_never_called() {
        let host = Harness::new();
        assert!(!host.calls::<Compensation>(Hook::OnStepResponse));
        assert!(!host.calls::<Compensation>(Hook::OnCompensate));
        let classify = Harness::new().with_config(json!({"classify": {"409": "success"}}));
        assert!(classify.calls::<Compensation>(Hook::OnStepResponse));
        assert!(!classify.calls::<Compensation>(Hook::OnCompensate));
        let bad = Harness::new().with_config(json!({"classify": {"conflict": "success"}}));
        assert!(
            bad.on_step_response::<Compensation>(call("x", Phase::Action, ""), answer(409, ""))
                .is_err()
        );
    }
}

//! Fails `on-step-request` for the action of the saga step its config names
//! (`{"fail_step": "credit"}`), and passes every other call (its undo included): a plugin that
//! stops a step before it is sent.

use txgate_plugin_sdk::serde_json::Value;
use txgate_plugin_sdk::{CallChanges, HookError, Phase, Plugin, StepCall, config};

/// The plugin.
pub struct StepFailer;

#[txgate_plugin_sdk::plugin]
impl Plugin for StepFailer {
    fn on_step_request(call: &StepCall<'_>) -> Result<CallChanges, HookError> {
        let settings: Value = config::get()?;
        let step = call.step();
        if settings["fail_step"].as_str() == Some(step.as_str()) && call.phase() == Phase::Action {
            return Err(HookError::Failed(format!("refusing step {step}")));
        }
        Ok(CallChanges::none())
    }
}

txgate_plugin_sdk::export!(StepFailer);

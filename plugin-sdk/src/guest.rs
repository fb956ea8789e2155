//! The WebAssembly side: bindings generated from `wit/plugin.wit`, conversions between them and
//! the SDK's types, and the adapters the [`crate::export!`] macro wires to a [`Plugin`].

// wit-bindgen's generated code is the component model's canonical ABI: raw pointers and
// `extern "C"` exports by necessity. It is generated, not written by hand.
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_bindings",
        default_bindings_module: "txgate_plugin_sdk::__private::bindings",
        runtime_path: "txgate_plugin_sdk::__private::wit_bindgen::rt",
    });
}

use bindings::exports::txgate::plugin::hooks as wit;
use bindings::txgate::plugin::types as t;

use crate::{
    CallChanges, Classification, CompensateDecision, Header, HeaderChanges, Hook, HookError, Phase,
    Plugin, Request, RequestDecision, Response, ResponseChanges, ResponseView, StepAnswer,
    StepCall,
};

pub use wit::Guest as HooksGuest;

impl Phase {
    pub(crate) fn of(p: t::Phase) -> Self {
        match p {
            t::Phase::Action => Self::Action,
            t::Phase::Compensate => Self::Compensate,
            t::Phase::Try => Self::Try,
            t::Phase::Confirm => Self::Confirm,
            t::Phase::Cancel => Self::Cancel,
        }
    }
}

fn headers_out(headers: Vec<Header>) -> Vec<t::Header> {
    headers
        .into_iter()
        .map(|h| t::Header {
            name: h.name,
            value: h.value,
        })
        .collect()
}

fn changes_out(c: HeaderChanges) -> t::HeaderChanges {
    t::HeaderChanges {
        set: headers_out(c.set),
        remove: c.remove,
    }
}

fn answer_out(r: Response) -> t::Answer {
    t::Answer {
        status: r.status,
        headers: headers_out(r.headers),
        body: r.body,
    }
}

fn call_changes_out(c: CallChanges) -> t::CallChanges {
    t::CallChanges {
        method: c.method,
        path: c.path,
        headers: changes_out(c.headers),
        body: c.body,
    }
}

fn error_out(e: HookError) -> t::HookError {
    match e {
        HookError::Failed(reason) => t::HookError::Failed(reason),
    }
}

/// `hooks`, from `P`.
pub fn hooks<P: Plugin>() -> Vec<t::Hook> {
    P::hooks()
        .into_iter()
        .map(|hook| match hook {
            Hook::OnRequest => t::Hook::OnRequest,
            Hook::OnStepRequest => t::Hook::OnStepRequest,
            Hook::OnStepResponse => t::Hook::OnStepResponse,
            Hook::OnCompensate => t::Hook::OnCompensate,
            Hook::OnResponse => t::Hook::OnResponse,
        })
        .collect()
}

/// `on-request`, forwarded to `P`.
pub fn on_request<P: Plugin>(request: &t::Request) -> Result<t::RequestDecision, t::HookError> {
    match P::on_request(&Request::lent(request)).map_err(error_out)? {
        RequestDecision::Continue(changes) => {
            Ok(t::RequestDecision::Continue(changes_out(changes)))
        }
        RequestDecision::Respond(response) => Ok(t::RequestDecision::Respond(answer_out(response))),
    }
}

/// `on-step-request`, forwarded to `P`.
pub fn on_step_request<P: Plugin>(call: &t::StepCall) -> Result<t::CallChanges, t::HookError> {
    P::on_step_request(&StepCall::lent(call))
        .map(call_changes_out)
        .map_err(error_out)
}

/// `on-step-response`, forwarded to `P`.
pub fn on_step_response<P: Plugin>(
    call: &t::StepCall,
    answer: &t::StepAnswer,
) -> Result<Option<t::Classification>, t::HookError> {
    let verdict =
        P::on_step_response(&StepCall::lent(call), &StepAnswer::lent(answer)).map_err(error_out)?;
    Ok(verdict.map(|c| match c {
        Classification::Success => t::Classification::Success,
        Classification::Reject => t::Classification::Reject,
        Classification::Retry => t::Classification::Retry,
    }))
}

/// `on-compensate`, forwarded to `P`.
pub fn on_compensate<P: Plugin>(
    undo: &t::StepCall,
    action: &t::StepCall,
    action_answer: Option<&t::StepAnswer>,
) -> Result<t::CompensateDecision, t::HookError> {
    let answer = action_answer.map(StepAnswer::lent);
    let decision = P::on_compensate(
        &StepCall::lent(undo),
        &StepCall::lent(action),
        answer.as_ref(),
    )
    .map_err(error_out)?;
    Ok(match decision {
        CompensateDecision::Send(changes) => t::CompensateDecision::Send(call_changes_out(changes)),
        CompensateDecision::Skip => t::CompensateDecision::Skip,
    })
}

/// `on-response`, forwarded to `P`.
pub fn on_response<P: Plugin>(
    request: &t::Request,
    response: &t::Response,
) -> Result<t::ResponseChanges, t::HookError> {
    let changes: ResponseChanges =
        P::on_response(&Request::lent(request), &ResponseView::lent(response))
            .map_err(error_out)?;
    Ok(t::ResponseChanges {
        status: changes.status,
        headers: changes_out(changes.headers),
        body: changes.body,
    })
}

/// The generated types the export macro names.
pub mod wit_types {
    pub use super::bindings::txgate::plugin::types::{
        CallChanges, Classification, CompensateDecision, Hook, HookError, Request, RequestDecision,
        Response, ResponseChanges, StepAnswer, StepCall,
    };
}

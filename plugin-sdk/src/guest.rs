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
    Classification, CompensateDecision, Header, HeaderChanges, HookError, Phase, Plugin, Request,
    RequestDecision, Response, StepAnswer, StepCall,
};

pub use wit::Guest as HooksGuest;

fn headers_in(headers: Vec<t::Header>) -> Vec<Header> {
    headers
        .into_iter()
        .map(|h| Header {
            name: h.name,
            value: h.value,
        })
        .collect()
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

fn request_in(r: t::Request) -> Request {
    Request {
        route: r.route,
        method: r.method,
        path: r.path,
        headers: headers_in(r.headers),
        body: r.body,
        client_ip: r.client_ip,
        request_id: r.request_id,
        request_id_from_client: r.request_id_from_client,
        saga_route: r.saga_route,
    }
}

fn response_in(r: t::Response) -> Response {
    Response {
        status: r.status,
        headers: headers_in(r.headers),
        body: r.body,
    }
}

fn response_out(r: Response) -> t::Response {
    t::Response {
        status: r.status,
        headers: headers_out(r.headers),
        body: r.body,
    }
}

fn phase_in(p: t::Phase) -> Phase {
    match p {
        t::Phase::Action => Phase::Action,
        t::Phase::Compensate => Phase::Compensate,
        t::Phase::Try => Phase::Try,
        t::Phase::Confirm => Phase::Confirm,
        t::Phase::Cancel => Phase::Cancel,
    }
}

fn phase_out(p: Phase) -> t::Phase {
    match p {
        Phase::Action => t::Phase::Action,
        Phase::Compensate => t::Phase::Compensate,
        Phase::Try => t::Phase::Try,
        Phase::Confirm => t::Phase::Confirm,
        Phase::Cancel => t::Phase::Cancel,
    }
}

fn call_in(c: t::StepCall) -> StepCall {
    StepCall {
        saga_id: c.saga_id,
        route: c.route,
        step: c.step,
        phase: phase_in(c.phase),
        request_id: c.request_id,
        method: c.method,
        path: c.path,
        headers: headers_in(c.headers),
        body: c.body,
    }
}

fn call_out(c: StepCall) -> t::StepCall {
    t::StepCall {
        saga_id: c.saga_id,
        route: c.route,
        step: c.step,
        phase: phase_out(c.phase),
        request_id: c.request_id,
        method: c.method,
        path: c.path,
        headers: headers_out(c.headers),
        body: c.body,
    }
}

fn answer_in(a: t::StepAnswer) -> StepAnswer {
    StepAnswer {
        status: a.status,
        headers: headers_in(a.headers),
        body: a.body,
        error: a.error,
    }
}

fn error_out(e: HookError) -> t::HookError {
    match e {
        HookError::NotImplemented => t::HookError::NotImplemented,
        HookError::Failed(reason) => t::HookError::Failed(reason),
    }
}

/// `on-request`, forwarded to `P`.
pub fn on_request<P: Plugin>(request: t::Request) -> Result<t::RequestDecision, t::HookError> {
    match P::on_request(request_in(request)).map_err(error_out)? {
        RequestDecision::Continue(HeaderChanges { set, remove }) => {
            Ok(t::RequestDecision::Continue(t::HeaderChanges {
                set: headers_out(set),
                remove,
            }))
        }
        RequestDecision::Respond(response) => {
            Ok(t::RequestDecision::Respond(response_out(response)))
        }
    }
}

/// `on-step-request`, forwarded to `P`.
pub fn on_step_request<P: Plugin>(call: t::StepCall) -> Result<t::StepCall, t::HookError> {
    P::on_step_request(call_in(call))
        .map(call_out)
        .map_err(error_out)
}

/// `on-step-response`, forwarded to `P`.
pub fn on_step_response<P: Plugin>(
    call: t::StepCall,
    answer: t::StepAnswer,
) -> Result<Option<t::Classification>, t::HookError> {
    let verdict = P::on_step_response(call_in(call), answer_in(answer)).map_err(error_out)?;
    Ok(verdict.map(|c| match c {
        Classification::Success => t::Classification::Success,
        Classification::Reject => t::Classification::Reject,
        Classification::Retry => t::Classification::Retry,
    }))
}

/// `on-compensate`, forwarded to `P`.
pub fn on_compensate<P: Plugin>(
    undo: t::StepCall,
    action: t::StepCall,
    action_answer: Option<t::StepAnswer>,
) -> Result<t::CompensateDecision, t::HookError> {
    let decision = P::on_compensate(call_in(undo), call_in(action), action_answer.map(answer_in))
        .map_err(error_out)?;
    Ok(match decision {
        CompensateDecision::Send(call) => t::CompensateDecision::Send(call_out(call)),
        CompensateDecision::Skip => t::CompensateDecision::Skip,
    })
}

/// `on-response`, forwarded to `P`.
pub fn on_response<P: Plugin>(
    request: t::Request,
    response: t::Response,
) -> Result<t::Response, t::HookError> {
    P::on_response(request_in(request), response_in(response))
        .map(response_out)
        .map_err(error_out)
}

/// The generated types the export macro names.
pub mod wit_types {
    pub use super::bindings::txgate::plugin::types::{
        Classification, CompensateDecision, HookError, Request, RequestDecision, Response,
        StepAnswer, StepCall,
    };
}

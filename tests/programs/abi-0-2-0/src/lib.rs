//! A plugin built against `txgate:plugin@0.2.0` (its WIT is in `wit/`, as released): on every
//! request it adds `x-abi: 0.2.0` and the route's name to the upstream request. Later 0.2
//! versions only added host functions, so a gateway running one must load and run this
//! component unchanged.

#[cfg(target_arch = "wasm32")]
mod component {
    // wit-bindgen's generated code is the component model's canonical ABI: raw pointers and
    // `extern "C"` exports by necessity. It is generated, not written by hand.
    #[allow(unsafe_code, missing_docs, clippy::all)]
    mod bindings {
        wit_bindgen::generate!({ world: "plugin", path: "wit" });
    }

    use bindings::exports::txgate::plugin::hooks::Guest;
    use bindings::txgate::plugin::types::{
        CallChanges, Classification, CompensateDecision, Header, HeaderChanges, Hook, HookError,
        Request, RequestDecision, Response, ResponseChanges, StepAnswer, StepCall,
    };

    struct Released;

    impl Guest for Released {
        fn hooks() -> Vec<Hook> {
            vec![Hook::OnRequest]
        }
        fn on_request(request: &Request) -> Result<RequestDecision, HookError> {
            let header = |name: &str, value: String| Header {
                name: name.into(),
                value,
            };
            Ok(RequestDecision::Continue(HeaderChanges {
                set: vec![
                    header("x-abi", "0.2.0".into()),
                    header("x-abi-route", request.route()),
                ],
                remove: vec![],
            }))
        }
        fn on_step_request(_: &StepCall) -> Result<CallChanges, HookError> {
            Err(HookError::Failed("not called".into()))
        }
        fn on_step_response(
            _: &StepCall,
            _: &StepAnswer,
        ) -> Result<Option<Classification>, HookError> {
            Ok(None)
        }
        fn on_compensate(
            _: &StepCall,
            _: &StepCall,
            _: Option<&StepAnswer>,
        ) -> Result<CompensateDecision, HookError> {
            Err(HookError::Failed("not called".into()))
        }
        fn on_response(_: &Request, _: &Response) -> Result<ResponseChanges, HookError> {
            Err(HookError::Failed("not called".into()))
        }
    }

    // The export glue is wit-bindgen's canonical-ABI code too.
    #[allow(unsafe_code)]
    mod export {
        use super::{Released, bindings};
        bindings::export!(Released with_types_in bindings);
    }
}

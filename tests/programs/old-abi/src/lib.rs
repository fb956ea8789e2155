//! A plugin as the SDK built them for the old plugin ABI (`txgate:plugin@0.1.0`, in `wit/`):
//! every hook answers "not implemented". The gateway must refuse it at load, and say why.

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
        Classification, CompensateDecision, HookError, Request, RequestDecision, Response,
        StepAnswer, StepCall,
    };

    struct OldPlugin;

    impl Guest for OldPlugin {
        fn on_request(_: Request) -> Result<RequestDecision, HookError> {
            Err(HookError::NotImplemented)
        }
        fn on_step_request(_: StepCall) -> Result<StepCall, HookError> {
            Err(HookError::NotImplemented)
        }
        fn on_step_response(
            _: StepCall,
            _: StepAnswer,
        ) -> Result<Option<Classification>, HookError> {
            Err(HookError::NotImplemented)
        }
        fn on_compensate(
            _: StepCall,
            _: StepCall,
            _: Option<StepAnswer>,
        ) -> Result<CompensateDecision, HookError> {
            Err(HookError::NotImplemented)
        }
        fn on_response(_: Request, _: Response) -> Result<Response, HookError> {
            Err(HookError::NotImplemented)
        }
    }

    // The export glue is wit-bindgen's canonical-ABI code too.
    #[allow(unsafe_code)]
    mod export {
        use super::{OldPlugin, bindings};
        bindings::export!(OldPlugin with_types_in bindings);
    }
}

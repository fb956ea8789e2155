//! # txgate-plugin-sdk
//!
//! Write txgate plugins in Rust and compile them to WebAssembly components:
//!
//! ```no_run
//! use txgate_plugin_sdk::{HeaderChanges, HookError, Plugin, Request, RequestDecision};
//!
//! struct Tagger;
//!
//! #[txgate_plugin_sdk::plugin]
//! impl Plugin for Tagger {
//!     fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
//!         let tag = format!("seen-by-tagger:{}", request.route());
//!         Ok(RequestDecision::Continue(HeaderChanges::none().set("x-tag", &tag)))
//!     }
//! }
//!
//! txgate_plugin_sdk::export!(Tagger);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release` (the crate is a `cdylib`), and name
//! the `.wasm` file in the gateway's `[plugins.NAME]` table. `plugin-sdk/README.md` walks through
//! it step by step.
//!
//! - [`Plugin`] has one method per hook of the WIT world (`wit/plugin.wit`, the source of truth).
//!   [`macro@plugin`] on the `impl` block tells the gateway which hooks the plugin defines; the
//!   gateway never calls the others.
//! - A hook is given views ([`Request`], [`ResponseView`], [`StepCall`], [`StepAnswer`]): each
//!   accessor copies just what it returns from the gateway into the plugin. A hook returns what
//!   to change ([`HeaderChanges`], [`ResponseChanges`], [`CallChanges`]) or an answer
//!   ([`Response`]).
//! - The host's offer is in [`kv`], [`clock`], [`random`], [`log`], [`config`], [`process`]
//!   and [`audit`]; [`decisions`] lets the gateway reuse an `on_request` decision, or `on_response`
//!   changes, that depend only on a few request headers. There is nothing else: no files, sockets or environment.
//! - [`testing::Harness`] runs your hooks natively, with a fake host (an in-memory key-value store
//!   and a settable clock), so plain `cargo test` tests your plugin.

#![deny(missing_docs)]

pub mod decisions;
mod host;
mod types;
mod view;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
mod guest;

// The generated bindings name the SDK by its crate name, from plugin crates and from here alike.
#[cfg(target_arch = "wasm32")]
extern crate self as txgate_plugin_sdk;

pub use host::{KvError, audit, clock, config, kv, log, process, random};
/// The JSON library the SDK uses for bodies and config, re-exported so plugins need not pin it.
pub use serde_json;
pub use txgate_plugin_sdk_macros::plugin;
pub use types::{
    CallChanges, Classification, CompensateDecision, Header, HeaderChanges, Hook, HookError, Phase,
    RequestDecision, Response, ResponseChanges, find_header,
};
pub use view::{Request, ResponseView, StepAnswer, StepCall};

/// A txgate plugin: one associated function per hook. Define the hooks you need, and put
/// [`macro@plugin`] on the `impl` block: it writes [`Plugin::hooks`], the list the gateway asks
/// for once, when it loads the plugin. The gateway never calls a hook left out of that list.
///
/// Hooks keep no state between calls in the plugin's memory unless the plugin runs with
/// `isolation = "fresh"`: with instances reused (the default), what one request leaves in a
/// `static` is seen by the next, whoever sent it. Keep state in [`kv`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a txgate plugin",
    label = "this type is named in `txgate_plugin_sdk::export!`",
    note = "add `#[txgate_plugin_sdk::plugin] impl txgate_plugin_sdk::Plugin for {Self} {{ ... }}` with the hooks you need"
)]
pub trait Plugin {
    /// The hooks this plugin implements. [`macro@plugin`] writes it from the hooks the `impl`
    /// block defines; write it yourself to choose them by config (it may read [`config`]).
    fn hooks() -> Vec<Hook>;

    /// After routing and the gateway's checks, before any upstream call, in plugin order.
    /// Continue (optionally editing request headers) or answer the client at once.
    fn on_request(request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let _ = request;
        Err(undefined("on_request"))
    }

    /// Before each saga call; returns what to change in the call (method, path, headers,
    /// body).
    fn on_step_request(call: &StepCall<'_>) -> Result<CallChanges, HookError> {
        let _ = call;
        Err(undefined("on_step_request"))
    }

    /// After each saga call attempt; `Some` overrides how the answer is classified.
    fn on_step_response(
        call: &StepCall<'_>,
        answer: &StepAnswer<'_>,
    ) -> Result<Option<Classification>, HookError> {
        let _ = (call, answer);
        Err(undefined("on_step_response"))
    }

    /// Once before a compensation or cancel is first sent: change it, or skip it. A
    /// [`HookError::Failed`] here makes the saga `stuck`; the undo is never sent half-built.
    fn on_compensate(
        undo: &StepCall<'_>,
        action: &StepCall<'_>,
        action_answer: Option<&StepAnswer<'_>>,
    ) -> Result<CompensateDecision, HookError> {
        let _ = (undo, action, action_answer);
        Err(undefined("on_compensate"))
    }

    /// Before the response goes to the client, in reverse plugin order; returns what to
    /// change in it.
    fn on_response(
        request: &Request<'_>,
        response: &ResponseView<'_>,
    ) -> Result<ResponseChanges, HookError> {
        let _ = (request, response);
        Err(undefined("on_response"))
    }
}

/// A hook listed by [`Plugin::hooks`] but not defined.
fn undefined(hook: &str) -> HookError {
    HookError::Failed(format!(
        "`{hook}` is in the plugin's hooks() but the plugin does not define it"
    ))
}

/// Exports a [`Plugin`] as the component's hooks: `txgate_plugin_sdk::export!(MyPlugin);`.
///
/// Use it once, at the root of a `cdylib` crate. In a native build (tests) it only checks that
/// the type is a plugin.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: fn() = || {
            fn assert_plugin<P: $crate::Plugin>() {}
            assert_plugin::<$plugin>();
        };

        // The export glue is wit-bindgen's canonical-ABI code: raw pointers by necessity.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            use $crate::__private::wit_types as __wit;

            struct __TxgatePluginExport;

            impl $crate::__private::HooksGuest for __TxgatePluginExport {
                fn hooks() -> ::std::vec::Vec<__wit::Hook> {
                    $crate::__private::hooks::<$plugin>()
                }
                fn on_request(r: &__wit::Request) -> Result<__wit::RequestDecision, __wit::HookError> {
                    $crate::__private::on_request::<$plugin>(r)
                }
                fn on_step_request(c: &__wit::StepCall) -> Result<__wit::CallChanges, __wit::HookError> {
                    $crate::__private::on_step_request::<$plugin>(c)
                }
                fn on_step_response(
                    c: &__wit::StepCall,
                    a: &__wit::StepAnswer,
                ) -> Result<Option<__wit::Classification>, __wit::HookError> {
                    $crate::__private::on_step_response::<$plugin>(c, a)
                }
                fn on_compensate(
                    u: &__wit::StepCall,
                    c: &__wit::StepCall,
                    a: Option<&__wit::StepAnswer>,
                ) -> Result<__wit::CompensateDecision, __wit::HookError> {
                    $crate::__private::on_compensate::<$plugin>(u, c, a)
                }
                fn on_response(
                    r: &__wit::Request,
                    s: &__wit::Response,
                ) -> Result<__wit::ResponseChanges, __wit::HookError> {
                    $crate::__private::on_response::<$plugin>(r, s)
                }
            }

            $crate::__private::bindings::__export_plugin_bindings!(__TxgatePluginExport with_types_in $crate::__private::bindings);
        };
    };
    () => {
        compile_error!("name your plugin type: `txgate_plugin_sdk::export!(MyPlugin);`");
    };
    ($($other:tt)+) => {
        compile_error!("`export!` takes one type that implements `txgate_plugin_sdk::Plugin`: `txgate_plugin_sdk::export!(MyPlugin);`");
    };
}

/// Used by [`export!`]; not part of the API.
#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub mod __private {
    pub use crate::guest::{
        HooksGuest, bindings, hooks, on_compensate, on_request, on_response, on_step_request,
        on_step_response, wit_types,
    };
    pub use wit_bindgen;
}

//! Host bindings generated from the WIT world (`plugin-sdk/wit/plugin.wit`, the source of truth).
//!
//! `kv` is async because a durable write waits for a group commit, and that wait must yield to
//! the runtime instead of blocking a worker. Every import gets a tracing span. The resources a
//! hook is given are the gateway's own views (`view.rs`), lent for the call.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../plugin-sdk/wit",
    imports: {
        "txgate:plugin/kv": async | tracing,
        default: tracing,
    },
    exports: {
        default: async,
    },
    with: {
        "txgate:plugin/types.request": super::view::RequestView,
        "txgate:plugin/types.response": super::view::ResponseView,
        "txgate:plugin/types.step-call": super::view::CallView,
        "txgate:plugin/types.step-answer": super::view::AnswerView,
    },
});

//! The WebAssembly plugin runtime: sandboxed, hot-reloadable, measured.
//!
//! A plugin is a component implementing the WIT world in `plugin-sdk/wit/plugin.wit`
//! (`txgate:plugin@0.2.3`; a component built for an older 0.2 version links unchanged, one built for another version is refused at load). One
//! wasmtime `Engine` compiles every component once, at load (`engine.rs`), and keeps the compiled
//! artifact in the store's directory, so a restart or a reload loads it instead of compiling
//! again (`compiled.rs`); each plugin keeps an `InstancePre` and a pool of live instances per
//! worker (`instance.rs`), bounded in use and trimmed when idle (`pool.rs`). At load the gateway
//! asks each plugin which hooks it implements, and never calls the others.
//!
//! **Views.** A hook is lent the request, the response or the saga call as a resource handle
//! (`view.rs`) and copies in only what it reads; it returns only what it changes
//! (`convert.rs` checks that against limits).
//!
//! **Sandbox.** Each hook call has a deadline for its own execution (`timeout_ms`, epoch
//! interruption; time waiting in host calls is not charged), a wall-clock bound whatever it
//! waits on (`wall_timeout_ms`), and a memory cap (`memory_limit_bytes`, a resource limiter). WASI
//! is linked deny-all: no preopened directories, no sockets, no environment, no arguments. A
//! trap, a deadline or a cap breach fails only that call: the instance is dropped, the failure
//! is counted in `txgate_plugin_errors_total{plugin,kind}`, and the plugin's `on_error` decides
//! (`reject`: 503 problem+json; `skip`: as if the plugin were not on the route).
//!
//! **Fresh or reused instances** (`isolation`). By default (`"reuse"`) an instance serves call
//! after call, of any client: measured on the 2-core development machine with `cargo bench -p
//! txgate --bench plugin_call` (wasmtime 48, pooling allocator), a hook call on a reused
//! instance costs a median of 1.24 µs, while a fresh instantiation plus the call costs 18.8 µs.
//! Whatever a plugin leaves in its own memory (a `static`) is then seen by later requests; the SDK
//! guide says so. `"fresh"` gives every call a new instance, for plugins that cannot promise
//! that. An instance is dropped after any failed call, so a broken one never sees another
//! request. The figures are in `bench/RESULTS.md`.
//!
//! **Versions.** A reload (SIGHUP, `POST /admin/reload`) compiles the new plugins completely,
//! with the rest of the new config, before that version goes live (`version.rs`); a request
//! keeps the version it started with.
//!
//! **Reused decisions.** A plugin may declare that its `on-request` decision, or its
//! `on-response` changes, depend only on a few request headers (`decisions.reuse`,
//! `reuse-response`); the gateway then gives later requests with the same values the same
//! changes without calling it (`reuse.rs`).
//!
//! **Requests.** Request hooks run inside a [`RequestScope`]: the keys the plugins `hold` for
//! the request are released when it ends, however it ends.

mod bindings;
mod chain;
mod compiled;
mod convert;
mod engine;
mod failure;
mod hook;
mod host;
mod instance;
mod pool;
mod reuse;
pub(crate) mod scope;
mod set;
mod state;
mod view;

pub use bindings::txgate::plugin::types as wit;
pub use chain::{Chain, RequestStep, ResponsePlan};
pub use engine::Runtime;
pub use failure::{Failure, FailureKind};
pub use hook::Hook;
pub use instance::{HookCall, Limits, LoadedPlugin, Outcome};
pub use scope::RequestScope;
pub use set::{PluginEnv, PluginSet};
pub use view::{RequestFacts, ResponseFacts};

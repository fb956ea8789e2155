//! txgate's integration tests: one binary, real processes on loopback.
//!
//! Every test starts its own demo banks and gateway (see `support`), so tests run in parallel
//! and leave nothing behind.

// The test binary is a crate of its own; `pub` in `support` is for its sibling modules.
#![allow(unreachable_pub)]

mod support;

/// Paths of the WebAssembly components `build.rs` compiled from source.
mod wasm {
    include!(concat!(env!("OUT_DIR"), "/wasm.rs"));
}

mod admin;
mod answers;
mod audit;
mod backends;
mod bad_input;
mod bank;
mod client_chaos;
mod clients;
mod config_check;
mod console;
mod console_browser;
mod crash;
mod disk_full;
mod edge;
mod fault_messages;
mod faults;
mod fleet;
mod fleet_clients;
mod fleet_faults;
mod fleet_takeover;
mod fleet_trust;
mod framing;
mod jwt_auth;
mod lifecycle;
mod mask;
mod messages;
mod operator_actions;
mod operators;
mod plugin_authors;
mod plugin_cache;
mod plugin_pressure;
mod plugins;
mod proxy;
mod reconcile;
mod resilience;
mod reused_decisions;
mod sagas;
mod shipped_plugins;
mod store;
mod store_contract;

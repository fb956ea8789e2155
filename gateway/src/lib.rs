//! # txgate
//!
//! An edge gateway for money-moving HTTP APIs. Requests carry an `X-Request-ID`; they pass through
//! sandboxed WebAssembly plugins and are proxied to backends, or run as sagas and TCC transactions
//! whose state survives a crash.
//!
//! The binary (`txgate serve`, `txgate check`) is a thin wrapper over this library:
//! [`config::load`] reads and validates a config, [`serve`] runs it until SIGTERM, and [`check`]
//! validates without serving, and [`reconcile::reconcile`] checks the books against the backends. Every failure is an [`Error`], which becomes an RFC 9457 problem+json
//! response in exactly one place.

// Denied, not forbidden: loading a compiled plugin from disk is `unsafe` in wasmtime, and
// `plugin/compiled.rs` is the one module allowed to do it (its comment says why it is sound).
#![deny(unsafe_code)]

pub mod admin;
pub mod audit;
mod check;
pub mod cli;
pub mod config;
mod error;
#[cfg(test)]
mod fuzz_tests;
pub mod gateway;
pub mod last_hour;
pub mod logging;
pub mod metrics;
mod migrate;
mod pipeline;
pub mod plugin;
pub mod reconcile;
pub mod request_id;
mod request_path;
pub mod saga;
pub mod server;
pub mod step;
pub mod store;
pub mod upstream;
pub mod version;
pub mod worker;

pub use check::check;
pub use config::{Config, ConfigIssue};
pub use error::{Error, ErrorKind, Side};
pub use migrate::migrate;
pub use server::serve;

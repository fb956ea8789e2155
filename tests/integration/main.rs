//! txgate's integration tests: one binary, real processes on loopback.
//!
//! Every test starts its own demo banks and gateway (see `support`), so tests run in parallel
//! and leave nothing behind.

// The test binary is a crate of its own; `pub` in `support` is for its sibling modules.
#![allow(unreachable_pub)]

mod support;

mod admin;
mod bank;
mod config_check;
mod lifecycle;
mod proxy;
mod resilience;

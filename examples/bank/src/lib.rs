//! # txgate-bank
//!
//! The demo bank: txgate's reference backend. It shows backend owners what SPEC §4 asks of them,
//! in a few hundred lines:
//!
//! - every `Idempotency-Key` is applied at most once, and a repeat gets the first answer back;
//! - the **barrier**: a compensation (or TCC cancel) that arrives before its action succeeds as a
//!   no-op, and the late action is then refused with 409;
//! - business rejections are 4xx (`422 insufficient_funds`, `404 unknown_account`); only failures
//!   worth retrying are 5xx.
//!
//! Beside the books, a small orders service ([`orders`]) runs a local transaction and answers
//! transactional messages' back-check with the barrier the README shows.
//!
//! It also injects faults on demand ([`faults`]) so tests and the demo can show what the gateway
//! does when a backend fails before or after applying a call, is slow, or drops the connection.

pub mod faults;
pub mod http;
pub mod journal;
pub mod ledger;
pub mod orders;

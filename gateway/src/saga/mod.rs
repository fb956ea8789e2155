//! The saga and TCC engine: a transfer is applied once and completely, or undone completely,
//! whatever fails, whoever hangs up, and whenever the gateway is killed.
//!
//! - `record.rs`: the durable record and its state machine (illegal transitions are refused);
//! - `plan.rs`: the steps and calls a saga runs, fixed in its record when it starts;
//! - `route.rs`: a route's mode, client key and plan, from the config;
//! - `call.rs`: one call, with the backend contract's headers, sent and classified;
//! - `run.rs`: a saga's task, walking the state machine with write-ahead persistence;
//! - `handle.rs`: a saga being admitted or run, as waiting requests and operators see it;
//! - `engine.rs`: dedup per (route, client, X-Request-ID), admission owned by the engine, the
//!   client's deadline, recovery, admin calls;
//! - `answer.rs`: the JSON clients and operators see.
//!
//! Write-ahead: the record says "this call is being sent" durably before the call goes out, and
//! its outcome is recorded durably before the next call. After a crash, recovery resumes each
//! unfinished saga from its record and resends the call in flight with the same
//! Idempotency-Key, so a backend that keeps SPEC §4's contract applies it once.

mod answer;
mod call;
mod engine;
mod handle;
mod plan;
mod record;
mod route;
mod run;

pub use answer::{admin as admin_view, client as client_answer};
pub use engine::{Engine, EngineParts, LIST_LIMIT_MAX, SagaRequest};
pub use plan::{PlannedCall, PlannedStep};
pub use record::{Mode, SagaRecord, Status, fingerprint};
pub use route::{ClientKey, SagaRoute};
pub use run::Live;

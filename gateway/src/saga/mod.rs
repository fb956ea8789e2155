//! The saga and TCC engine: a transfer is applied once and completely, or undone completely,
//! whatever fails and whenever the gateway is killed.
//!
//! - `record.rs`: the durable record and its state machine (illegal transitions are refused);
//! - `route.rs`: a route's steps and their calls;
//! - `call.rs`: one call, with the backend contract's headers and the plugins' saga hooks;
//! - `run.rs`: a saga's task, walking the state machine with write-ahead persistence;
//! - `engine.rs`: dedup per (route, X-Request-ID), the client's deadline, recovery, admin calls;
//! - `answer.rs`: the JSON clients and operators see.
//!
//! Write-ahead: the record says "this call is being sent" durably before the call goes out, and
//! its outcome is recorded durably before the next call. After a crash, recovery resumes each
//! unfinished saga from its record and resends the call in flight with the same
//! Idempotency-Key, so a backend that keeps SPEC §4's contract applies it once.

mod answer;
mod call;
mod engine;
mod record;
mod route;
mod run;

pub use answer::{admin as admin_view, client as client_answer};
pub use engine::{Engine, EngineParts, LIST_LIMIT_MAX, NAMESPACE};
pub use record::{Mode, SagaRecord, Status};
pub use route::SagaRoute;

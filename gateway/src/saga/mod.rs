//! The saga and TCC engine: a transfer is applied once and completely, or undone completely,
//! whatever fails, whoever hangs up, and whenever the gateway is killed.
//!
//! - `record.rs`: the durable record and its state machine (illegal transitions are refused);
//! - `plan.rs`: the steps and calls a saga runs, fixed in its record when it starts;
//! - `route.rs`: a route's mode, client key and plan, from the config;
//! - `call.rs`: one call, with the backend contract's headers, sent and classified;
//! - `run.rs`: a saga's task, walking the state machine with write-ahead persistence;
//! - `forward.rs`, `settle.rs`: a step's forward call, and its undo or confirm;
//! - `message.rs`: a prepared transactional message: its wait and its back-check;
//! - `delivery.rs`, `fanout.rs`: a submitted message's deliveries, in order, or to every step
//!   at once;
//! - `msg_calls.rs`: a message's submit and abort, as its service sends them;
//! - `ctx.rs`: what a task works with, and what every step does with it: persist, ask whether
//!   the saga is still this gateway's before each call (fleets), block, wait;
//! - `handle.rs`: a saga being admitted or run, as waiting requests and operators see it;
//! - `engine.rs`: dedup per (route, client, X-Request-ID), admission owned by the engine, the
//!   client's deadline;
//! - `resume.rs`: recovery at start, and in a fleet, takeover of dead gateways' sagas;
//! - `operate.rs`: the admin calls, for sagas run here or anywhere in the fleet: operators'
//!   actions go to the task that runs the saga, which records them in its timeline;
//! - `answer.rs`: the JSON clients and operators see;
//! - `expect.rs`: what a finished saga left at each backend, for `txgate reconcile`.
//!
//! Write-ahead: the record says "this call is being sent" durably before the call goes out, and
//! its outcome is recorded durably before the next call. After a crash, recovery resumes each
//! unfinished saga from its record and resends the call in flight with the same
//! Idempotency-Key, so a backend that keeps SPEC §4's contract applies it once. A message,
//! delivered at least once and never undone, is persisted when it is submitted and after its
//! last step, not between steps: a crash resends the steps taken since, with the same keys.

mod answer;
mod call;
mod ctx;
mod delivery;
mod engine;
mod expect;
mod fanout;
mod forward;
mod handle;
mod message;
mod msg_calls;
mod operate;
mod plan;
mod record;
mod resume;
mod route;
mod run;
mod settle;

pub use answer::{SagaOf, admin as admin_view, client as client_answer};
pub use call::{BACKEND_CONTRACT_HEADERS, status_request};
pub use ctx::Live;
pub use engine::{Engine, EngineParts, SagaRequest};
pub use expect::Expected;
pub use operate::{Acted, LIST_LIMIT_MAX};
pub use plan::{PlannedCall, PlannedStep};
pub use record::{
    ActionKind, ENGINE_KEY_PREFIX, Mode, MsgPlan, OperatorAction, SagaRecord, Status, fingerprint,
    is_engine_key,
};
pub use route::{ClientKey, SagaRoute};

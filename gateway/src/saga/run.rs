//! One saga's task: it walks the state machine until the saga is finished, persisting every
//! transition before the call it leads to. A crash at any point leaves a durable state from
//! which recovery resends the same call, with the same Idempotency-Key.

use std::sync::Arc;
use std::time::Duration;

use super::call::{self, Class};
use super::engine::{Engine, Handle};
use super::record::{Cause, Phase, SagaRecord, Stage, Status};
use super::route::SagaRoute;
use crate::plugin::wit;
use crate::upstream::backoff_delay;

/// Runs a saga to its end (or until an operator resolves it).
pub(super) async fn run(engine: Arc<Engine>, mut record: SagaRecord, handle: Arc<Handle>) {
    let Some(route) = engine.parts.routes.get(&record.route).cloned() else {
        return;
    };
    loop {
        let resolution = handle.resolution.lock().expect("resolution").take();
        if let Some(note) = resolution
            && record.resolve(note)
        {
            engine.persist(&record, &handle).await;
            break;
        }
        match record.stage {
            Stage::Forward(i) => forward(&engine, &route, &mut record, i).await,
            Stage::Confirm(i) => {
                settle(&engine, &route, &mut record, &handle, i, Phase::Confirm).await
            }
            Stage::Undo(i) => {
                let phase = route.undo_phase();
                settle(&engine, &route, &mut record, &handle, i, phase).await;
            }
            Stage::Finished => break,
        }
        engine.persist(&record, &handle).await;
    }
    engine.finished(&record);
}

/// Sends step `i`'s action (or try), retried up to `max_attempts`, and records the outcome.
async fn forward(engine: &Engine, route: &SagaRoute, record: &mut SagaRecord, i: usize) {
    let step = &route.steps[i];
    let phase = route.forward_phase();
    let chain = engine.chain(&route.name);
    let call = match call::shape(chain.as_ref(), call::build(record, step, phase)).await {
        Ok(call) => call,
        Err(error) => return record.forward_failed(i, Cause::Plugin, None, error),
    };
    let config = step.upstream.config();
    for attempt in 1..=config.max_attempts {
        let outcome = call::attempt(record, step, i, phase, &call, chain.as_ref()).await;
        let error = || outcome.error.clone().unwrap_or_default();
        match outcome.class {
            Class::Success => return record.forward_done(i, outcome.answer.clone()),
            Class::Reject => {
                return record.forward_failed(i, Cause::Rejected, outcome.answer.clone(), error());
            }
            Class::Retry if attempt < config.max_attempts => {
                tokio::time::sleep(backoff_delay(
                    attempt,
                    config.backoff_base_ms,
                    config.backoff_max_ms,
                ))
                .await;
            }
            Class::Retry => {
                let error = format!("unavailable after {attempt} attempts: {}", error());
                return record.forward_failed(i, Cause::Unavailable, outcome.answer.clone(), error);
            }
        }
    }
}

/// Sends step `j`'s undo (compensate or cancel) or confirm until it succeeds, backing off; after
/// 20 failures in a row the saga is `stuck` and the call is retried every `backoff_max_ms` (or
/// at once on an admin retry). Returns early when an operator resolves the saga.
async fn settle(
    engine: &Engine,
    route: &SagaRoute,
    record: &mut SagaRecord,
    handle: &Handle,
    j: usize,
    phase: Phase,
) {
    let step = &route.steps[j];
    let config = step.upstream.config();
    let chain = engine.chain(&route.name);
    let call = loop {
        match prepare(record, route, j, phase, chain.as_ref()).await {
            Prepared::Send(call) => break call,
            Prepared::Skip => return record.undo_done(j, true),
            Prepared::Blocked { error, stuck_now } => {
                tracing::error!(saga = %record.id, step = %step.name, %error, "the undo cannot be built");
                if stuck_now {
                    record.stuck_now();
                } else {
                    record.retry_failed();
                }
                record.attempt(failed_attempt(j, phase, error));
                engine.persist(record, handle).await;
                if !wait_to_retry(
                    record,
                    handle,
                    config.backoff_base_ms,
                    config.backoff_max_ms,
                )
                .await
                {
                    return;
                }
            }
        }
    };
    if phase != Phase::Confirm {
        record.undo_sending(j);
        engine.persist(record, handle).await;
    }
    loop {
        let outcome = call::attempt(record, step, j, phase, &call, chain.as_ref()).await;
        if outcome.class == Class::Success {
            return match phase {
                Phase::Confirm => record.confirm_done(j),
                _ => record.undo_done(j, false),
            };
        }
        if record.retry_failed() {
            tracing::warn!(saga = %record.id, step = %step.name, phase = phase.as_str(), "saga is stuck; retrying every backoff_max_ms");
        }
        engine.persist(record, handle).await;
        if !wait_to_retry(
            record,
            handle,
            config.backoff_base_ms,
            config.backoff_max_ms,
        )
        .await
        {
            return;
        }
    }
}

enum Prepared {
    Send(wit::StepCall),
    Skip,
    Blocked { error: String, stuck_now: bool },
}

/// Builds an undo or confirm and lets the plugins shape it (`on-compensate` for undos, then
/// `on-step-request`).
async fn prepare(
    record: &SagaRecord,
    route: &SagaRoute,
    j: usize,
    phase: Phase,
    chain: Option<&crate::plugin::Chain>,
) -> Prepared {
    let step = &route.steps[j];
    let mut call = call::build(record, step, phase);
    if let (Some(chain), true) = (chain, phase != Phase::Confirm) {
        let action = call::build(record, step, route.forward_phase());
        let answer = call::as_answer(&record.steps[j].answer);
        match chain.on_compensate(call, &action, answer.as_ref()).await {
            Ok(wit::CompensateDecision::Send(shaped)) => call = shaped,
            Ok(wit::CompensateDecision::Skip) => return Prepared::Skip,
            Err(failure) => {
                return Prepared::Blocked {
                    error: format!(
                        "plugin `{}` refused the undo ({}): {}",
                        failure.plugin, failure.kind, failure.detail
                    ),
                    stuck_now: failure.kind == "failed",
                };
            }
        }
    }
    match call::shape(chain, call).await {
        Ok(call) => Prepared::Send(call),
        Err(error) => Prepared::Blocked {
            error,
            stuck_now: false,
        },
    }
}

fn failed_attempt(step: usize, phase: Phase, error: String) -> super::record::Attempt {
    super::record::Attempt {
        step,
        phase,
        at_ms: crate::store::now_unix_ms(),
        status: None,
        latency_ms: 0,
        error: Some(error),
    }
}

/// Waits before the next try: exponential backoff with jitter while fresh, exactly
/// `backoff_max_ms` once stuck, and at once on an admin retry. Returns false when an operator
/// resolved the saga meanwhile.
async fn wait_to_retry(record: &SagaRecord, handle: &Handle, base_ms: u64, max_ms: u64) -> bool {
    let wait = if record.status == Status::Stuck {
        Duration::from_millis(max_ms)
    } else {
        backoff_delay(record.failures_in_a_row, base_ms, max_ms)
    };
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = handle.wake.notified() => {}
    }
    handle.resolution.lock().expect("resolution").is_none()
}

//! One saga's task: it walks the state machine until the saga is finished, persisting every
//! transition before the call it leads to. A crash at any point leaves a durable state from
//! which recovery resends the same call, with the same Idempotency-Key.
//!
//! The task reads the running config only through [`Live`]: the upstream a step of its plan
//! names, and the route's plugins. Everything else it needs is in its record.

use std::sync::Arc;
use std::time::Duration;

use super::call::{self, Sending};
use super::handle::Handle;
use super::record::{Cause, Failed, SagaRecord, Stage, Status};
use super::route::{forward_phase, undo_phase};
use crate::plugin::{Chain, FailureKind};
use crate::step::{Phase, StepCall, UndoDecision, Verdict};
use crate::store::Store;
use crate::upstream::{Upstream, backoff_delay};

/// How long a persist that failed waits before the next try.
const PERSIST_RETRY: Duration = Duration::from_millis(200);
/// How long a saga blocked on a missing upstream waits before it looks again.
const BLOCKED_RETRY: Duration = Duration::from_secs(5);

/// The parts of the running config a saga reads at each call (a reload changes them).
pub trait Live: Send + Sync + std::fmt::Debug {
    /// An upstream, by name.
    fn upstream(&self, name: &str) -> Option<Arc<Upstream>>;
    /// A route's plugins.
    fn chain(&self, route: &str) -> Option<Chain>;
    /// The client's deadline on saga routes.
    fn request_timeout(&self) -> Duration;
}

/// What a saga's task needs.
#[derive(Debug)]
pub(super) struct Ctx {
    /// Where its record goes.
    pub(super) store: Arc<dyn Store>,
    /// The running config.
    pub(super) live: Arc<dyn Live>,
    /// How long a finished saga is kept.
    pub(super) retention_ms: u64,
}

/// Runs a saga to its end (or until an operator resolves it) and returns its final record.
/// `resumed`: the record was loaded from the store, so the call of its current step may have
/// been sent before.
pub(super) async fn run(
    ctx: Arc<Ctx>,
    mut record: SagaRecord,
    handle: Arc<Handle>,
    resumed: bool,
) -> SagaRecord {
    // Stages only move forward, so the stage it was loaded at never comes back once left.
    let loaded_at = resumed.then_some(record.stage);
    loop {
        if let Some(note) = handle.take_resolution()
            && record.resolve(note)
        {
            persist(&ctx, &record, &handle).await;
            break;
        }
        let resumed_here = loaded_at == Some(record.stage);
        match record.stage {
            Stage::Forward(i) => forward(&ctx, &mut record, &handle, i, resumed_here).await,
            Stage::Confirm(i) => settle(&ctx, &mut record, &handle, i, Phase::Confirm).await,
            Stage::Undo(i) => {
                let phase = undo_phase(record.mode);
                settle(&ctx, &mut record, &handle, i, phase).await;
            }
            Stage::Finished => break,
        }
        persist(&ctx, &record, &handle).await;
    }
    record
}

/// The one persist-and-wait: writes the record durably (waiting while the store cannot), then
/// shows it to the requests waiting on the saga.
pub(super) async fn persist(ctx: &Ctx, record: &SagaRecord, handle: &Handle) {
    let mut row = record.row(ctx.retention_ms);
    row.replaces_bytes = handle
        .persisted_bytes
        .swap(row.record.len(), std::sync::atomic::Ordering::Relaxed);
    while let Err(error) = ctx.store.save_saga(row.clone()).await {
        tracing::error!(saga = %record.id, %error, "cannot persist the saga; retrying");
        tokio::time::sleep(PERSIST_RETRY).await;
    }
    handle.record.send_replace(Arc::new(record.clone()));
}

/// The upstream of step `i`, or the saga blocks (stuck, persisted) and waits to look again.
async fn upstream_of(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    i: usize,
    phase: Phase,
) -> Option<Arc<Upstream>> {
    let name = record
        .plan
        .get(i)
        .map(|s| s.upstream.clone())
        .unwrap_or_default();
    if let Some(upstream) = ctx.live.upstream(&name) {
        return Some(upstream);
    }
    let error = format!(
        "upstream `{name}` of step `{}` is not in the running config",
        record.step_name(i)
    );
    block(ctx, record, handle, i, phase, error).await;
    None
}

/// The saga cannot go on now: stuck, persisted, and a wait before it looks again.
async fn block(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    i: usize,
    phase: Phase,
    error: String,
) {
    if record.status != Status::Stuck {
        tracing::error!(saga = %record.id, %error, "saga is stuck");
    }
    record.blocked(error.clone());
    record.attempt(call::not_sent(i, phase, error));
    persist(ctx, record, handle).await;
    wait(handle, BLOCKED_RETRY).await;
}

/// Sends step `i`'s action (or try), retried up to `max_attempts`, and records the outcome.
async fn forward(ctx: &Ctx, record: &mut SagaRecord, handle: &Handle, i: usize, resumed: bool) {
    let phase = forward_phase(record.mode);
    let Some(upstream) = upstream_of(ctx, record, handle, i, phase).await else {
        return;
    };
    let chain = ctx.live.chain(&record.route);
    let Some(call) = call::build(record, i, phase) else {
        let error = format!(
            "step `{}` has no valid {} call in its plan",
            record.step_name(i),
            phase.as_str()
        );
        return block(ctx, record, handle, i, phase, error).await;
    };
    let call = match shape(chain.as_ref(), call).await {
        Ok(call) => call,
        Err(error) => {
            let failed = Failed {
                cause: Cause::Plugin,
                answer: None,
                error,
                reached: resumed,
            };
            return record.forward_failed(i, failed);
        }
    };
    let outbound = call::outbound(&call);
    let sending = Sending {
        upstream: &upstream,
        call: &call,
        outbound: &outbound,
        chain: chain.as_ref(),
    };
    let config = upstream.config();
    let mut reached = resumed;
    for attempt in 1..=config.max_attempts {
        let outcome = call::attempt(record, i, &sending).await;
        reached |= outcome.reached;
        let failed = |cause, error: String| Failed {
            cause,
            answer: outcome.answer.clone(),
            error,
            reached,
        };
        let error = outcome.error.clone().unwrap_or_default();
        match outcome.verdict {
            Verdict::Success => return record.forward_done(i, outcome.answer),
            Verdict::Reject => return record.forward_failed(i, failed(Cause::Rejected, error)),
            Verdict::Retry if attempt < config.max_attempts => {
                let wait = backoff_delay(attempt, config.backoff_base_ms, config.backoff_max_ms);
                tokio::time::sleep(wait).await;
            }
            Verdict::Retry => {
                let error = format!("unavailable after {attempt} attempts: {error}");
                return record.forward_failed(i, failed(Cause::Unavailable, error));
            }
        }
    }
}

/// Runs `on-step-request` when the route has plugins.
async fn shape(chain: Option<&Chain>, call: StepCall) -> Result<StepCall, String> {
    match chain {
        Some(chain) => chain
            .on_step_request(call)
            .await
            .map_err(|failure| failure.to_string()),
        None => Ok(call),
    }
}

/// Sends step `j`'s undo (compensate or cancel) or confirm until it succeeds, backing off; after
/// 20 failures in a row the saga is `stuck` and the call is retried every `backoff_max_ms` (or
/// at once on an admin retry). Returns early when an operator resolves the saga.
async fn settle(ctx: &Ctx, record: &mut SagaRecord, handle: &Handle, j: usize, phase: Phase) {
    let Some(upstream) = upstream_of(ctx, record, handle, j, phase).await else {
        return;
    };
    let config = upstream.config();
    let chain = ctx.live.chain(&record.route);
    let call = loop {
        match prepare(record, j, phase, chain.as_ref()).await {
            Prepared::Send(call) => break call,
            Prepared::Skip => return record.undo_done(j, true),
            Prepared::Blocked { error, stuck_now } => {
                tracing::error!(saga = %record.id, step = record.step_name(j), %error, "the undo cannot be built");
                if stuck_now {
                    record.stuck_now();
                } else {
                    record.retry_failed();
                }
                record.attempt(call::not_sent(j, phase, error));
                persist(ctx, record, handle).await;
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
        persist(ctx, record, handle).await;
    }
    let outbound = call::outbound(&call);
    let sending = Sending {
        upstream: &upstream,
        call: &call,
        outbound: &outbound,
        chain: chain.as_ref(),
    };
    loop {
        let outcome = call::attempt(record, j, &sending).await;
        if outcome.verdict == Verdict::Success {
            return match phase {
                Phase::Confirm => record.confirm_done(j),
                _ => record.undo_done(j, false),
            };
        }
        if record.retry_failed() {
            tracing::warn!(saga = %record.id, step = record.step_name(j), phase = phase.as_str(), "saga is stuck; retrying every backoff_max_ms");
        }
        persist(ctx, record, handle).await;
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
    Send(StepCall),
    Skip,
    Blocked { error: String, stuck_now: bool },
}

/// Builds an undo or confirm and lets the plugins shape it (`on-compensate` for undos, then
/// `on-step-request`).
async fn prepare(record: &SagaRecord, j: usize, phase: Phase, chain: Option<&Chain>) -> Prepared {
    let (Some(mut call), Some(action)) = (
        call::build(record, j, phase),
        call::build(record, j, forward_phase(record.mode)),
    ) else {
        return Prepared::Blocked {
            error: format!(
                "step `{}` has no valid {} call in its plan",
                record.step_name(j),
                phase.as_str()
            ),
            stuck_now: true,
        };
    };
    if let (Some(chain), true) = (chain, phase != Phase::Confirm) {
        let answer = call::stored_answer(&record.steps[j].answer);
        match chain.on_compensate(call, &action, answer.as_ref()).await {
            Ok(UndoDecision::Send(shaped)) => call = shaped,
            Ok(UndoDecision::Skip) => return Prepared::Skip,
            Err(failure) => {
                return Prepared::Blocked {
                    stuck_now: failure.kind == FailureKind::Failed,
                    error: format!("refused the undo: {failure}"),
                };
            }
        }
    }
    match shape(chain, call).await {
        Ok(call) => Prepared::Send(call),
        Err(error) => Prepared::Blocked {
            error,
            stuck_now: false,
        },
    }
}

/// Waits before the next try: exponential backoff with jitter while fresh, exactly
/// `backoff_max_ms` once stuck, and at once on an admin retry. Returns false when an operator
/// resolved the saga meanwhile.
async fn wait_to_retry(record: &SagaRecord, handle: &Handle, base_ms: u64, max_ms: u64) -> bool {
    let delay = if record.status == Status::Stuck {
        Duration::from_millis(max_ms)
    } else {
        backoff_delay(record.failures_in_a_row, base_ms, max_ms)
    };
    wait(handle, delay).await;
    !handle.resolving()
}

/// Sleeps, or less when an operator wakes the saga.
async fn wait(handle: &Handle, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = handle.wake.notified() => {}
    }
}

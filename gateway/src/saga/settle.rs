//! A step's undo (compensate, cancel) or confirm: built and shaped by the plugins
//! (`on-compensate`, then `on-step-request`), then sent until it succeeds, with backoff; after 20
//! failures in a row the saga is `stuck` and the call is retried every `backoff_max_ms` (or at
//! once on an operator's retry). Each attempt goes out only while the saga is still this
//! gateway's.

use super::call::{self, Sending};
use super::ctx::{Ctx, Lost, chain_of, persist, send, shape, upstream_of, wait_to_retry};
use super::handle::Handle;
use super::record::SagaRecord;
use super::route::forward_phase;
use crate::config::UpstreamConfig;
use crate::plugin::{Chain, FailureKind};
use crate::step::{Phase, StepCall, UndoDecision, Verdict};

/// Sends step `j`'s undo or confirm until it succeeds. Returns early when an operator acts on
/// the saga (the task takes the action, then comes back here if it is still this step's turn).
pub(super) async fn settle(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    j: usize,
    phase: Phase,
) -> Result<(), Lost> {
    let Some(upstream) = upstream_of(ctx, record, handle, j, phase).await? else {
        return Ok(());
    };
    let config = upstream.config();
    let Ok(chain) = chain_of(ctx, record, handle, j, phase).await? else {
        return Ok(());
    };
    let call = loop {
        match prepare(record, j, phase, chain.as_ref(), ctx.store.gateway()).await {
            Prepared::Send(call) => break call,
            Prepared::Skip => {
                record.undo_done(j, true);
                return Ok(());
            }
            Prepared::Blocked { error, stuck_now } => {
                tracing::error!(saga = %record.id, step = record.step_name(j), %error, "the undo cannot be built");
                if stuck_now {
                    record.stuck_now();
                } else {
                    record.retry_failed();
                }
                record.attempt(call::not_sent(j, phase, error));
                if !persist_then_wait(ctx, record, handle, config).await? {
                    return Ok(());
                }
            }
        }
    };
    if phase != Phase::Confirm {
        record.undo_sending(j);
        persist(ctx, record, handle).await?;
    }
    let sending = Sending::new(&upstream, &call, chain.as_ref());
    loop {
        let outcome = send(ctx, record, handle, j, &sending).await?;
        if outcome.verdict == Verdict::Success {
            match phase {
                Phase::Confirm => record.confirm_done(j),
                _ => record.undo_done(j, false),
            }
            return Ok(());
        }
        if record.retry_failed() {
            tracing::warn!(saga = %record.id, step = record.step_name(j), phase = phase.as_str(), "saga is stuck; retrying every backoff_max_ms");
        }
        if !persist_then_wait(ctx, record, handle, config).await? {
            return Ok(());
        }
    }
}

/// Persists a failed try, then waits for the next: the backoff, or an operator's wake. `false`
/// when an operator's action waits.
async fn persist_then_wait(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    config: &UpstreamConfig,
) -> Result<bool, Lost> {
    persist(ctx, record, handle).await?;
    Ok(wait_to_retry(
        record,
        handle,
        config.backoff_base_ms,
        config.backoff_max_ms,
    )
    .await)
}

enum Prepared {
    Send(StepCall),
    Skip,
    Blocked { error: String, stuck_now: bool },
}

/// Builds an undo or confirm and lets the plugins shape it.
async fn prepare(
    record: &SagaRecord,
    j: usize,
    phase: Phase,
    chain: Option<&Chain>,
    gateway: &str,
) -> Prepared {
    let (Some(mut call), Some(action)) = (
        call::build(record, j, phase, gateway),
        call::build(record, j, forward_phase(record.mode), gateway),
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

//! A submitted message's deliveries (SPEC §9): each step is sent its `action` until it takes
//! the message (a 2xx), in order (here), or all at once with `parallel = true` (`fanout.rs`).
//! A step that refuses (4xx) makes the message stuck for an operator; it is sent again every `backoff_max_ms`
//! meanwhile, with the same Idempotency-Key, so a consumer fixed later takes it once. A message
//! is never compensated: what a step took stays.

use std::sync::Arc;

use super::call::{self, Outcome, Sending};
use super::ctx::wait_to_retry;
use super::ctx::{Ctx, Lost, block, find_chain, find_upstream, persist, send, shape};
use super::handle::Handle;
use super::record::{SagaRecord, Stage, Status};
use crate::plugin::Chain;
use crate::step::{Phase, StepCall, Verdict};
use crate::upstream::Upstream;

/// One step's call, ready to be sent: its upstream, its plugins, and the call they shaped.
pub(super) struct Ready {
    pub(super) upstream: Arc<Upstream>,
    chain: Option<Chain>,
    call: StepCall,
}

impl Ready {
    pub(super) fn sending(&self) -> Sending<'_> {
        Sending::new(&self.upstream, &self.call, self.chain.as_ref())
    }
}

/// Step `i`'s call as the running config has it; `Err` says what is missing.
pub(super) async fn prepare(ctx: &Ctx, record: &SagaRecord, i: usize) -> Result<Ready, String> {
    let upstream = find_upstream(ctx, record, i)?;
    let chain = find_chain(ctx, record)?;
    let built = call::build(record, i, Phase::Action, ctx.store.gateway()).ok_or_else(|| {
        format!(
            "step `{}` has no valid action in its plan",
            record.step_name(i)
        )
    })?;
    let call = shape(chain.as_ref(), built).await?;
    Ok(Ready {
        upstream,
        chain,
        call,
    })
}

/// Step `i`'s call, or `None` when the message blocked (stuck, persisted, waited) because
/// part of it is missing.
async fn ready(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    i: usize,
) -> Result<Option<Ready>, Lost> {
    match prepare(ctx, record, i).await {
        Ok(ready) => Ok(Some(ready)),
        Err(error) => {
            block(ctx, record, handle, i, Phase::Action, error).await?;
            Ok(None)
        }
    }
}

/// Delivers to step `first` and then each next step in order, until the last took the message
/// or an operator's action waits. A step that took it is not persisted before the next is sent
/// (the run persists at the end, or a failure does): after a crash, the steps taken since are
/// sent again with the same Idempotency-Key, which delivery at least once allows, and a saved
/// write per step is the difference between a message and a saga of the same steps.
pub(super) async fn deliver(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    first: usize,
) -> Result<(), Lost> {
    let mut i = first;
    while deliver_one(ctx, record, handle, i).await? && !handle.asked() {
        match record.stage {
            Stage::Forward(next) => i = next,
            _ => break,
        }
    }
    Ok(())
}

/// Sends step `i` until it takes the message (true), or an operator's action waits.
async fn deliver_one(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    i: usize,
) -> Result<bool, Lost> {
    let Some(ready) = ready(ctx, record, handle, i).await? else {
        return Ok(false);
    };
    let sending = ready.sending();
    let config = ready.upstream.config();
    loop {
        let outcome = send(ctx, record, handle, i, &sending).await?;
        if take(ctx, record, i, outcome) {
            return Ok(true);
        }
        persist(ctx, record, handle).await?;
        if !wait_to_retry(
            record,
            handle,
            config.backoff_base_ms,
            config.backoff_max_ms,
        )
        .await
        {
            return Ok(false);
        }
    }
}

/// Records what step `i`'s attempt came to; true when the step took the message.
pub(super) fn take(ctx: &Ctx, record: &mut SagaRecord, i: usize, outcome: Outcome) -> bool {
    let counted = match outcome.verdict {
        Verdict::Success => "taken",
        Verdict::Retry => "retried",
        Verdict::Reject => "refused",
    };
    ctx.metrics
        .message_delivery(&Arc::new(record.route.to_string()), counted);
    match outcome.verdict {
        Verdict::Success => {
            record.delivered(i, outcome.answer);
            return true;
        }
        Verdict::Reject => {
            let error = outcome.error.unwrap_or_default();
            if record.status != Status::Stuck {
                tracing::warn!(message = %record.id, step = record.step_name(i), %error, "a consumer refused the message; it is stuck for an operator");
            }
            record.delivery_refused(i, outcome.answer, error);
        }
        Verdict::Retry => record.msg_retry(),
    }
    false
}

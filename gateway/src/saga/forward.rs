//! A step's forward call (a saga's action, a TCC try): shaped by the plugins, sent up to
//! `max_attempts` times with backoff, each attempt only while the saga is still this gateway's,
//! and its outcome recorded: done, rejected, or failed — and whether any attempt may have
//! reached the backend, which decides whether the step is undone (SPEC §4).

use super::call::{self, Sending};
use super::ctx::{Ctx, Lost, block, chain_of, persist, send, shape, upstream_of, wait};
use super::handle::Handle;
use super::record::{Cause, Failed, SagaRecord, Stage};
use super::route::forward_phase;
use crate::step::Verdict;
use crate::upstream::backoff_delay;

/// Sends step `i`'s action (or try) and records the outcome. `resumed`: the step was under way
/// before this process took the saga, so its call may have been sent already.
pub(super) async fn forward(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    i: usize,
    resumed: bool,
) -> Result<(), Lost> {
    let phase = forward_phase(record.mode);
    let Some(upstream) = upstream_of(ctx, record, handle, i, phase).await? else {
        return Ok(());
    };
    let Ok(chain) = chain_of(ctx, record, handle, i, phase).await? else {
        return Ok(());
    };
    let Some(call) = call::build(record, i, phase, ctx.store.gateway()) else {
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
            record.forward_failed(i, failed);
            return Ok(());
        }
    };
    let sending = Sending::new(&upstream, &call, chain.as_ref());
    let config = upstream.config();
    // Whether an attempt before this one (or a run before this process) may have applied the
    // step: a rejection after one leaves the step in doubt (SPEC §4).
    let mut reached_before = resumed;
    for attempt in 1..=config.max_attempts {
        let outcome = send(ctx, record, handle, i, &sending).await?;
        let reached = reached_before || outcome.reached;
        let failed = |cause, error: String, reached| Failed {
            cause,
            answer: outcome.answer.clone(),
            error,
            reached,
        };
        let error = outcome.error.clone().unwrap_or_default();
        match outcome.verdict {
            Verdict::Success => {
                record.forward_done(i, outcome.answer);
                return Ok(());
            }
            Verdict::Reject => {
                record.forward_failed(i, failed(Cause::Rejected, error, reached_before));
                return Ok(());
            }
            Verdict::Retry if attempt < config.max_attempts => {
                reached_before = reached;
                let delay = backoff_delay(attempt, config.backoff_base_ms, config.backoff_max_ms);
                wait(handle, delay).await;
                // An operator's action is taken here, where it is known whether an attempt
                // may have reached the backend: an abort undoes this step only if one may have.
                if handle.take_actions(record, reached) {
                    persist(ctx, record, handle).await?;
                    if record.stage != Stage::Forward(i) {
                        return Ok(());
                    }
                }
            }
            Verdict::Retry => {
                let error = format!("unavailable after {attempt} attempts: {error}");
                record.forward_failed(i, failed(Cause::Unavailable, error, reached));
                return Ok(());
            }
        }
    }
    Ok(())
}

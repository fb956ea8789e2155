//! A submitted message delivered to every step at once (`parallel = true`, SPEC §9): each step
//! that has not taken it yet is sent on its own, and retried on its own backoff, so a consumer
//! that is down, slow or refusing holds back no other. A step whose upstream or plugins the
//! running config lacks is looked at again every few seconds while the others go on. The record
//! is persisted when a step fails (its timeline) and when the last step took the message.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::call::{self, Outcome};
use super::ctx::{BLOCKED_RETRY, Ctx, Lost, gate, mark_blocked, persist, retry_delay, wait};
use super::delivery::{Ready, prepare, take};
use super::handle::Handle;
use super::record::{Attempt, SagaRecord, Stage};
use crate::step::Phase;

/// What one step's turn came to.
enum Turn {
    /// An attempt was sent to step `i`.
    Sent(usize, Outcome, Attempt),
    /// Step `i` could not be prepared: look at the running config again.
    Look(usize),
    /// An operator's action waits for the task.
    Asked,
}

/// Delivers to every step still to take the message, each on its own, until all took it or an
/// operator's action waits.
pub(super) async fn deliver_all(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
) -> Result<(), Lost> {
    let id = record.id.clone();
    let mut turns = FuturesUnordered::new();
    let mut calls: Vec<Option<Arc<Ready>>> = vec![None; record.steps.len()];
    let mut tries = vec![0_u32; record.steps.len()];
    for i in (0..record.steps.len()).filter(|&i| !record.steps[i].done) {
        turns.push(turn(ctx, handle, id.clone(), i, None, Duration::ZERO));
    }
    if turns.is_empty() {
        // Every step took it, yet the message is not finished: a record written by hand.
        tracing::error!(message = %record.id, "a message with nothing to deliver is not finished");
        wait(handle, BLOCKED_RETRY).await;
        return Ok(());
    }
    while let Some(next) = turns.next().await {
        let (i, delay) = match next? {
            Turn::Asked => return Ok(()),
            Turn::Look(i) => match prepare(ctx, record, i).await {
                Ok(ready) => {
                    record.unblocked(i);
                    calls[i] = Some(Arc::new(ready));
                    (i, Duration::ZERO)
                }
                Err(error) => {
                    mark_blocked(record, i, Phase::Action, error);
                    persist(ctx, record, handle).await?;
                    turns.push(turn(ctx, handle, id.clone(), i, None, BLOCKED_RETRY));
                    continue;
                }
            },
            Turn::Sent(i, outcome, attempt) => {
                record.attempt(attempt);
                if take(ctx, record, i, outcome) {
                    if record.stage == Stage::Finished {
                        return Ok(());
                    }
                    continue;
                }
                persist(ctx, record, handle).await?;
                tries[i] = tries[i].saturating_add(1);
                (i, step_delay(record, &calls[i], tries[i]))
            }
        };
        turns.push(turn(ctx, handle, id.clone(), i, calls[i].clone(), delay));
    }
    Ok(())
}

/// How long step `i` waits before its next attempt: its upstream's backoff (see
/// [`retry_delay`]), counted by its own tries.
fn step_delay(record: &SagaRecord, ready: &Option<Arc<Ready>>, tries: u32) -> Duration {
    let Some(ready) = ready else {
        return BLOCKED_RETRY;
    };
    let config = ready.upstream.config();
    retry_delay(record, tries, config.backoff_base_ms, config.backoff_max_ms)
}

/// One step's turn: after `delay` (or an operator's wake), one attempt while the message is
/// still this gateway's; without a prepared call, a look at the config.
async fn turn(
    ctx: &Ctx,
    handle: &Handle,
    id: Arc<str>,
    i: usize,
    ready: Option<Arc<Ready>>,
    delay: Duration,
) -> Result<Turn, Lost> {
    if !delay.is_zero() {
        wait(handle, delay).await;
        if handle.asked() {
            return Ok(Turn::Asked);
        }
    }
    let Some(ready) = ready else {
        return Ok(Turn::Look(i));
    };
    let fence = gate(ctx, &id, handle).await?;
    let (outcome, attempt) = call::attempt_alone(i, &ready.sending(), fence.as_ref()).await;
    Ok(Turn::Sent(i, outcome, attempt))
}

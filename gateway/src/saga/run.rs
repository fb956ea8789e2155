//! One saga's task: it walks the state machine until the saga is finished, persisting every
//! transition before the call it leads to. A crash at any point leaves a durable state from
//! which recovery (or, in a fleet, another gateway) resends the same call, with the same
//! Idempotency-Key. The task reads the running config only through [`super::Live`]: the
//! upstream a step of its plan names, and the route's plugins; everything else is in its record.

use std::sync::Arc;

use super::ctx::{Ctx, Lost, persist};
use super::delivery;
use super::fanout;
use super::forward::forward;
use super::handle::Handle;
use super::message;
use super::record::{Mode, SagaRecord, Stage};
use super::route::undo_phase;
use super::settle::settle;
use crate::step::Phase;

/// Runs a saga to its end (an operator's resolve is one) and returns its final record;
/// `None` when another gateway of the fleet took it over (this one then sent nothing more).
/// `resumed`: the record was loaded from the store, so the call of its current step may have
/// been sent before.
pub(super) async fn run(
    ctx: Arc<Ctx>,
    record: SagaRecord,
    handle: Arc<Handle>,
    resumed: bool,
) -> Option<SagaRecord> {
    drive(&ctx, record, &handle, resumed).await.ok()
}

async fn drive(
    ctx: &Ctx,
    mut record: SagaRecord,
    handle: &Handle,
    resumed: bool,
) -> Result<SagaRecord, Lost> {
    // Stages only move forward, so the stage it was loaded at never comes back once left.
    let loaded_at = resumed.then_some(record.stage);
    loop {
        let resumed_here = loaded_at == Some(record.stage);
        // A step this process has not sent yet reached nothing, unless a run before sent it.
        if handle.take_actions(&mut record, resumed_here) {
            persist(ctx, &record, handle).await?;
            continue;
        }
        match record.stage {
            Stage::Prepared => {
                if !message::prepared(ctx, &mut record, handle).await? {
                    continue;
                }
            }
            Stage::Forward(_) if record.delivers_in_parallel() => {
                fanout::deliver_all(ctx, &mut record, handle).await?;
            }
            Stage::Forward(i) if record.mode == Mode::Msg => {
                delivery::deliver(ctx, &mut record, handle, i).await?;
            }
            Stage::Forward(i) => forward(ctx, &mut record, handle, i, resumed_here).await?,
            Stage::Confirm(i) => settle(ctx, &mut record, handle, i, Phase::Confirm).await?,
            Stage::Undo(i) => {
                let phase = undo_phase(record.mode);
                settle(ctx, &mut record, handle, i, phase).await?;
            }
            Stage::Finished => break,
        }
        persist(ctx, &record, handle).await?;
    }
    Ok(record)
}

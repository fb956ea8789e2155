//! What a saga's task works with: the running config (through [`Live`]), the store, and the
//! handle other tasks see it by; and the few things every step does with them: persist, ask
//! before a call whether the saga is still this gateway's, block, and wait.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::call;
use super::handle::Handle;
use super::record::{SagaRecord, Status};
use crate::plugin::Chain;
use crate::step::{Phase, StepCall};
use crate::store::{Store, StoreError};
use crate::upstream::{Fence, Upstream, backoff_delay};

/// How long a store call that failed waits before the next try.
const STORE_RETRY: Duration = Duration::from_millis(200);
/// How long a saga blocked on a missing upstream waits before it looks again.
pub(super) const BLOCKED_RETRY: Duration = Duration::from_secs(5);

/// The parts of the running config a saga reads at each call (a reload changes them).
pub trait Live: Send + Sync + std::fmt::Debug {
    /// An upstream, by name.
    fn upstream(&self, name: &str) -> Option<Arc<Upstream>>;
    /// A route's plugins.
    fn chain(&self, route: &str) -> Option<Chain>;
    /// These plugins, in this order; `Err` names one that is not in the running config.
    fn chain_of(&self, plugins: &[String]) -> Result<Option<Chain>, String>;
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
    /// Metrics (a message's back-checks).
    pub(super) metrics: Arc<crate::metrics::Metrics>,
}

/// Another gateway of the fleet owns the saga now: this task stops, and sends nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lost;

/// The one persist-and-wait: writes the record durably (waiting while the store cannot), then
/// shows it to the requests waiting on the saga. `Lost` when the write was fenced.
///
/// Nothing is shown before it is saved: a waiting request answers (and its plugins' `on-response`
/// stores, for the idempotency plugin) only an outcome that is on disk, so no answer ever reports
/// an outcome that a crash, or another gateway's takeover, could still change (SPEC §8).
pub(super) async fn persist(ctx: &Ctx, record: &SagaRecord, handle: &Handle) -> Result<(), Lost> {
    let mut row = record.row(ctx.retention_ms);
    row.epoch = handle.epoch;
    row.replaces_bytes = handle.persisted_bytes.load(Ordering::Relaxed);
    let len = row.record.len();
    loop {
        match ctx.store.save_saga(row.clone()).await {
            Ok(()) => break,
            Err(StoreError::Fenced) => return Err(Lost),
            Err(error) => {
                tracing::error!(saga = %record.id, %error, "cannot persist the saga; retrying");
                tokio::time::sleep(STORE_RETRY).await;
            }
        }
    }
    handle.persisted_bytes.store(len, Ordering::Relaxed);
    handle.record.send_replace(Arc::new(record.clone()));
    Ok(())
}

/// One attempt of a call, sent only while the saga is still this gateway's (see [`gate`]).
pub(super) async fn send(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    i: usize,
    sending: &call::Sending<'_>,
) -> Result<call::Outcome, Lost> {
    let fence = gate(ctx, &record.id, handle).await?;
    Ok(call::attempt(record, i, sending, fence.as_ref()).await)
}

/// Before every call: is the saga still this gateway's? Waits while the store cannot tell. In a
/// fleet, the answer comes as the [`Fence`] the call's connection checks before each write.
pub(super) async fn gate(ctx: &Ctx, id: &str, handle: &Handle) -> Result<Option<Fence>, Lost> {
    loop {
        let epoch = handle.epoch;
        match ctx.store.may_send(id, epoch).await {
            Ok(None) => return Ok(None),
            Ok(Some(ticket)) => {
                let store = ctx.store.clone();
                return Ok(Some(Fence::new(move || store.ticket_valid(ticket))));
            }
            Err(StoreError::Fenced) => return Err(Lost),
            Err(error) => {
                tracing::warn!(saga = %id, %error, "cannot confirm the saga is still ours; waiting");
                tokio::time::sleep(STORE_RETRY).await;
            }
        }
    }
}

/// The saga's plugins as the running config has them: those its record names (or, for a record
/// of the first encoding, its route's); `Err` names one the running config lacks.
pub(super) fn find_chain(ctx: &Ctx, record: &SagaRecord) -> Result<Option<Chain>, String> {
    match &record.plugins {
        Some(plugins) => ctx.live.chain_of(plugins),
        None => Ok(ctx.live.chain(&record.route)),
    }
}

/// The saga's plugins (see [`find_chain`]). While one of them is missing, the saga blocks
/// (stuck, persisted) rather than run its hooks without it, and looks again later. `Err(())`
/// when it blocked.
pub(super) async fn chain_of(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    i: usize,
    phase: Phase,
) -> Result<Result<Option<Chain>, ()>, Lost> {
    match find_chain(ctx, record) {
        Ok(chain) => Ok(Ok(chain)),
        Err(error) => {
            block(ctx, record, handle, i, phase, error).await?;
            Ok(Err(()))
        }
    }
}

/// The upstream of step `i` in the running config; `Err` says which one is missing.
pub(super) fn find_upstream(
    ctx: &Ctx,
    record: &SagaRecord,
    i: usize,
) -> Result<Arc<Upstream>, String> {
    let name = record
        .plan
        .get(i)
        .map(|s| s.upstream.as_str())
        .unwrap_or_default();
    ctx.live.upstream(name).ok_or_else(|| {
        format!(
            "upstream `{name}` of step `{}` is not in the running config",
            record.step_name(i)
        )
    })
}

/// The upstream of step `i`, or the saga blocks (stuck, persisted) and waits to look again.
pub(super) async fn upstream_of(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    i: usize,
    phase: Phase,
) -> Result<Option<Arc<Upstream>>, Lost> {
    match find_upstream(ctx, record, i) {
        Ok(upstream) => Ok(Some(upstream)),
        Err(error) => {
            block(ctx, record, handle, i, phase, error).await?;
            Ok(None)
        }
    }
}

/// The saga cannot go on now: stuck, persisted, and a wait before it looks again.
pub(super) async fn block(
    ctx: &Ctx,
    record: &mut SagaRecord,
    handle: &Handle,
    i: usize,
    phase: Phase,
    error: String,
) -> Result<(), Lost> {
    mark_blocked(record, i, phase, error);
    persist(ctx, record, handle).await?;
    wait(handle, BLOCKED_RETRY).await;
    Ok(())
}

/// Step `i` cannot go on now: the saga is stuck there, and its timeline says why.
pub(super) fn mark_blocked(record: &mut SagaRecord, i: usize, phase: Phase, error: String) {
    if record.status != Status::Stuck {
        tracing::error!(saga = %record.id, %error, "saga is stuck");
    }
    record.blocked(i, error.clone());
    record.attempt(call::not_sent(i, phase, error));
}

/// Runs `on-step-request` when the route has plugins.
pub(super) async fn shape(chain: Option<&Chain>, call: StepCall) -> Result<StepCall, String> {
    match chain {
        Some(chain) => chain
            .on_step_request(call)
            .await
            .map_err(|failure| failure.to_string()),
        None => Ok(call),
    }
}

/// Waits before the next try: exponential backoff with jitter while fresh, exactly
/// `backoff_max_ms` once stuck, and at once on an operator's action. Returns false when an
/// operator's action waits for the task to take it.
pub(super) async fn wait_to_retry(
    record: &SagaRecord,
    handle: &Handle,
    base_ms: u64,
    max_ms: u64,
) -> bool {
    let delay = retry_delay(record, record.failures_in_a_row, base_ms, max_ms);
    wait(handle, delay).await;
    !handle.asked()
}

/// The wait before the next try after `failures` in a row: exponential backoff with jitter,
/// or exactly `backoff_max_ms` while the saga is stuck for an operator.
pub(super) fn retry_delay(
    record: &SagaRecord,
    failures: u32,
    base_ms: u64,
    max_ms: u64,
) -> Duration {
    if record.status == Status::Stuck {
        Duration::from_millis(max_ms)
    } else {
        backoff_delay(failures, base_ms, max_ms)
    }
}

/// Sleeps, or less when an operator wakes the saga.
pub(super) async fn wait(handle: &Handle, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = handle.wake.notified() => {}
    }
}

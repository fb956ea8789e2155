//! One loaded plugin version: its compiled component, a pool of live instances per worker, and
//! the call path every hook goes through — budget, deadlines, memory cap, failure
//! classification and metrics.
//!
//! Two deadlines bound a call. `timeout_ms` counts the plugin's own execution (epoch ticks, see
//! `state.rs`); `wall_timeout_ms` counts wall time, whatever the plugin waits on: a plugin that
//! sleeps or polls through WASI, or waits on the store, is cut there as a timeout.
//!
//! With `isolation = "reuse"` an instance serves call after call, of any client, and is dropped
//! after any failure (trap, deadline, memory cap): a broken instance never serves another
//! request. With `"fresh"`, every call gets a new instance, so nothing a plugin leaves in its
//! memory reaches another request. Either way the instances in use are bounded, and idle ones
//! are trimmed after a burst (`pool.rs`).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use wasmtime::{Store, UpdateDeadline};

use super::bindings::exports::txgate::plugin::hooks::Guest;
use super::bindings::txgate::plugin::types::HookError;
use super::bindings::{Plugin, PluginPre};
use super::failure::{Failure, FailureKind};
use super::hook::{HOOKS, Hook};
use super::pool::{IN_USE_MAX, Pool, Trim, Trimmer};
use super::reuse::Decisions;
use super::scope::RequestScope;
use super::state::{Breach, HostState, PluginShared, thread_cpu};
use super::view::{self, RequestFacts, RequestView};
use crate::config::{Isolation, OnError};
use crate::metrics::{Metrics, Name};
use crate::store::BoxFuture;
use crate::worker;

/// Component handles an instance may hold at once (wasmtime's default is 100,000). A hook is
/// lent at most three views, and WASI needs a few; a leak shows within a few hundred calls.
const HANDLES_MAX: usize = 1024;

/// What a hook call came to.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The hook returned a result.
    Done(T),
    /// The plugin does not implement the hook: it was not called.
    Skipped,
    /// The call failed; see [`Failure::on_error`].
    Failed(Failure),
}

/// A live instance: its store and its exports. Boxed wherever it is kept, so that taking it
/// from the pool and giving it back moves a pointer, not the exports' handles.
struct Live {
    store: Store<HostState>,
    plugin: Plugin,
}

/// A plugin's limits and policies, from its config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// What a failure does to the request.
    pub on_error: OnError,
    /// Budget for the plugin's own execution per call.
    pub timeout: Duration,
    /// Wall-clock bound per call.
    pub wall_timeout: Duration,
    /// Linear memory cap per instance.
    pub memory_bytes_max: usize,
    /// Reused or fresh instances.
    pub isolation: Isolation,
}

/// One plugin, compiled and ready to instantiate.
pub struct LoadedPlugin {
    shared: Arc<PluginShared>,
    pre: PluginPre<HostState>,
    limits: Limits,
    pool: Arc<Pool<Box<Live>>>,
    /// The hooks the plugin implements, from its `hooks` export, asked once.
    implemented: OnceLock<[bool; 5]>,
    hook_metrics: [(Counter, Histogram); 5],
    /// What the plugin declared reusable.
    decisions: Decisions,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.shared.name)
            .finish()
    }
}

/// A hook call: given the instance's exports, its store and the input, run the export.
pub type HookCall<'a, T> = BoxFuture<'a, wasmtime::Result<Result<T, HookError>>>;

impl LoadedPlugin {
    /// Wraps a prepared component; `trimmer` trims its idle instances.
    pub(super) fn new(
        shared: Arc<PluginShared>,
        pre: PluginPre<HostState>,
        limits: Limits,
        metrics: Arc<Metrics>,
        trimmer: &Trimmer,
    ) -> Self {
        let pool = Arc::new(Pool::new(worker::count()));
        let trimmed: Arc<dyn Trim> = pool.clone();
        trimmer.watch(Arc::downgrade(&trimmed));
        Self {
            shared: shared.clone(),
            pre,
            limits,
            pool,
            implemented: OnceLock::new(),
            hook_metrics: HOOKS.map(|hook| metrics.plugin_hook(&shared.name, hook.name())),
            decisions: Decisions::new(
                metrics.plugin_decisions_reused(&shared.name, Hook::OnRequest.name()),
                metrics.plugin_decisions_reused(&shared.name, Hook::OnResponse.name()),
            ),
            metrics,
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// Whether the plugin does not implement `hook` (known once it has been asked).
    pub fn skips(&self, hook: Hook) -> bool {
        self.implemented
            .get()
            .is_some_and(|implemented| !implemented[hook as usize])
    }

    /// The decisions the plugin declared reusable (`decisions.reuse`, `reuse-response`).
    pub(super) fn decisions(&self) -> &Decisions {
        &self.decisions
    }

    /// Runs one hook call on a pooled (or new) instance, within the plugin's limits. `scope` is
    /// the request the call serves (request hooks), so that holds are released with it.
    pub async fn call<I, T, F>(
        &self,
        hook: Hook,
        input: &I,
        scope: Option<&Arc<RequestScope>>,
        run: F,
    ) -> Outcome<T>
    where
        I: ?Sized + Sync,
        F: for<'a> FnOnce(&'a Guest, &'a mut Store<HostState>, &'a I) -> HookCall<'a, T>,
    {
        if self.skips(hook) {
            return Outcome::Skipped;
        }
        // Held until the instance is back in the pool or dropped.
        let Some(_turn) = self.pool.turn(self.limits.wall_timeout).await else {
            return self.fail(FailureKind::Busy, self.busy_detail());
        };
        let idle = match self.limits.isolation {
            Isolation::Reuse => self.pool.take(worker::index()),
            Isolation::Fresh => None,
        };
        let mut live = match idle {
            Some(live) => live,
            // Boxed: instantiating is rare, and its large future would otherwise be copied
            // along with every call's future.
            None => match Box::pin(self.instantiate()).await {
                Ok(live) => live,
                Err((kind, detail)) => return self.fail(kind, detail),
            },
        };
        let started = self.arm(&mut live.store, scope);
        let call = run(live.plugin.txgate_plugin_hooks(), &mut live.store, input);
        let result = within(started + self.limits.wall_timeout, call).await;
        let finished = Instant::now();
        let (calls, duration) = &self.hook_metrics[hook as usize];
        calls.inc();
        duration.observe(finished.duration_since(started).as_secs_f64());
        let data = live.store.data_mut();
        data.scope = None;
        data.take_back_lent();
        let Ok(result) = result else {
            // Cut while it waited (a sleep, a poll, the store): the instance is dropped.
            return self.fail(FailureKind::Timeout, self.wall_detail());
        };
        match result {
            Ok(Ok(value)) => {
                self.checkin(live, finished);
                Outcome::Done(value)
            }
            Ok(Err(HookError::Failed(reason))) => {
                self.checkin(live, finished);
                self.fail(FailureKind::Failed, reason)
            }
            Err(trap) => {
                tracing::debug!(plugin = %self.shared.name, trap = format!("{trap:?}"), "plugin trapped");
                let (kind, detail) = self.breach(live.store.data().breach, &trap);
                self.fail(kind, detail)
            }
        }
    }

    /// Asks the plugin which hooks it implements, on an instance that then joins the pool.
    pub async fn learn_hooks(&self) -> Result<(), String> {
        let mut live = Box::pin(self.instantiate())
            .await
            .map_err(|(_, detail)| detail)?;
        self.ask_hooks(&mut live)
            .await
            .map_err(|(_, detail)| detail)?;
        self.checkin(live, Instant::now());
        Ok(())
    }

    /// Asks the plugin which hooks it implements (its `hooks` export), once per loaded plugin:
    /// the others are never called.
    async fn ask_hooks(&self, live: &mut Live) -> Result<(), (FailureKind, String)> {
        self.arm(&mut live.store, None);
        let asking = live
            .plugin
            .txgate_plugin_hooks()
            .call_hooks(&mut live.store);
        let hooks = match tokio::time::timeout(self.limits.wall_timeout, asking).await {
            Ok(Ok(hooks)) => hooks,
            Ok(Err(trap)) => {
                let (kind, detail) = self.breach(live.store.data().breach, &trap);
                // What the plugin said before it trapped (a config error naming its key) tells
                // the operator more than the trap.
                let detail = match &live.store.data().last_error {
                    Some(said) => format!("{detail}; the plugin logged: {said}"),
                    None => detail,
                };
                return Err((kind, detail));
            }
            Err(_) => return Err((FailureKind::Timeout, self.wall_detail())),
        };
        let mut implemented = [false; 5];
        for hook in hooks {
            implemented[Hook::of(hook) as usize] = true;
        }
        let _ = self.implemented.set(implemented);
        Ok(())
    }

    fn breach(&self, breach: Breach, trap: &wasmtime::Error) -> (FailureKind, String) {
        match breach {
            Breach::Deadline => (
                FailureKind::Timeout,
                format!("ran past its {:?} budget", self.limits.timeout),
            ),
            Breach::Wall => (FailureKind::Timeout, self.wall_detail()),
            Breach::Memory => (
                FailureKind::Memory,
                format!(
                    "tried to use more than {} bytes of memory",
                    self.limits.memory_bytes_max
                ),
            ),
            Breach::None => (FailureKind::Trap, trap.root_cause().to_string()),
        }
    }

    fn busy_detail(&self) -> String {
        format!(
            "{IN_USE_MAX} calls held its instances for all of its wall_timeout_ms ({:?})",
            self.limits.wall_timeout
        )
    }

    fn wall_detail(&self) -> String {
        format!(
            "did not finish within its wall_timeout_ms ({:?})",
            self.limits.wall_timeout
        )
    }

    /// One `on-request` call with only what the runtime needs: an instance of this worker, its
    /// budget and epoch deadline, the request lent and taken back. No turn, wall-clock bound,
    /// metrics, reuse or failure handling: benchmarks set it beside a call through a chain, to
    /// tell the runtime's cost of a call from the gateway's. Whether the call returned.
    #[doc(hidden)]
    pub async fn call_on_request_unmanaged(&self, request: &Arc<RequestFacts>) -> bool {
        let mut live = match self.pool.take(worker::index()) {
            Some(live) => live,
            None => match Box::pin(self.instantiate()).await {
                Ok(live) => live,
                Err(_) => return false,
            },
        };
        self.arm(&mut live.store, None);
        let returned = match view::lend(&mut live.store, RequestView(request.clone())) {
            Ok(lent) => live
                .plugin
                .txgate_plugin_hooks()
                .call_on_request(&mut live.store, lent)
                .await
                .is_ok(),
            Err(_) => false,
        };
        live.store.data_mut().take_back_lent();
        if returned {
            self.pool.put(worker::index(), live, Instant::now());
        }
        returned
    }

    /// Drops this worker's idle instances, so the next call instantiates afresh (benchmarks
    /// compare the two).
    #[doc(hidden)]
    pub fn discard_idle(&self) {
        self.pool.clear(worker::index());
    }

    /// Records a failure that the caller found in the hook's output (too large, malformed).
    pub fn output_failure<T>(&self, detail: String) -> Outcome<T> {
        self.fail(FailureKind::Output, detail)
    }

    fn fail<T>(&self, kind: FailureKind, detail: String) -> Outcome<T> {
        self.metrics.plugin_error(&self.shared.name, kind.as_str());
        tracing::warn!(plugin = %self.shared.name, kind = kind.as_str(), %detail, "plugin call failed");
        Outcome::Failed(Failure {
            plugin: self.shared.name.clone(),
            kind,
            detail,
            on_error: self.limits.on_error,
        })
    }

    /// Resets the call budget and the deadlines before a call (or an instantiation); returns
    /// the start time.
    fn arm(&self, store: &mut Store<HostState>, scope: Option<&Arc<RequestScope>>) -> Instant {
        let data = store.data_mut();
        data.call
            .restart(self.limits.timeout, self.limits.wall_timeout);
        data.scope = scope.cloned();
        data.breach = Breach::None;
        data.audit_emitted = 0;
        data.reuse = None;
        data.reuse_response = None;
        let started = data.call.started;
        store.set_epoch_deadline(1);
        started
    }

    async fn instantiate(&self) -> Result<Box<Live>, (FailureKind, String)> {
        let state = HostState::new(self.shared.clone(), self.limits.memory_bytes_max);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| state);
        store.set_max_component_handles(HANDLES_MAX);
        store.epoch_deadline_callback(|mut context| {
            let data = context.data_mut();
            if data.call.end_segment() >= data.call.budget {
                data.breach = Breach::Deadline;
                return Err(wasmtime::Error::msg("the plugin ran past its timeout_ms"));
            }
            if data.call.started.elapsed() >= data.call.wall {
                data.breach = Breach::Wall;
                return Err(wasmtime::Error::msg(
                    "the plugin ran past its wall_timeout_ms",
                ));
            }
            // Under budget: let other requests on this worker run, then check again next tick.
            // tokio's own yield defers the wake-up until the runtime has polled for I/O; a plain
            // self-wake would keep the worker busy with loopers while new requests wait. The
            // resumption starts the next segment of the plugin's own execution.
            let resumed = data.call.resumed_ns.clone();
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    let now = u64::try_from(thread_cpu().as_nanos()).unwrap_or(u64::MAX);
                    resumed.store(now.max(1), Ordering::Release);
                }),
            ))
        });
        self.arm(&mut store, None);
        let instantiating = self.pre.instantiate_async(&mut store);
        let plugin = match tokio::time::timeout(self.limits.wall_timeout, instantiating).await {
            Ok(Ok(plugin)) => plugin,
            Ok(Err(error)) => return Err((FailureKind::Instantiate, format!("{error:#}"))),
            Err(_) => return Err((FailureKind::Timeout, self.wall_detail())),
        };
        Ok(Box::new(Live { store, plugin }))
    }

    /// Keeps an instance that served a call ending at `now` for the next one.
    fn checkin(&self, live: Box<Live>, now: Instant) {
        if self.limits.isolation == Isolation::Fresh {
            return;
        }
        self.pool.put(worker::index(), live, now);
    }
}

/// Runs `call` until `deadline`. Most hook calls finish in their first poll: the timer is armed
/// only for one that waits (a sleep, a poll, a durable write), so the others pay for none.
async fn within<T>(
    deadline: Instant,
    call: impl Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    let mut call = std::pin::pin!(call);
    match std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        Poll::Ready(value) => Ok(value),
        Poll::Pending => tokio::time::timeout_at(deadline.into(), call).await,
    }
}

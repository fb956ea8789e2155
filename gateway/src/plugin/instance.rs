//! One loaded plugin version: its compiled component, a pool of live instances per worker, and
//! the call path every hook goes through — budget, deadline, memory cap, failure classification
//! and metrics.
//!
//! An instance is reused after a successful call, and dropped after any failure (trap, deadline,
//! memory cap): a broken instance never serves another request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use wasmtime::{Store, UpdateDeadline};

use super::bindings::exports::txgate::plugin::hooks::Guest;
use super::bindings::txgate::plugin::types::HookError;
use super::bindings::{Plugin, PluginPre};
use super::state::{Breach, CallBudget, HostState, PluginShared, thread_cpu};
use crate::config::OnError;
use crate::metrics::{Metrics, Name};
use crate::store::BoxFuture;
use crate::worker;

/// Idle instances kept per plugin per worker.
const IDLE_PER_WORKER_MAX: usize = 32;

/// The hooks, for metrics labels and the not-implemented memo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `on-request`.
    OnRequest = 0,
    /// `on-step-request`.
    OnStepRequest = 1,
    /// `on-step-response`.
    OnStepResponse = 2,
    /// `on-compensate`.
    OnCompensate = 3,
    /// `on-response`.
    OnResponse = 4,
}

impl Hook {
    /// The WIT name.
    pub fn name(self) -> &'static str {
        match self {
            Self::OnRequest => "on-request",
            Self::OnStepRequest => "on-step-request",
            Self::OnStepResponse => "on-step-response",
            Self::OnCompensate => "on-compensate",
            Self::OnResponse => "on-response",
        }
    }
}

const HOOKS: [Hook; 5] = [
    Hook::OnRequest,
    Hook::OnStepRequest,
    Hook::OnStepResponse,
    Hook::OnCompensate,
    Hook::OnResponse,
];

/// A plugin call that did not produce a result.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The plugin.
    pub plugin: Name,
    /// `trap`, `timeout`, `memory`, `output`, `failed` (the plugin said so) or `instantiate`.
    pub kind: &'static str,
    /// What happened.
    pub detail: String,
    /// The plugin's policy.
    pub on_error: OnError,
}

/// What a hook call came to.
#[derive(Debug)]
pub enum Outcome<T> {
    /// The hook returned a result.
    Done(T),
    /// The plugin does not implement the hook.
    Skipped,
    /// The call failed; see [`Failure::on_error`].
    Failed(Failure),
}

struct Live {
    store: Store<HostState>,
    plugin: Plugin,
}

/// One plugin, compiled and ready to instantiate.
pub struct LoadedPlugin {
    shared: Arc<PluginShared>,
    pre: PluginPre<HostState>,
    on_error: OnError,
    timeout: Duration,
    memory_bytes_max: usize,
    idle: Vec<Mutex<Vec<Live>>>,
    unimplemented: [AtomicBool; 5],
    hook_metrics: [(Counter, Histogram); 5],
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
    /// Wraps a prepared component.
    pub fn new(
        shared: Arc<PluginShared>,
        pre: PluginPre<HostState>,
        limits: (OnError, Duration, usize),
        metrics: Arc<Metrics>,
    ) -> Self {
        let (on_error, timeout, memory_bytes_max) = limits;
        Self {
            shared: shared.clone(),
            pre,
            on_error,
            timeout,
            memory_bytes_max,
            idle: (0..worker::count())
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            unimplemented: Default::default(),
            hook_metrics: HOOKS.map(|hook| metrics.plugin_hook(&shared.name, hook.name())),
            metrics,
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// Whether the plugin said it does not implement `hook`.
    pub fn skips(&self, hook: Hook) -> bool {
        self.unimplemented[hook as usize].load(Ordering::Relaxed)
    }

    /// Runs one hook call on a pooled (or new) instance, within the plugin's limits.
    pub async fn call<I, T, F>(&self, hook: Hook, input: &I, run: F) -> Outcome<T>
    where
        I: ?Sized + Sync,
        F: for<'a> FnOnce(&'a Guest, &'a mut Store<HostState>, &'a I) -> HookCall<'a, T>,
    {
        if self.skips(hook) {
            return Outcome::Skipped;
        }
        let idle = self.slot().lock().expect("instance pool").pop();
        let mut live = match idle {
            Some(live) => live,
            // Boxed: instantiating is rare, and its large future would otherwise be copied
            // along with every call's future.
            None => match Box::pin(self.instantiate()).await {
                Ok(live) => live,
                Err(detail) => return self.fail("instantiate", detail),
            },
        };
        let started = self.arm(&mut live.store);
        let result = run(live.plugin.txgate_plugin_hooks(), &mut live.store, input).await;
        let (calls, duration) = &self.hook_metrics[hook as usize];
        calls.inc();
        duration.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(value)) => {
                self.checkin(live);
                Outcome::Done(value)
            }
            Ok(Err(HookError::NotImplemented)) => {
                self.unimplemented[hook as usize].store(true, Ordering::Relaxed);
                self.checkin(live);
                Outcome::Skipped
            }
            Ok(Err(HookError::Failed(reason))) => {
                self.checkin(live);
                self.fail("failed", reason)
            }
            Err(trap) => {
                tracing::debug!(plugin = %self.shared.name, trap = format!("{trap:?}"), "plugin trapped");
                let (kind, detail) = match live.store.data().breach {
                    Breach::Deadline => {
                        ("timeout", format!("ran past its {:?} budget", self.timeout))
                    }
                    Breach::Memory => (
                        "memory",
                        format!(
                            "tried to use more than {} bytes of memory",
                            self.memory_bytes_max
                        ),
                    ),
                    Breach::None => ("trap", trap.root_cause().to_string()),
                };
                self.fail(kind, detail)
            }
        }
    }

    /// Drops this worker's idle instances, so the next call instantiates afresh (benchmarks
    /// compare the two).
    #[doc(hidden)]
    pub fn discard_idle(&self) {
        self.slot().lock().expect("instance pool").clear();
    }

    /// Records a failure that the caller found in the hook's output (too large, malformed).
    pub fn output_failure<T>(&self, detail: String) -> Outcome<T> {
        self.fail("output", detail)
    }

    fn fail<T>(&self, kind: &'static str, detail: String) -> Outcome<T> {
        self.metrics.plugin_error(&self.shared.name, kind);
        tracing::warn!(plugin = %self.shared.name, kind, %detail, "plugin call failed");
        Outcome::Failed(Failure {
            plugin: self.shared.name.clone(),
            kind,
            detail,
            on_error: self.on_error,
        })
    }

    /// Resets the call budget and the deadline before a call (or an instantiation); returns the
    /// start time.
    fn arm(&self, store: &mut Store<HostState>) -> Instant {
        let data = store.data_mut();
        data.call = CallBudget::new(self.timeout);
        data.breach = Breach::None;
        let started = data.call.started;
        store.set_epoch_deadline(1);
        started
    }

    fn slot(&self) -> &Mutex<Vec<Live>> {
        &self.idle[worker::index() % self.idle.len()]
    }

    async fn instantiate(&self) -> Result<Live, String> {
        let state = HostState::new(self.shared.clone(), self.memory_bytes_max);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| state);
        store.epoch_deadline_callback(|mut context| {
            let data = context.data_mut();
            if data.call.end_segment() >= data.call.budget {
                data.breach = Breach::Deadline;
                return Err(wasmtime::Error::msg("the plugin ran past its timeout_ms"));
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
        self.arm(&mut store);
        let plugin = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(Live { store, plugin })
    }

    fn checkin(&self, live: Live) {
        let mut idle = self.slot().lock().expect("instance pool");
        if idle.len() < IDLE_PER_WORKER_MAX {
            idle.push(live);
        }
    }
}

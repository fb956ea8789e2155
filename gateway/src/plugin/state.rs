//! What a plugin instance's store carries: the plugin it belongs to, a deny-all WASI context,
//! memory limits that remember being hit, and the current hook call's time budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::engine::EPOCH_TICK;
use super::reuse::Reuse;
use super::scope::RequestScope;
use crate::audit::AuditLog;
use crate::metrics::Name;
use crate::store::{Durability, Store};

/// Per-instance table limits: generous for Rust components, far below what could hurt the host.
const TABLE_ELEMENTS_MAX: usize = 100_000;
const INSTANCES_MAX: usize = 64;
const TABLES_MAX: usize = 64;
const MEMORIES_MAX: usize = 16;

/// What every instance of one plugin version shares.
#[derive(Debug)]
pub struct PluginShared {
    /// The plugin's name (a metrics label and the key-value namespace).
    pub name: Name,
    /// `[plugins.NAME.config]` as JSON text.
    pub config_json: String,
    /// Where its keys live.
    pub durability: Durability,
    /// The store behind its keys.
    pub store: Arc<dyn Store>,
    /// This process's boot id.
    pub boot_id: Arc<str>,
    /// Where its audit events go.
    pub audit: Arc<AuditLog>,
    /// The key-value namespace: the plugin's name.
    pub namespace: Arc<str>,
    /// Whether its declared decisions may be reused (`reuse_decisions`); when not, a
    /// declaration is accepted and dropped.
    pub reuse_decisions: bool,
}

/// The time budget of the hook call under way: the plugin's own execution, not the time it
/// waits in host calls or while the worker runs other requests between epoch ticks.
///
/// A call runs in segments: from its start (or a resumption) to an epoch tick or a waiting host
/// call. The first segment, at most one tick of execution, is measured by the wall clock, which
/// costs nothing, and capped at one tick so that the operating system descheduling the worker
/// is not charged to the plugin; later segments by the worker thread's CPU clock, so neither
/// other requests' work nor preemption is charged either.
#[derive(Debug)]
pub struct CallBudget {
    /// When the call started.
    pub started: Instant,
    /// The plugin's `timeout_ms`.
    pub budget: Duration,
    /// The plugin's `wall_timeout_ms`.
    pub wall: Duration,
    /// Execution charged in finished segments.
    pub charged: Duration,
    /// The thread CPU time at which the running segment began (`None`: the first segment).
    pub segment_from: Option<Duration>,
    /// Set by a finished yield: the thread CPU time at which the call resumed (ns, 0 = none).
    pub resumed_ns: Arc<AtomicU64>,
}

/// The current thread's CPU time.
pub(super) fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

impl CallBudget {
    /// A fresh budget.
    pub fn new(budget: Duration, wall: Duration) -> Self {
        Self {
            started: Instant::now(),
            budget,
            wall,
            charged: Duration::ZERO,
            segment_from: None,
            resumed_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same budget, fresh for the next call on this instance. The yield flag is kept, not
    /// reallocated: a call's yields end with it (an instance whose call was cut is dropped).
    pub fn restart(&mut self, budget: Duration, wall: Duration) {
        self.started = Instant::now();
        self.budget = budget;
        self.wall = wall;
        self.charged = Duration::ZERO;
        self.segment_from = None;
        self.resumed_ns.store(0, Ordering::Release);
    }

    /// Ends the running segment (at a tick, or before a waiting host call) and returns the
    /// execution charged so far.
    pub fn end_segment(&mut self) -> Duration {
        let resumed = self.resumed_ns.swap(0, Ordering::AcqRel);
        let from = if resumed != 0 {
            Some(Duration::from_nanos(resumed))
        } else {
            self.segment_from.take()
        };
        self.charged += match from {
            Some(from) => thread_cpu().saturating_sub(from),
            None if self.charged.is_zero() => self.started.elapsed().min(EPOCH_TICK),
            None => Duration::ZERO,
        };
        self.segment_from = None;
        self.charged
    }

    /// Starts a segment now (after a waiting host call returns).
    pub fn start_segment(&mut self) {
        self.segment_from = Some(thread_cpu());
    }
}

/// Why the last call broke a limit, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Breach {
    /// No limit broken.
    #[default]
    None,
    /// Ran past `timeout_ms`.
    Deadline,
    /// Ran past `wall_timeout_ms`.
    Wall,
    /// Tried to grow memory past `memory_limit_bytes`.
    Memory,
}

/// How a lent view is taken back from the table: the deleter of its type.
pub(super) type TakeBack = fn(&mut ResourceTable, u32);

/// The data of one instance's store.
pub struct HostState {
    /// The plugin.
    pub shared: Arc<PluginShared>,
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    /// The views lent for the call under way, each with how to take it back (`view.rs`).
    pub(super) lent: Vec<(u32, TakeBack)>,
    memory_bytes_max: usize,
    /// The call under way.
    pub call: CallBudget,
    /// The request the call serves (`on-request`, `on-response`); none in saga hooks.
    pub scope: Option<Arc<RequestScope>>,
    /// The limit the current call broke.
    pub breach: Breach,
    /// Audit events the current call emitted.
    pub audit_emitted: u32,
    /// What the current call declared reusable (`decisions.reuse`).
    pub(crate) reuse: Option<Reuse>,
    /// What the current call declared reusable of its response changes
    /// (`decisions.reuse-response`).
    pub(crate) reuse_response: Option<Reuse>,
    /// The last message the plugin logged at error level (cut to the log's limit): a plugin
    /// that refuses its config logs why, then traps, and the refusal quotes it.
    pub last_error: Option<String>,
}

impl HostState {
    /// A fresh state: WASI with no preopened directories, no environment, no arguments, no
    /// sockets and no name lookups. stdio goes nowhere.
    pub fn new(shared: Arc<PluginShared>, memory_bytes_max: usize) -> Self {
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            shared,
            wasi,
            table: ResourceTable::new(),
            lent: Vec::new(),
            memory_bytes_max,
            call: CallBudget::new(Duration::ZERO, Duration::ZERO),
            scope: None,
            breach: Breach::None,
            audit_emitted: 0,
            reuse: None,
            reuse_response: None,
            last_error: None,
        }
    }
}

impl HostState {
    /// What the call that just ended declared reusable; nothing when it emitted an audit
    /// event, which a reused decision would not emit again.
    pub(super) fn take_reuse(&mut self) -> Option<Reuse> {
        let reuse = self.reuse.take();
        reuse.filter(|_| self.audit_emitted == 0)
    }

    /// The same for the response changes of an `on-response` call.
    pub(super) fn take_reuse_response(&mut self) -> Option<Reuse> {
        let reuse = self.reuse_response.take();
        reuse.filter(|_| self.audit_emitted == 0)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.breach = Breach::Memory;
            return Err(wasmtime::Error::msg(format!(
                "memory cap: tried to grow to {desired} bytes; the limit is {}",
                self.memory_bytes_max
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }

    fn instances(&self) -> usize {
        INSTANCES_MAX
    }

    fn tables(&self) -> usize {
        TABLES_MAX
    }

    fn memories(&self) -> usize {
        MEMORIES_MAX
    }
}

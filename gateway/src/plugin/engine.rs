//! The one wasmtime `Engine` of the process, its epoch ticker, and the `Linker` every plugin is
//! instantiated through.
//!
//! - Epoch interruption bounds each hook call's wall time: a ticker bumps the epoch every
//!   [`EPOCH_TICK`], and each store's deadline callback decides, tick by tick, whether the call
//!   is over budget (then it traps) or yields to the runtime so other requests on the worker move.
//! - The pooling allocator pre-reserves instance, memory and stack slots, so instantiation is a
//!   few microseconds and memory is bounded up front.
//! - WASI preview 2 is linked because every `wasm32-wasip2` component imports it, even for pure
//!   code; each store's WASI context denies everything (see `state.rs`).

use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{Plugin, PluginPre};
use super::pool::Trimmer;
use super::state::HostState;
use crate::error::{Error, ErrorKind};

/// How often the epoch advances; deadlines are counted in these ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The hooks' export, up to its version.
const HOOKS_EXPORT: &str = "txgate:plugin/hooks@";
/// The plugin ABI this gateway runs (`plugin-sdk/wit/plugin.wit`).
const ABI_VERSION: &str = "0.2.3";
/// The oldest ABI this gateway still runs: 0.2.1 to 0.2.3 only added host functions, so a
/// component built for 0.2.0 links against them unchanged (wasmtime matches semver-compatible names).
const ABI_OLDEST: &str = "0.2.0";

/// Pool sizes: live plugin instances across all plugins, versions and workers.
const POOL_COMPONENT_INSTANCES: u32 = 1000;
const POOL_CORE_INSTANCES: u32 = 8000;
const POOL_MEMORIES: u32 = 2000;
const POOL_TABLES: u32 = 4000;
const POOL_STACKS: u32 = 1000;
/// A linear memory slot: the largest `memory_limit_bytes` the config accepts.
const POOL_MEMORY_BYTES_MAX: usize = 4 * 1024 * 1024 * 1024;
/// What a freed instance slot keeps resident, reset with a memset instead of handed back to the
/// kernel: none. Kept bytes stay resident for the life of the process in every slot ever used,
/// and the memset touches every page of them, used or not. At 1 MiB (the whole memory of a small
/// Rust plugin), a burst of 2,000 clients on a route with a durable plugin left 924 MiB resident
/// in freed slots (`bench/burst.sh`, the build before); at 64 KiB, trimming 60 idle instances
/// after a burst *added* 3.75 MiB, as a Rust plugin's lowest pages are the bottom of its stack,
/// which calls rarely reach. A fresh instance per call (`isolation = "fresh"`) pays page faults
/// instead (bench/RESULTS.md, "Plugins under pressure").
const KEEP_RESIDENT_BYTES: usize = 0;
/// Freed slots kept warm (affine to their module, with its memory image mapped) before the
/// allocator reuses warm slots rather than take cold ones: the set of slots ever used then stays
/// close to the most instances live at once, not the pool's size.
const POOL_WARM_SLOTS_MAX: u32 = 32;
/// Set (to anything) in the gateway's environment, the engine writes `/tmp/perf-PID.map`, so
/// that `perf report` names the plugins' own functions instead of `[JIT]` addresses.
const PERFMAP_ENV: &str = "TXGATE_PLUGIN_PERFMAP";
/// Native stack for one hook call.
const WASM_STACK_BYTES_MAX: usize = 512 * 1024;

/// The engine and linker, shared by every plugin version, and the trimmer of their idle
/// instances.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    trimmer: Trimmer,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runtime")
    }
}

impl Runtime {
    /// Builds the engine (and starts its epoch ticker) and the linker.
    pub fn new() -> Result<Self, Error> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_COMPONENT_INSTANCES)
            .total_core_instances(POOL_CORE_INSTANCES)
            .total_memories(POOL_MEMORIES)
            .total_tables(POOL_TABLES)
            .total_stacks(POOL_STACKS)
            .max_memory_size(POOL_MEMORY_BYTES_MAX)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES)
            .max_unused_warm_slots(POOL_WARM_SLOTS_MAX);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(WASM_STACK_BYTES_MAX)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if std::env::var_os(PERFMAP_ENV).is_some() {
            // Plugin authors' profiling: perf then names each guest function.
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(wasm_error("cannot start the plugin engine"))?;
        spawn_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(wasm_error("cannot link WASI"))?;
        Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(wasm_error("cannot link the host interfaces"))?;
        Ok(Self {
            engine,
            linker,
            trimmer: Trimmer::start(),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What trims every plugin's idle instances.
    pub(super) fn trimmer(&self) -> &Trimmer {
        &self.trimmer
    }

    /// Compiles a component and checks it implements the world (see [`Runtime::link`]).
    pub fn prepare(&self, bytes: &[u8]) -> Result<PluginPre<HostState>, String> {
        self.link(&self.compile(bytes)?)
    }

    /// Compiles a component (the slow part of a load: `compiled.rs` keeps the result).
    pub(super) fn compile(&self, bytes: &[u8]) -> Result<Component, String> {
        Component::new(&self.engine, bytes)
            .map_err(|e| format!("not a WebAssembly component the gateway can compile: {e:#}"))
    }

    /// Checks a compiled component implements the world: every import it needs is offered and
    /// every hook is exported. Errors name the missing part, and a plugin built for another
    /// version of the plugin ABI is told so.
    pub(super) fn link(&self, component: &Component) -> Result<PluginPre<HostState>, String> {
        self.check_abi(component)?;
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| format!("imports something the gateway does not offer: {e:#}"))?;
        PluginPre::new(pre)
            .map_err(|e| format!("does not implement the txgate:plugin world: {e:#}"))
    }
}

impl Runtime {
    /// Refuses a component whose hooks are those of another ABI version, before the linker
    /// would refuse it in terms only a toolchain author reads.
    fn check_abi(&self, component: &Component) -> Result<(), String> {
        let exports = component.component_type();
        let built_for = exports
            .exports(&self.engine)
            .find_map(|(name, _)| name.strip_prefix(HOOKS_EXPORT).map(str::to_string));
        let numbers =
            |v: &str| -> Vec<u64> { v.split('.').map(|n| n.parse().unwrap_or(0)).collect() };
        let Some(version) = built_for.filter(|version| {
            numbers(version) < numbers(ABI_OLDEST) || numbers(version) > numbers(ABI_VERSION)
        }) else {
            return Ok(());
        };
        let age = if numbers(&version) < numbers(ABI_VERSION) {
            "the old"
        } else {
            "a newer"
        };
        Err(format!(
            "was built for {age} plugin ABI txgate:plugin@{version}, and this gateway runs \
             txgate:plugin@{ABI_VERSION}; rebuild the plugin against the txgate-plugin-sdk of \
             this release"
        ))
    }
}

/// Advances the engine's epoch every tick, for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("txgate-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the epoch ticker: plugin deadlines will not fire");
    }
}

fn wasm_error(what: &'static str) -> impl Fn(wasmtime::Error) -> Error {
    move |e| Error::new(ErrorKind::Internal, format!("{what}: {e:#}"))
}

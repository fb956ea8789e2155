//! Loading every plugin of a config.
//!
//! A [`PluginSet`] is one config version's plugins: every plugin compiled, and each route's
//! chain resolved. It is built completely before a version goes live (see `version.rs`), so a
//! plugin that fails to compile fails the whole load and the running version stays.
//!
//! Compiled plugins are kept on disk (`compiled.rs`): a restart or a reload compiles only the
//! modules it has not compiled before.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::compiled::Artifacts;
use super::engine::Runtime;
use super::instance::{Limits, LoadedPlugin};
use super::state::PluginShared;
use crate::audit::AuditLog;
use crate::config::{self, Config, PluginConfig, PluginState};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::{Durability, Quota, Store};

/// Largest component file read.
const MODULE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Every plugin of one config version, and each route's chain.
#[derive(Debug)]
pub struct PluginSet {
    chains: HashMap<String, Arc<[Arc<LoadedPlugin>]>>,
    by_name: HashMap<String, Arc<LoadedPlugin>>,
    names: Vec<String>,
    quotas: Vec<(String, Quota)>,
    store: Arc<dyn Store>,
}

impl PluginSet {
    /// Compiles every plugin of a config and resolves each route's chain. Every failure is
    /// reported with its key.
    pub fn build(config: &Config, env: &PluginEnv) -> Result<Self, Error> {
        build(config, env, &Artifacts::for_config(config))
            .map_err(|issues| Error::config(&config.path, issues))
    }

    /// `txgate check`: builds the set as a start would, every plugin asked for its hooks (a
    /// plugin that refuses its config fails here), and keeps no compiled artifact.
    pub fn check(config: &Config, env: &PluginEnv) -> Result<(), Error> {
        build(config, env, &Artifacts::none())
            .map(drop)
            .map_err(|issues| Error::config(&config.path, issues))
    }

    /// Puts the plugins' quotas in force (when their version goes live).
    pub fn activate(&self) {
        for (name, quota) in &self.quotas {
            self.store.set_quota(name, *quota);
        }
    }

    /// The plugins of a route, in request order (empty when it has none).
    pub fn chain(&self, route: &str) -> Option<&Arc<[Arc<LoadedPlugin>]>> {
        self.chains.get(route)
    }

    /// A plugin, by name.
    pub fn plugin(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.by_name.get(name)
    }

    /// The loaded plugins' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// What the runtime needs besides the config.
#[derive(Clone, Debug)]
pub struct PluginEnv {
    /// The engine.
    pub runtime: Runtime,
    /// The store behind every plugin's key-value namespace.
    pub store: Arc<dyn Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// This process's boot id.
    pub boot_id: Arc<str>,
    /// The audit stream.
    pub audit: Arc<AuditLog>,
}

/// Compiles a config's plugins into a set; every failure is reported with its key.
fn build(
    config: &Config,
    env: &PluginEnv,
    artifacts: &Artifacts,
) -> Result<PluginSet, Vec<config::ConfigIssue>> {
    let mut keys = HashSet::new();
    let mut loaded = HashMap::new();
    let mut issues = Vec::new();
    for (name, compiled) in compile_all(config, env, artifacts) {
        match compiled {
            Ok((plugin, key)) => {
                keys.insert(key);
                loaded.insert(name.clone(), Arc::new(plugin));
            }
            Err(reason) => issues.push(config::ConfigIssue::new(
                format!("plugins.{name}.module"),
                reason,
            )),
        }
    }
    if issues.is_empty() {
        issues = ask_hooks(&loaded);
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    artifacts.retain(&keys);
    let chains = config
        .routes
        .iter()
        .filter(|route| !route.plugins.is_empty())
        .map(|route| {
            let chain: Vec<_> = route
                .plugins
                .iter()
                .filter_map(|name| loaded.get(name).cloned())
                .collect();
            (route.name.clone(), Arc::from(chain))
        })
        .collect();
    let quotas = config
        .plugins
        .iter()
        .map(|(name, plugin)| {
            let quota = Quota {
                keys_max: plugin.kv_keys_max,
                bytes_max: plugin.kv_bytes_max,
            };
            (name.clone(), quota)
        })
        .collect();
    let mut names: Vec<String> = loaded.keys().cloned().collect();
    names.sort();
    Ok(PluginSet {
        chains,
        by_name: loaded,
        names,
        quotas,
        store: env.store.clone(),
    })
}

/// Asks every plugin for its hooks, so that a version goes live knowing what to call, and a
/// plugin whose `hooks` fails is refused with the rest of the config. Plugin calls are async;
/// a version may be built inside the runtime (a reload) or before it, so the asking runs on a
/// thread of its own.
fn ask_hooks(loaded: &HashMap<String, Arc<LoadedPlugin>>) -> Vec<config::ConfigIssue> {
    let asked = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(runtime.block_on(async {
                    let mut failed = Vec::new();
                    for (name, plugin) in loaded {
                        if let Err(reason) = plugin.learn_hooks().await {
                            failed.push((name.clone(), reason));
                        }
                    }
                    failed
                }))
            })
            .join()
    });
    let failed = match asked {
        Ok(Ok(failed)) => failed,
        Ok(Err(reason)) => vec![("*".to_string(), reason)],
        Err(_) => vec![("*".to_string(), "asking for its hooks panicked".to_string())],
    };
    failed
        .into_iter()
        .map(|(name, reason)| {
            config::ConfigIssue::new(
                format!("plugins.{name}.module"),
                format!("its hooks() call failed: {reason}"),
            )
        })
        .collect()
}

/// One plugin compiled (or loaded from the cache) with its artifact's key, or why it was not.
type Compiled = Result<(LoadedPlugin, String), String>;

/// Compiles (or loads from the cache) every plugin of a config, one thread per core: hashing,
/// loading and compiling are CPU-bound, and a start-up or a reload waits for the slowest thread
/// only. The results come back in the config's order.
fn compile_all<'a>(
    config: &'a Config,
    env: &PluginEnv,
    artifacts: &Artifacts,
) -> Vec<(&'a String, Compiled)> {
    let plugins: Vec<(&String, &PluginConfig)> = config.plugins.iter().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = plugins.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = plugins
            .chunks(per_thread)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&(name, plugin)| {
                            (name, compile_one(config, name, plugin, env, artifacts))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| {
                part.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn compile_one(
    config: &Config,
    name: &str,
    plugin: &PluginConfig,
    env: &PluginEnv,
    artifacts: &Artifacts,
) -> Result<(LoadedPlugin, String), String> {
    let path = config.resolve(&plugin.module);
    let bytes = read_module(&path)?;
    let compiled = artifacts.component(&env.runtime, name, &bytes)?;
    let pre = env.runtime.link(&compiled.component)?;
    let config_json = serde_json::to_string(&plugin.config).map_err(|e| e.to_string())?;
    let shared = Arc::new(PluginShared {
        name: Arc::new(name.to_string()),
        config_json,
        durability: match plugin.state {
            PluginState::Durable => Durability::Durable,
            PluginState::Volatile => Durability::Volatile,
        },
        store: env.store.clone(),
        boot_id: env.boot_id.clone(),
        audit: env.audit.clone(),
        namespace: name.into(),
        reuse_decisions: plugin.reuse_decisions,
    });
    let limits = Limits {
        on_error: plugin.on_error,
        timeout: Duration::from_millis(plugin.timeout_ms),
        wall_timeout: Duration::from_millis(plugin.wall_timeout_ms),
        memory_bytes_max: usize::try_from(plugin.memory_limit_bytes).unwrap_or(usize::MAX),
        isolation: plugin.isolation,
    };
    let loaded = LoadedPlugin::new(
        shared,
        pre,
        limits,
        env.metrics.clone(),
        env.runtime.trimmer(),
    );
    Ok((loaded, compiled.key))
}

fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MODULE_BYTES_MAX {
        return Err(format!(
            "{} is {size} bytes; the limit is {MODULE_BYTES_MAX}",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

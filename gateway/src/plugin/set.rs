//! Loading every plugin of a config, and hot reload.
//!
//! A [`PluginSet`] is one version: every plugin compiled, and each route's chain resolved. The
//! live version sits behind an [`ArcSwap`]; a request takes the `Arc` once and keeps that
//! version to its end, so a reload never changes the plugins under a running request. A reload
//! compiles the new version completely before the swap; if anything fails, the old version stays
//! and the error is reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::engine::Runtime;
use super::instance::LoadedPlugin;
use super::state::PluginShared;
use crate::config::{self, Config, PluginConfig};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::Store;

/// Largest component file read.
const MODULE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Every plugin of one config version, and each route's chain.
#[derive(Debug)]
pub struct PluginSet {
    version: u64,
    chains: HashMap<String, Arc<[Arc<LoadedPlugin>]>>,
    names: Vec<String>,
}

impl PluginSet {
    /// The version number (1 at start, +1 per successful reload).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The plugins of a route, in request order (empty when it has none).
    pub fn chain(&self, route: &str) -> Option<&Arc<[Arc<LoadedPlugin>]>> {
        self.chains.get(route)
    }

    /// The loaded plugins' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// What the runtime needs besides the config.
#[derive(Clone)]
pub struct PluginEnv {
    /// The engine.
    pub runtime: Runtime,
    /// The store behind every plugin's key-value namespace.
    pub store: Arc<dyn Store>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// This process's boot id.
    pub boot_id: Arc<str>,
}

/// The live plugin version and what a reload needs.
pub struct Plugins {
    env: PluginEnv,
    current: ArcSwap<PluginSet>,
    routes: Vec<(String, Vec<String>)>,
    config_path: PathBuf,
    versions: AtomicU64,
    reloading: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("version", &self.current.load().version)
            .finish()
    }
}

/// The result of a reload.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The new version.
    pub version: u64,
    /// Its plugins.
    pub plugins: Vec<String>,
    /// How long compiling took.
    pub elapsed: Duration,
}

impl Plugins {
    /// Compiles every plugin of the config. Routes keep the plugin lists they start with; a
    /// reload changes modules and plugin config, not routes.
    pub fn load(config: &Config, env: PluginEnv) -> Result<Self, Error> {
        let routes: Vec<(String, Vec<String>)> = config
            .routes
            .iter()
            .map(|r| (r.name.clone(), r.plugins.clone()))
            .collect();
        let set = build(config, &routes, &env, 1)
            .map_err(|issues| Error::config(&config.path, issues))?;
        Ok(Self {
            env,
            current: ArcSwap::from_pointee(set),
            routes,
            config_path: config.path.clone(),
            versions: AtomicU64::new(1),
            reloading: std::sync::Mutex::new(()),
        })
    }

    /// The live version.
    pub fn current(&self) -> Arc<PluginSet> {
        self.current.load_full()
    }

    /// Re-reads the config file, compiles its plugins and swaps them in. Blocking (it compiles):
    /// call it from a blocking thread. On failure the running plugins stay.
    pub fn reload(&self) -> Result<Reloaded, Error> {
        let _one_at_a_time = self.reloading.lock().expect("reload lock");
        let started = std::time::Instant::now();
        let config = config::load(&self.config_path)?;
        let version = self.versions.load(Ordering::Relaxed) + 1;
        let set = build(&config, &self.routes, &self.env, version)
            .map_err(|issues| Error::config(&self.config_path, issues))?;
        let plugins = set.names.clone();
        self.current.store(Arc::new(set));
        self.versions.store(version, Ordering::Relaxed);
        Ok(Reloaded {
            version,
            plugins,
            elapsed: started.elapsed(),
        })
    }
}

/// Compiles a config's plugins into a set; every failure is reported with its key.
fn build(
    config: &Config,
    routes: &[(String, Vec<String>)],
    env: &PluginEnv,
    version: u64,
) -> Result<PluginSet, Vec<config::ConfigIssue>> {
    let mut loaded = HashMap::new();
    let mut issues = Vec::new();
    for (name, plugin) in &config.plugins {
        match compile_one(config, name, plugin, env) {
            Ok(plugin) => {
                loaded.insert(name.clone(), Arc::new(plugin));
            }
            Err(reason) => issues.push(config::ConfigIssue::new(
                format!("plugins.{name}.module"),
                reason,
            )),
        }
    }
    let mut chains = HashMap::new();
    for (route, names) in routes {
        let mut chain = Vec::with_capacity(names.len());
        for name in names {
            match loaded.get(name) {
                Some(plugin) => chain.push(plugin.clone()),
                None if config.plugins.contains_key(name) => {}
                None => issues.push(config::ConfigIssue::new(
                    format!("plugins.{name}"),
                    format!("route `{route}` uses this plugin; a reload cannot remove it"),
                )),
            }
        }
        if !chain.is_empty() {
            chains.insert(route.clone(), Arc::from(chain));
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    let mut names: Vec<String> = loaded.into_keys().collect();
    names.sort();
    Ok(PluginSet {
        version,
        chains,
        names,
    })
}

fn compile_one(
    config: &Config,
    name: &str,
    plugin: &PluginConfig,
    env: &PluginEnv,
) -> Result<LoadedPlugin, String> {
    let path = config.resolve(&plugin.module);
    let bytes = read_module(&path)?;
    let pre = env.runtime.prepare(&bytes)?;
    let config_json = serde_json::to_string(&plugin.config).map_err(|e| e.to_string())?;
    let shared = Arc::new(PluginShared {
        name: Arc::new(name.to_string()),
        config_json,
        state: plugin.state,
        store: env.store.clone(),
        boot_id: env.boot_id.clone(),
        namespace: format!("kv/{name}"),
    });
    let limits = (
        plugin.on_error,
        Duration::from_millis(plugin.timeout_ms),
        usize::try_from(plugin.memory_limit_bytes).unwrap_or(usize::MAX),
    );
    Ok(LoadedPlugin::new(shared, pre, limits, env.metrics.clone()))
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

/// `txgate check`: compiles every plugin of a config and checks it implements the world.
pub fn check_all(config: &Config) -> Result<(), Error> {
    let runtime = Runtime::new()?;
    let issues: Vec<config::ConfigIssue> = config
        .plugins
        .iter()
        .filter_map(|(name, plugin)| {
            let bytes = read_module(&config.resolve(&plugin.module));
            let result = bytes.and_then(|bytes| runtime.prepare(&bytes).map(|_| ()));
            result
                .err()
                .map(|reason| config::ConfigIssue::new(format!("plugins.{name}.module"), reason))
        })
        .collect();
    if issues.is_empty() {
        Ok(())
    } else {
        Err(Error::config(&config.path, issues))
    }
}

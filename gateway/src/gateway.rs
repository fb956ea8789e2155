//! The running gateway: the store, the saga engine and the live config version, shared by every
//! connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::audit::AuditLog;
use crate::config::Backend;
use crate::config::Config;
use crate::error::{Error, ErrorKind};
use crate::metrics::{Metrics, Name};
use crate::plugin::{self, PluginEnv};
use crate::saga::{Engine, EngineParts, Live};
use crate::store::embedded::Named;
use crate::store::{Embedded, EmbeddedLimits, FleetSettings, Health, Postgres, Quota, Store};
use crate::version::{Env, Reloaded, Running, Version};
use crate::worker::{Job, Spawner};

/// How often expired rows and keys are removed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Shared state of a running gateway.
#[derive(Debug)]
pub struct Gateway {
    running: Arc<Running>,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    jobs: Mutex<Vec<mpsc::UnboundedReceiver<Job>>>,
    ready: watch::Sender<bool>,
    /// The sweeper thread, once started: the gateway is not ready without it.
    sweeper: Mutex<Option<std::thread::JoinHandle<()>>>,
    unmatched: Name,
    /// The audit stream: plugins' events and operators' actions.
    audit: Arc<AuditLog>,
}

impl Gateway {
    /// Builds the gateway from a validated config: opens the store and builds the first
    /// version (plugins compiled).
    pub fn new(config: Config, metrics: Arc<Metrics>, workers: usize) -> Result<Self, Error> {
        let boot_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
        let store = open_store(&config, &metrics, &boot_id)?;
        let audit_file =
            (!config.audit.file.as_os_str().is_empty()).then(|| config.resolve(&config.audit.file));
        let audit = Arc::new(AuditLog::open(
            audit_file.as_deref(),
            &config.gateway_id(),
            metrics.clone(),
        )?);
        let env = Env {
            metrics: metrics.clone(),
            workers,
            plugins: PluginEnv {
                runtime: plugin::Runtime::new()?,
                store: store.clone(),
                metrics: metrics.clone(),
                boot_id,
                audit: audit.clone(),
            },
        };
        let retention = Duration::from_secs(config.store.retention_secs);
        let cache_entries_max =
            usize::try_from(config.store.cache_entries_max).unwrap_or(usize::MAX);
        let version = Version::build(config, 1, None, &env)?;
        tracing::info!(plugins = ?version.plugins.names(), "plugins loaded");
        let running = Arc::new(Running::new(version, env));
        let (spawner, jobs) = Spawner::new(workers);
        let engine = Engine::new(EngineParts {
            store: store.clone(),
            live: running.clone() as Arc<dyn Live>,
            metrics: metrics.clone(),
            spawner,
            retention,
            cache_entries_max,
        });
        Ok(Self {
            running,
            metrics,
            store,
            engine: Arc::new(engine),
            jobs: Mutex::new(jobs),
            ready: watch::channel(false).0,
            sweeper: Mutex::new(None),
            unmatched: Arc::new("_unmatched".to_string()),
            audit,
        })
    }

    /// Takes the workers' job queues (once, when the workers start).
    pub fn take_job_queues(&self) -> Vec<mpsc::UnboundedReceiver<Job>> {
        std::mem::take(&mut *self.jobs.lock().expect("job queues"))
    }

    /// Everything that must happen before the gateway is ready: resume every unfinished saga,
    /// and start the sweeper. Runs on a thread of its own, beside the workers.
    pub fn start_up(&self) -> Result<(), Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorKind::Internal, "start-up runtime").with_cause(e))?;
        let resumed = runtime.block_on(self.engine.recover())?;
        tracing::info!(resumed, "unfinished sagas resumed");
        self.engine.serve_fleet();
        self.spawn_sweeper();
        Ok(())
    }

    fn spawn_sweeper(&self) {
        let store = self.store.clone();
        let spawned = std::thread::Builder::new()
            .name("txgate-sweep".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                loop {
                    std::thread::sleep(SWEEP_INTERVAL);
                    match runtime.block_on(store.expire()) {
                        Ok(0) => {}
                        Ok(removed) => tracing::debug!(removed, "expired rows and keys removed"),
                        Err(error) => tracing::warn!(%error, "expiry did not run"),
                    }
                }
            });
        match spawned {
            Ok(thread) => *self.sweeper.lock().expect("sweeper") = Some(thread),
            Err(error) => {
                tracing::error!(%error, "cannot start the sweeper: expired rows stay until restart");
            }
        }
    }

    /// Writes out what the store has queued (graceful shutdown).
    pub fn close(&self) {
        self.store.close();
    }

    /// The live config version.
    pub fn version(&self) -> Arc<Version> {
        self.running.current()
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.running.current().config.clone()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The saga engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The audit stream.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Reloads the config file (blocking: plugins compile), for SIGHUP or `POST /admin/reload`.
    pub fn reload(&self) -> Result<Reloaded, Error> {
        self.running.reload()
    }

    /// The route label used for requests no route matched.
    pub fn unmatched_label(&self) -> &Name {
        &self.unmatched
    }

    /// Whether `/readyz` answers 200: started, not shutting down, the store can write and its
    /// writer moves, and the sweeper runs. `Err` says why not.
    pub fn readiness(&self) -> Result<(), String> {
        if !*self.ready.borrow() {
            return Err("starting (resuming sagas, loading plugins) or shutting down".into());
        }
        if let Health::Failing(reason) = self.store.health() {
            return Err(reason);
        }
        let sweeper = self.sweeper.lock().expect("sweeper");
        if sweeper.as_ref().is_none_or(|thread| thread.is_finished()) {
            return Err("the sweeper stopped: expired sagas and keys are not removed".into());
        }
        Ok(())
    }

    /// Marks the gateway started (store recovered, plugins loaded) or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.send_replace(ready);
    }

    /// Watches readiness: the acceptor waits for it before taking connections.
    pub fn ready_watch(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }
}

/// Opens the config's store; `instance` names this process (in a fleet, the process renewing
/// the gateway's lease).
pub(crate) fn open_store(
    config: &Config,
    metrics: &Arc<Metrics>,
    instance: &str,
) -> Result<Arc<dyn Store>, Error> {
    let store = &config.store;
    let gateway = config.gateway_id();
    if store.backend == Backend::Postgres {
        let settings = FleetSettings {
            url: store.database_url(),
            gateway: gateway.clone(),
            instance: instance.to_string(),
            lease: Duration::from_millis(store.lease_ms),
            retention_ms: store.retention_secs.saturating_mul(1000),
        };
        let opened = Postgres::open(settings, Some(metrics.clone()))?;
        tracing::info!(gateway, database = %opened.describe()["database"], "fleet store opened");
        return Ok(Arc::new(opened));
    }
    let dir = config.resolve(&store.dir);
    let opened = Embedded::open_named(
        &dir,
        embedded_limits(config),
        Some(metrics.clone()),
        Named(gateway),
    )?;
    tracing::info!(dir = %dir.display(), "store opened");
    Ok(Arc::new(opened))
}

/// The embedded store's limits, from the config's `[store]`.
pub(crate) fn embedded_limits(config: &Config) -> EmbeddedLimits {
    let store = &config.store;
    EmbeddedLimits {
        cache_entries_max: usize::try_from(store.cache_entries_max).unwrap_or(usize::MAX),
        sagas: Quota {
            keys_max: store.saga_keys_max,
            bytes_max: store.saga_bytes_max,
        },
        retention_ms: store.retention_secs.saturating_mul(1000),
    }
}

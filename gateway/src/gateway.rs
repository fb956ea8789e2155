//! The running gateway: the validated config turned into routes, upstreams, the store, the saga
//! engine and the plugins, shared by every connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::Method;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, RouteConfig};
use crate::error::{Error, ErrorKind};
use crate::metrics::{Metrics, Name};
use crate::plugin::{self, Chain, PluginEnv, Plugins};
use crate::saga::{Engine, EngineParts, SagaRoute};
use crate::server::router::{Entry, PathMatch, Router};
use crate::store::EmbeddedStore;
use crate::upstream::{self, Upstream, Upstreams};
use crate::worker::{Job, Spawner};

/// What a matched route does.
#[derive(Debug)]
pub enum Target {
    /// Proxy to one upstream.
    Plain(Arc<Upstream>),
    /// Run the route's saga or TCC transaction.
    Saga(Arc<SagaRoute>),
}

/// A route, ready to serve.
#[derive(Debug)]
pub struct Route {
    /// The route's name (a metrics label).
    pub name: Name,
    /// Plain or saga.
    pub target: Target,
    /// A prefix removed from the path before it goes upstream.
    pub strip_prefix: Option<String>,
    /// Whether requests must carry an `X-Request-ID` (saga routes). Plugins that need one (the
    /// idempotency plugin) see whether the client sent it and answer 400 themselves.
    pub requires_request_id: bool,
}

/// Keys one store namespace may hold.
const KEYS_PER_NAMESPACE_MAX: usize = 10_000_000;
/// How often expired keys are swept from memory.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Shared state of a running gateway.
#[derive(Debug)]
pub struct Gateway {
    config: Arc<Config>,
    router: Router<Route>,
    metrics: Arc<Metrics>,
    store: Arc<EmbeddedStore>,
    engine: Arc<Engine>,
    plugins: Arc<OnceLock<Plugins>>,
    jobs: Mutex<Vec<mpsc::UnboundedReceiver<Job>>>,
    boot_id: Arc<str>,
    ready: watch::Sender<bool>,
    unmatched: Name,
}

impl Gateway {
    /// Builds the gateway from a validated config, opening (and recovering) the store.
    pub fn new(config: Config, metrics: Arc<Metrics>, workers: usize) -> Result<Self, Error> {
        let upstreams = upstream::build_all(&config, &metrics, workers)?;
        let entries = config
            .routes
            .iter()
            .map(|route| route_entry(route, &upstreams))
            .collect::<Result<Vec<_>, _>>()?;
        let store_dir = config.resolve(&config.store.dir);
        let (store, recovered) =
            EmbeddedStore::open(&store_dir, KEYS_PER_NAMESPACE_MAX, Some(metrics.clone()))?;
        tracing::info!(
            dir = %store_dir.display(),
            snapshot_records = recovered.snapshot_records,
            log_records = recovered.log_records,
            "store recovered"
        );
        let store = Arc::new(store);
        let (spawner, jobs) = Spawner::new(workers);
        let plugins = Arc::new(OnceLock::new());
        let routes: HashMap<String, Arc<SagaRoute>> = entries
            .iter()
            .filter_map(|entry| match &entry.target.target {
                Target::Saga(route) => Some((route.name.to_string(), route.clone())),
                Target::Plain(_) => None,
            })
            .collect();
        let engine = Engine::new(EngineParts {
            routes,
            store: store.clone(),
            plugins: plugins.clone(),
            metrics: metrics.clone(),
            spawner,
            retention: Duration::from_secs(config.store.retention_secs),
            request_timeout: Duration::from_millis(config.server.request_timeout_ms),
            body_bytes_max: usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX),
        });
        Ok(Self {
            config: Arc::new(config),
            router: Router::new(entries),
            metrics,
            store,
            engine: Arc::new(engine),
            plugins,
            jobs: Mutex::new(jobs),
            boot_id: Arc::from(uuid::Uuid::new_v4().to_string()),
            ready: watch::channel(false).0,
            unmatched: Arc::new("_unmatched".to_string()),
        })
    }

    /// Takes the workers' job queues (once, when the workers start).
    pub fn take_job_queues(&self) -> Vec<mpsc::UnboundedReceiver<Job>> {
        std::mem::take(&mut *self.jobs.lock().expect("job queues"))
    }

    /// Everything that must happen before the gateway is ready: compile the plugins, then
    /// resume every unfinished saga. Runs on a runtime of its own, beside the workers.
    pub fn start_up(&self) -> Result<(), Error> {
        let env = PluginEnv {
            runtime: plugin::Runtime::new()?,
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            boot_id: self.boot_id.clone(),
        };
        let plugins = Plugins::load(&self.config, env)?;
        tracing::info!(plugins = ?plugins.current().names(), "plugins loaded");
        let _ = self.plugins.set(plugins);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorKind::Internal, "start-up runtime").with_cause(e))?;
        let resumed = runtime.block_on(self.engine.recover());
        tracing::info!(resumed, "unfinished sagas resumed");
        self.spawn_sweeper();
        Ok(())
    }

    fn spawn_sweeper(&self) {
        let (store, engine) = (self.store.clone(), self.engine.clone());
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
                    let removed = store.memory().sweep();
                    if removed > 0 {
                        runtime.block_on(engine.sweep());
                        tracing::debug!(removed, "expired keys swept");
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the sweeper: expired keys stay in memory");
        }
    }

    /// Writes out what the store has queued (graceful shutdown).
    pub fn close(&self) {
        self.store.close();
    }

    /// The config it runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The routes.
    pub fn router(&self) -> &Router<Route> {
        &self.router
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The saga engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The live plugins (set once start-up has run).
    pub fn plugins(&self) -> Option<&Plugins> {
        self.plugins.get()
    }

    /// The plugin chain of a route, in the live plugin version.
    pub fn chain(&self, route: &str) -> Option<Chain> {
        let set = self.plugins.get()?.current();
        let plugins = set.chain(route)?.clone();
        let body_bytes_max =
            usize::try_from(self.config.server.max_response_bytes).unwrap_or(usize::MAX);
        Some(Chain::new(plugins, body_bytes_max))
    }

    /// Reloads the plugins from the config file (blocking: it compiles).
    pub fn reload_plugins(&self) -> Result<plugin::Reloaded, Error> {
        let plugins = self
            .plugins
            .get()
            .ok_or_else(|| Error::new(ErrorKind::ReloadFailed, "the gateway is still starting"))?;
        plugins
            .reload()
            .map_err(|e| Error::new(ErrorKind::ReloadFailed, e.to_string()))
    }

    /// The route label used for requests no route matched.
    pub fn unmatched_label(&self) -> &Name {
        &self.unmatched
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Marks the gateway ready (store recovered, plugins loaded) or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.send_replace(ready);
    }

    /// Watches readiness: the acceptor waits for it before taking connections.
    pub fn ready_watch(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }
}

fn route_entry(route: &RouteConfig, upstreams: &Upstreams) -> Result<Entry<Route>, Error> {
    let path = match (&route.path, &route.path_prefix) {
        (Some(path), _) => PathMatch::Exact(path.clone()),
        (None, Some(prefix)) => PathMatch::Prefix(prefix.clone()),
        (None, None) => return Err(Error::new(ErrorKind::Config, "route without a path")),
    };
    let methods = route
        .methods
        .iter()
        .map(|m| Method::from_bytes(m.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::new(ErrorKind::Config, format!("route `{}`: {e}", route.name)))?;
    let target =
        match &route.upstream {
            Some(name) => Target::Plain(upstreams.get(name).cloned().ok_or_else(|| {
                Error::new(ErrorKind::Config, format!("unknown upstream `{name}`"))
            })?),
            None => Target::Saga(Arc::new(SagaRoute::new(route, upstreams)?)),
        };
    let requires_request_id = matches!(target, Target::Saga(_));
    Ok(Entry {
        path,
        methods,
        target: Route {
            name: Arc::new(route.name.clone()),
            target,
            requires_request_id,
            strip_prefix: route.path_prefix.clone().filter(|_| route.strip_prefix),
        },
    })
}

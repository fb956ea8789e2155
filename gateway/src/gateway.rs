//! The running gateway: the validated config turned into routes, upstreams and metrics, shared by
//! every connection.

use std::sync::{Arc, OnceLock};

use http::Method;
use tokio::sync::watch;

use crate::config::{Config, RouteConfig};
use crate::error::{Error, ErrorKind};
use crate::metrics::{Metrics, Name};
use crate::plugin::{self, Chain, PluginEnv, Plugins};
use crate::server::router::{Entry, PathMatch, Router};
use crate::store::EmbeddedStore;
use crate::upstream::{self, Upstream, Upstreams};

/// What a matched route does.
#[derive(Debug)]
pub enum Target {
    /// Proxy to one upstream.
    Plain(Arc<Upstream>),
    /// Run the route's saga or TCC transaction.
    Saga,
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

/// Shared state of a running gateway.
#[derive(Debug)]
pub struct Gateway {
    config: Arc<Config>,
    router: Router<Route>,
    upstreams: Upstreams,
    metrics: Arc<Metrics>,
    store: Arc<EmbeddedStore>,
    plugins: OnceLock<Plugins>,
    boot_id: Arc<str>,
    ready: watch::Sender<bool>,
    unmatched: Name,
}

impl Gateway {
    /// Builds the gateway from a validated config.
    pub fn new(config: Config, metrics: Arc<Metrics>, workers: usize) -> Result<Self, Error> {
        let upstreams = upstream::build_all(&config, &metrics, workers)?;
        let entries = config
            .routes
            .iter()
            .map(|route| route_entry(route, &upstreams))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            config: Arc::new(config),
            router: Router::new(entries),
            upstreams,
            metrics,
            store: Arc::new(EmbeddedStore::in_memory(KEYS_PER_NAMESPACE_MAX)),
            plugins: OnceLock::new(),
            boot_id: Arc::from(uuid::Uuid::new_v4().to_string()),
            ready: watch::channel(false).0,
            unmatched: Arc::new("_unmatched".to_string()),
        })
    }

    /// Everything that must happen before the gateway is ready: compile the plugins.
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
        Ok(())
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

    /// The config it runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The routes.
    pub fn router(&self) -> &Router<Route> {
        &self.router
    }

    /// An upstream by name.
    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.get(name)
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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
            None => Target::Saga,
        };
    let requires_request_id = matches!(target, Target::Saga);
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

//! The running gateway: the validated config turned into routes, upstreams and metrics, shared by
//! every connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::Method;

use crate::config::{Config, RouteConfig};
use crate::error::{Error, ErrorKind};
use crate::metrics::{Metrics, Name};
use crate::server::router::{Entry, PathMatch, Router};
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

/// Shared state of a running gateway.
#[derive(Debug)]
pub struct Gateway {
    config: Arc<Config>,
    router: Router<Route>,
    upstreams: Upstreams,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
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
            ready: AtomicBool::new(false),
            unmatched: Arc::new("_unmatched".to_string()),
        })
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
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the gateway ready (store recovered, plugins loaded).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
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

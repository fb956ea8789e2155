//! Config versions: the routes, upstreams and plugins of one config, built completely before
//! they go live, and swapped in atomically by a reload (SIGHUP, `POST /admin/reload`).
//!
//! A request takes the live [`Version`] once and keeps it to its end; a running saga keeps the
//! plan in its record and looks up upstreams and plugins by name in whatever version is live at
//! each call. A reload applies everything but the listeners and the store; a change to those is
//! refused with the key it touched, and nothing is applied. A reload never reports success for a
//! change it did not apply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::Method;

use crate::config::{self, Config, RouteConfig};
use crate::error::{Error, ErrorKind};
use crate::metrics::{Metrics, Name};
use crate::plugin::{Chain, PluginEnv, PluginSet};
use crate::saga::{Live, SagaRoute};
use crate::server::router::{Entry, PathMatch, Router};
use crate::upstream::{self, Upstream, Upstreams};

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
    /// Whether requests must carry an `X-Request-ID` (saga routes).
    pub requires_request_id: bool,
}

/// One config, built.
#[derive(Debug)]
pub struct Version {
    /// 1 at start, +1 per reload.
    pub number: u64,
    /// The config.
    pub config: Arc<Config>,
    /// Its routes.
    pub router: Router<Route>,
    /// Its upstreams, by name.
    pub upstreams: Upstreams,
    /// Its plugins.
    pub plugins: PluginSet,
}

impl Version {
    /// Builds a config's routes, upstreams and plugins. Upstreams whose settings did not change
    /// are carried over from `previous`, with their connections and breaker state.
    pub fn build(
        config: Config,
        number: u64,
        previous: Option<&Version>,
        env: &Env,
    ) -> Result<Self, Error> {
        let mut upstreams = upstream::build_all(&config, &env.metrics, env.workers)?;
        if let Some(previous) = previous
            && previous.config.server.max_response_bytes == config.server.max_response_bytes
        {
            for (name, built) in upstreams.iter_mut() {
                if let Some(old) = previous.upstreams.get(name)
                    && old.config() == built.config()
                {
                    *built = old.clone();
                }
            }
        }
        let entries = config
            .routes
            .iter()
            .map(|route| route_entry(route, &upstreams))
            .collect::<Result<Vec<_>, _>>()?;
        let plugins = PluginSet::build(&config, &env.plugins)?;
        Ok(Self {
            number,
            config: Arc::new(config),
            router: Router::new(entries),
            upstreams,
            plugins,
        })
    }

    /// A route's plugin chain.
    pub fn chain(&self, route: &str) -> Option<Chain> {
        let plugins = self.plugins.chain(route)?.clone();
        Some(Chain::new(plugins, self.response_bytes_max()))
    }

    /// The chain of these plugins, by name (a saga's, whatever its route is called now).
    /// `Err` names a plugin this version does not have.
    pub fn chain_of(&self, names: &[String]) -> Result<Option<Chain>, String> {
        if names.is_empty() {
            return Ok(None);
        }
        let plugins = names
            .iter()
            .map(|name| {
                self.plugins.plugin(name).cloned().ok_or_else(|| {
                    format!("plugin `{name}` of the saga's route is not in the running config")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Chain::new(plugins.into(), self.response_bytes_max())))
    }

    fn response_bytes_max(&self) -> usize {
        usize::try_from(self.config.server.max_response_bytes).unwrap_or(usize::MAX)
    }
}

/// What building a version needs besides the config.
#[derive(Debug)]
pub struct Env {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Worker threads (each upstream keeps a pool per worker).
    pub workers: usize,
    /// What plugins are loaded with.
    pub plugins: PluginEnv,
}

/// What a reload applied.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The new version.
    pub version: u64,
    /// Its routes.
    pub routes: Vec<String>,
    /// Its upstreams.
    pub upstreams: Vec<String>,
    /// Its plugins.
    pub plugins: Vec<String>,
    /// How long building it took.
    pub elapsed: Duration,
}

/// The live version, and reloads.
#[derive(Debug)]
pub struct Running {
    current: ArcSwap<Version>,
    env: Env,
    reloading: std::sync::Mutex<()>,
}

impl Running {
    /// Starts with a built version.
    pub fn new(version: Version, env: Env) -> Self {
        version.plugins.activate();
        Self {
            current: ArcSwap::from_pointee(version),
            env,
            reloading: std::sync::Mutex::new(()),
        }
    }

    /// The live version.
    pub fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// Re-reads the config file, builds it completely, and swaps it in. Blocking (plugins
    /// compile): call it from a blocking thread. On any failure the running version stays.
    pub fn reload(&self) -> Result<Reloaded, Error> {
        let _one_at_a_time = self.reloading.lock().expect("reload lock");
        let started = Instant::now();
        let old = self.current();
        // A file that does not parse or validate is the operator's to fix: 422, like any other
        // reload that cannot be applied, never a 500.
        let config = config::load(&old.config.path)
            .map_err(|e| Error::new(ErrorKind::ReloadFailed, e.to_string()))?;
        if let Some(key) = needs_restart(&old.config, &config) {
            return Err(Error::new(
                ErrorKind::ReloadRefused,
                format!(
                    "`{key}` changed; a reload cannot apply it, so nothing was reloaded: restart the gateway"
                ),
            ));
        }
        let version = Version::build(config, old.number + 1, Some(&old), &self.env)
            .map_err(|e| Error::new(ErrorKind::ReloadFailed, e.to_string()))?;
        let mut upstreams: Vec<String> = version.upstreams.keys().cloned().collect();
        upstreams.sort();
        let reloaded = Reloaded {
            version: version.number,
            routes: version
                .config
                .routes
                .iter()
                .map(|r| r.name.clone())
                .collect(),
            upstreams,
            plugins: version.plugins.names().to_vec(),
            elapsed: started.elapsed(),
        };
        version.plugins.activate();
        self.current.store(Arc::new(version));
        Ok(reloaded)
    }
}

impl Live for Running {
    fn upstream(&self, name: &str) -> Option<Arc<Upstream>> {
        self.current.load().upstreams.get(name).cloned()
    }

    fn chain(&self, route: &str) -> Option<Chain> {
        self.current.load().chain(route)
    }

    fn chain_of(&self, plugins: &[String]) -> Result<Option<Chain>, String> {
        self.current.load().chain_of(plugins)
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.current.load().config.server.request_timeout_ms)
    }
}

/// The first key whose change only a restart can apply: the listeners and the store.
fn needs_restart(old: &Config, new: &Config) -> Option<String> {
    let (a, b) = (&old.server, &new.server);
    let server = [
        ("listen", a.listen != b.listen),
        ("admin_listen", a.admin_listen != b.admin_listen),
        ("admin_token", a.admin_token != b.admin_token),
        ("admin_tokens", a.admin_tokens != b.admin_tokens),
        ("tls", a.tls != b.tls),
        ("workers", a.workers != b.workers),
        ("max_connections", a.max_connections != b.max_connections),
        (
            "max_connections_per_client",
            a.max_connections_per_client != b.max_connections_per_client,
        ),
        ("max_header_bytes", a.max_header_bytes != b.max_header_bytes),
        ("max_header_count", a.max_header_count != b.max_header_count),
        (
            "header_read_timeout_ms",
            a.header_read_timeout_ms != b.header_read_timeout_ms,
        ),
        (
            "shutdown_grace_ms",
            a.shutdown_grace_ms != b.shutdown_grace_ms,
        ),
    ];
    if old.audit != new.audit {
        return Some("audit.file".into());
    }
    let (a, b) = (&old.store, &new.store);
    let store = [
        ("backend", a.backend != b.backend),
        ("url", a.url != b.url),
        ("lease_ms", a.lease_ms != b.lease_ms),
        ("gateway_id", a.gateway_id != b.gateway_id),
        ("dir", a.dir != b.dir),
        ("retention_secs", a.retention_secs != b.retention_secs),
        (
            "cache_entries_max",
            a.cache_entries_max != b.cache_entries_max,
        ),
        ("saga_keys_max", a.saga_keys_max != b.saga_keys_max),
        ("saga_bytes_max", a.saga_bytes_max != b.saga_bytes_max),
    ];
    let changed = |table: &str, keys: &[(&str, bool)]| {
        keys.iter()
            .find(|(_, changed)| *changed)
            .map(|(key, _)| format!("{table}.{key}"))
    };
    changed("server", &server).or_else(|| changed("store", &store))
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
            None => Target::Saga(Arc::new(SagaRoute::new(route)?)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::load::check_text(text).unwrap()
    }

    #[test]
    fn listener_and_store_changes_are_named_and_others_are_not() {
        let base = config("[server]\nlisten = \"127.0.0.1:8080\"\nmax_body_bytes = 10\n");
        let body = config("[server]\nlisten = \"127.0.0.1:8080\"\nmax_body_bytes = 99\n");
        assert_eq!(needs_restart(&base, &body), None, "limits apply live");
        let moved = config("[server]\nlisten = \"127.0.0.1:8081\"\nmax_body_bytes = 10\n");
        assert_eq!(
            needs_restart(&base, &moved).as_deref(),
            Some("server.listen")
        );
        let store = config(
            "[server]\nlisten = \"127.0.0.1:8080\"\nmax_body_bytes = 10\n[store]\ndir = \"elsewhere\"\n",
        );
        assert_eq!(needs_restart(&base, &store).as_deref(), Some("store.dir"));
        let audit = config(
            "[server]\nlisten = \"127.0.0.1:8080\"\nmax_body_bytes = 10\n[audit]\nfile = \"a.log\"\n",
        );
        assert_eq!(needs_restart(&base, &audit).as_deref(), Some("audit.file"));
    }
}

//! The configuration schema (SPEC §2): one struct per TOML table, every table closed with
//! `deny_unknown_fields` so that a typo never silently turns a safety feature off.
//!
//! Loading and key-path error reporting live in `load.rs`; cross-references and value checks in
//! `validate.rs`. The types here are plain data.

pub(crate) mod load;
mod msg;
mod operators;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub use load::{ConfigIssue, load};
pub use operators::{ADMIN_OPERATOR, AdminTokenConfig, Role};

/// The whole gateway configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners, limits and timeouts.
    #[serde(default)]
    pub server: ServerConfig,
    /// The embedded durable store.
    #[serde(default)]
    pub store: StoreConfig,
    /// Backend services by name.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// WebAssembly plugins by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Routes, matched in file order.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Where plugins' audit events go.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The directory relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The config file itself (re-read on reload).
    #[serde(skip)]
    pub path: PathBuf,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Client traffic: HTTP/1.1 and h2c, or TLS with h2 through ALPN.
    pub listen: SocketAddr,
    /// The admin API.
    pub admin_listen: SocketAddr,
    /// Bearer token for admin calls; empty means none (loopback only). It is the operator
    /// `admin`, with the `operate` role.
    pub admin_token: String,
    /// Named operators, each with its own token and role.
    pub admin_tokens: Vec<AdminTokenConfig>,
    /// Larger request bodies get 413.
    pub max_body_bytes: u64,
    /// Larger upstream response bodies get 502.
    pub max_response_bytes: u64,
    /// Total request header bytes (names plus values); more gets 431.
    pub max_header_bytes: u64,
    /// Request headers, counted one per field line; more gets 431.
    pub max_header_count: u32,
    /// A client must send its request head within this time (slowloris guard, idle keep-alive cut).
    pub header_read_timeout_ms: u64,
    /// A client must send its whole body within this time, once the head has arrived; else 408.
    pub body_read_timeout_ms: u64,
    /// Concurrent client connections; more are answered 503 and closed.
    pub max_connections: u32,
    /// Concurrent client connections from one IP address; more are answered 503 and closed, so
    /// that one client cannot hold every slot. Behind a load balancer (one address for all),
    /// raise it to `max_connections`.
    pub max_connections_per_client: u32,
    /// Threads serving the client port; 0 means one per core.
    pub workers: u32,
    /// A saga still running at this deadline answers 202.
    pub request_timeout_ms: u64,
    /// How long in-flight requests may run after SIGTERM or SIGINT.
    pub shutdown_grace_ms: u64,
    /// Optional TLS termination.
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9080)),
            admin_token: String::new(),
            admin_tokens: Vec::new(),
            max_body_bytes: 1_048_576,
            max_response_bytes: 8 * 1_048_576,
            max_header_bytes: 32 * 1024,
            max_header_count: 100,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections: 4096,
            max_connections_per_client: 1024,
            workers: 0,
            request_timeout_ms: 15_000,
            shutdown_grace_ms: 10_000,
            tls: None,
        }
    }
}

/// `[server.tls]`: PEM files, relative to the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// Where the store lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One gateway: SQLite in `dir`.
    #[default]
    Embedded,
    /// A fleet: PostgreSQL at `url`.
    Postgres,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Embedded (one gateway) or PostgreSQL (a fleet).
    pub backend: Backend,
    /// Directory of the embedded store.
    pub dir: PathBuf,
    /// The fleet's database, `postgres://user:password@host:port/database`; the environment's
    /// `TXGATE_STORE_URL` overrides it.
    pub url: String,
    /// A fleet gateway silent this long loses its unfinished sagas to the others.
    pub lease_ms: u64,
    /// This gateway's name in the fleet; empty: the host's name and the client port.
    pub gateway_id: String,
    /// Finished sagas and idempotency records are kept at least this long.
    pub retention_secs: u64,
    /// Recently finished sagas and recently written durable keys kept in memory.
    pub cache_entries_max: u64,
    /// Most saga rows the store holds (finished ones until they expire).
    pub saga_keys_max: u64,
    /// Most bytes the saga rows hold.
    pub saga_bytes_max: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            dir: PathBuf::from("./txgate-data"),
            url: String::new(),
            lease_ms: 10_000,
            gateway_id: String::new(),
            retention_secs: 86_400,
            cache_entries_max: 10_000,
            saga_keys_max: 100_000_000,
            saga_bytes_max: 100 * 1024 * 1024 * 1024,
        }
    }
}

/// `[upstreams.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL, `http://host:port` with an optional path prefix.
    pub url: String,
    /// Per-attempt timeout, response head and body included.
    #[serde(default = "defaults::upstream_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts for retryable failures, the first one included.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Exponential backoff base, with full jitter.
    #[serde(default = "defaults::backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// Backoff cap.
    #[serde(default = "defaults::backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Consecutive failures that open the circuit breaker.
    #[serde(default = "defaults::breaker_failures")]
    pub breaker_failures: u32,
    /// Time an open breaker waits before letting one trial request through.
    #[serde(default = "defaults::breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
    /// An idle keep-alive connection to the upstream is closed after this.
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

/// Where a plugin's key-value state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// Memory plus disk: a write is on disk before the hook call returns.
    #[default]
    Durable,
    /// Memory only.
    Volatile,
}

/// Whether a plugin's instances serve more than one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Instances are reused, by calls of any client.
    #[default]
    Reuse,
    /// Every call gets a new instance.
    Fresh,
}

/// What a plugin failure (trap, timeout, limit) does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Answer 503.
    #[default]
    Reject,
    /// Carry on as if the plugin were not on the route, for this call.
    Skip,
}

/// `[audit]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The audit file, one JSON line per event; empty: the `txgate::audit` log target.
    pub file: PathBuf,
}

/// `[plugins.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The component file, relative to the config file.
    pub module: PathBuf,
    /// Durable or volatile key-value state.
    #[serde(default)]
    pub state: PluginState,
    /// Failure policy.
    #[serde(default)]
    pub on_error: OnError,
    /// Budget for the plugin's own execution in one hook call.
    #[serde(default = "defaults::plugin_timeout_ms")]
    pub timeout_ms: u64,
    /// Wall-clock bound of one hook call, whatever it waits on.
    #[serde(default = "defaults::plugin_wall_timeout_ms")]
    pub wall_timeout_ms: u64,
    /// Linear memory cap per instance.
    #[serde(default = "defaults::memory_limit_bytes")]
    pub memory_limit_bytes: u64,
    /// Reused or fresh instances.
    #[serde(default)]
    pub isolation: Isolation,
    /// Whether the gateway may reuse the decisions the plugin declares reusable
    /// (`decisions.reuse`, `reuse-response`); false calls it on every request, whatever it
    /// declares.
    #[serde(default = "defaults::reuse_decisions")]
    pub reuse_decisions: bool,
    /// Keys the plugin may hold (durable and volatile each).
    #[serde(default = "defaults::kv_keys_max")]
    pub kv_keys_max: u64,
    /// Bytes (keys plus values) the plugin may hold (durable and volatile each).
    #[serde(default = "defaults::kv_bytes_max")]
    pub kv_bytes_max: u64,
    /// Free-form settings, handed to the plugin as JSON.
    #[serde(default)]
    pub config: toml::Table,
}

/// `[[routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in metrics and saga records.
    pub name: String,
    /// Allowed methods; empty means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Exact path match.
    pub path: Option<String>,
    /// Prefix path match.
    pub path_prefix: Option<String>,
    /// Plain routes: remove `path_prefix` from the path sent upstream (`/a/x` becomes `/x`).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Plugins in request order.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// A plain proxied route's upstream.
    pub upstream: Option<String>,
    /// A saga or TCC route's steps.
    pub saga: Option<SagaConfig>,
    /// A message route's back-check and steps (SPEC §9).
    pub msg: Option<MsgConfig>,
}

/// Saga or TCC (or, for the steps of `[routes.msg]`, a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SagaMode {
    /// Actions in order; compensations in reverse on failure.
    Saga,
    /// All tries, then all confirms, or cancels of everything tried.
    Tcc,
    /// A message's deliveries: actions only. Never written as a `mode`: `[routes.msg]` is.
    #[serde(skip)]
    Msg,
}

/// `[routes.msg]`: a transactional message (SPEC §9).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsgConfig {
    /// The back-check, `"METHOD /path"` on `check_upstream`.
    pub check: String,
    /// The service that answers the back-check.
    pub check_upstream: String,
    /// No submit or abort by then: ask the back-check.
    #[serde(default = "defaults::prepare_timeout_ms")]
    pub prepare_timeout_ms: u64,
    /// Whose X-Request-IDs are kept apart, as for sagas.
    #[serde(default)]
    pub client_key: String,
    /// The consumers, each with its `action`.
    pub steps: Vec<StepConfig>,
    /// Deliver to every step at once rather than in order (each is still retried until it
    /// takes the message).
    #[serde(default)]
    pub parallel: bool,
}

/// `[routes.saga]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaConfig {
    /// Saga or TCC.
    pub mode: SagaMode,
    /// Whose X-Request-IDs are kept apart: `"header:NAME"`, `"ip"`, or `""` (one client).
    #[serde(default)]
    pub client_key: String,
    /// Steps in order.
    pub steps: Vec<StepConfig>,
}

/// `[[routes.saga.steps]]`: calls are `"METHOD /path"` on the step's upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Step name, unique in the route.
    pub name: String,
    /// The upstream that serves the step.
    pub upstream: String,
    /// Saga mode: the forward call.
    pub action: Option<String>,
    /// Saga mode: the undo call.
    pub compensate: Option<String>,
    /// TCC mode: reserve.
    #[serde(rename = "try")]
    pub try_call: Option<String>,
    /// TCC mode: commit the reservation.
    pub confirm: Option<String>,
    /// TCC mode: release the reservation.
    pub cancel: Option<String>,
    /// Either mode, optional: the call `txgate reconcile` asks what the backend holds for the
    /// step (a `GET`; SPEC §10).
    pub status: Option<String>,
}

mod defaults {
    pub(super) fn prepare_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn upstream_timeout_ms() -> u64 {
        2000
    }
    pub(super) fn max_attempts() -> u32 {
        5
    }
    pub(super) fn backoff_base_ms() -> u64 {
        50
    }
    pub(super) fn backoff_max_ms() -> u64 {
        5000
    }
    pub(super) fn breaker_failures() -> u32 {
        20
    }
    pub(super) fn breaker_cooldown_ms() -> u64 {
        5000
    }
    pub(super) fn idle_timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn plugin_timeout_ms() -> u64 {
        10
    }
    pub(super) fn plugin_wall_timeout_ms() -> u64 {
        1000
    }
    pub(super) fn memory_limit_bytes() -> u64 {
        16 * 1_048_576
    }
    pub(super) fn reuse_decisions() -> bool {
        true
    }
    pub(super) fn kv_keys_max() -> u64 {
        1_000_000
    }
    pub(super) fn kv_bytes_max() -> u64 {
        256 * 1_048_576
    }
}

/// The environment variable that overrides `[store] url`, so a password need not sit in a file.
pub const STORE_URL_ENV: &str = "TXGATE_STORE_URL";

impl StoreConfig {
    /// The fleet's database URL: `TXGATE_STORE_URL` when set, else `url`.
    pub fn database_url(&self) -> String {
        std::env::var(STORE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| self.url.clone())
    }
}

impl Config {
    /// This gateway's name in a fleet: `[store] gateway_id`, or the host's name and the client
    /// port, which stays the same across restarts so that a restarted gateway resumes its own
    /// sagas at once.
    pub fn gateway_id(&self) -> String {
        if !self.store.gateway_id.is_empty() {
            return self.store.gateway_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "txgate".into());
        format!("{host}:{}", self.server.listen.port())
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, path: &std::path::Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}

/// A saga call from the config: `"POST /debit"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// HTTP method.
    pub method: http::Method,
    /// Path (and optional query) on the step's upstream.
    pub path: String,
}

/// Parses `"METHOD /path"`.
pub fn parse_call(text: &str) -> Result<Call, String> {
    let mut parts = text.split_whitespace();
    let (Some(method), Some(path), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("`{text}` is not of the form \"METHOD /path\""));
    };
    let method = http::Method::from_bytes(method.as_bytes())
        .ok()
        .filter(|_| method.bytes().all(|b| b.is_ascii_uppercase()))
        .ok_or_else(|| format!("`{method}` is not an upper-case HTTP method"))?;
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(format!("`{path}` is not a path starting with `/`"));
    }
    Ok(Call {
        method,
        path: path.to_string(),
    })
}

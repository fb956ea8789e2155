//! Value checks and cross-references: a route naming an unknown upstream or plugin, a saga step
//! missing its undo call, a public admin listener without a token. Every issue is collected.

use std::collections::HashSet;

use super::{Config, ConfigIssue, RouteConfig, SagaMode, StepConfig, UpstreamConfig};

/// Bounds that keep a config from asking for unbounded work.
const ATTEMPTS_MAX: u32 = 100;
const SAGA_STEPS_MAX: usize = 32;
const PLUGIN_TIMEOUT_MS_MAX: u64 = 60_000;
const PLUGIN_MEMORY_BYTES_MIN: u64 = 64 * 1024;
const PLUGIN_MEMORY_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
const ROUTE_PLUGINS_MAX: usize = 16;
const CACHE_ENTRIES_MAX: u64 = 10_000_000;
const LEASE_MS_MIN: u64 = 200;
const LEASE_MS_MAX: u64 = 600_000;
const HEADER_COUNT_MAX: u32 = 1000;

/// Checks a parsed config. `broken` holds the key paths of tables that failed to parse; a
/// reference to one of them is not reported again as unknown.
pub(super) fn validate(config: &Config, broken: &[String]) -> Vec<ConfigIssue> {
    let mut issues = Issues(Vec::new(), broken.to_vec());
    server(config, &mut issues);
    store(config, &mut issues);
    for (name, upstream) in &config.upstreams {
        upstream_checks(&format!("upstreams.{name}"), upstream, &mut issues);
    }
    for (name, plugin) in &config.plugins {
        let key = format!("plugins.{name}");
        if !config.resolve(&plugin.module).is_file() {
            let shown = plugin.module.display();
            issues.push(format!("{key}.module"), format!("no such file: {shown}"));
        }
        for (field, value) in [
            ("timeout_ms", plugin.timeout_ms),
            ("wall_timeout_ms", plugin.wall_timeout_ms),
        ] {
            if value == 0 || value > PLUGIN_TIMEOUT_MS_MAX {
                let reason = format!("must be between 1 and {PLUGIN_TIMEOUT_MS_MAX}");
                issues.push(format!("{key}.{field}"), reason);
            }
        }
        issues.positive(format!("{key}.kv_keys_max"), plugin.kv_keys_max);
        issues.positive(format!("{key}.kv_bytes_max"), plugin.kv_bytes_max);
        if !(PLUGIN_MEMORY_BYTES_MIN..=PLUGIN_MEMORY_BYTES_MAX).contains(&plugin.memory_limit_bytes)
        {
            let reason =
                format!("must be between {PLUGIN_MEMORY_BYTES_MIN} and {PLUGIN_MEMORY_BYTES_MAX}");
            issues.push(format!("{key}.memory_limit_bytes"), reason);
        }
    }
    let mut names = HashSet::new();
    for (i, route) in config.routes.iter().enumerate() {
        let key = format!("routes[{i}]");
        if !names.insert(route.name.as_str()) {
            issues.push(
                format!("{key}.name"),
                format!("duplicate route name `{}`", route.name),
            );
        }
        route_checks(&key, route, config, &mut issues);
    }
    issues.0
}

/// An admin token shorter than this is refused: it would be guessed.
pub(crate) const ADMIN_TOKEN_CHARS_MIN: usize = 16;

/// Refuses an admin token that could be guessed: a few characters, or blanks. (Empty means no
/// token, which only a loopback listener may have.)
fn token_strength(token: &str) -> Result<(), String> {
    let visible = token.bytes().all(|b| b.is_ascii_graphic());
    if token.is_empty() || (visible && token.len() >= ADMIN_TOKEN_CHARS_MIN) {
        return Ok(());
    }
    Err(format!(
        "too weak: use at least {ADMIN_TOKEN_CHARS_MIN} visible ASCII characters and no blanks (for example the output of `openssl rand -hex 16`)"
    ))
}

pub(super) struct Issues(Vec<ConfigIssue>, Vec<String>);

impl Issues {
    /// Whether `key` (such as `upstreams.bank_a`) is a table that failed to parse.
    fn is_broken(&self, key: &str) -> bool {
        self.1
            .iter()
            .any(|b| b == key || b.starts_with(&format!("{key}.")))
    }

    pub(super) fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigIssue::new(key, reason));
    }

    fn positive(&mut self, key: String, value: u64) {
        if value == 0 {
            self.push(key, "must be at least 1");
        }
    }
}

fn server(config: &Config, issues: &mut Issues) {
    let server = &config.server;
    let no_token = server.admin_token.is_empty() && server.admin_tokens.is_empty();
    if !server.admin_listen.ip().is_loopback() && no_token {
        issues.push(
            "server.admin_token",
            "required when admin_listen is not a loopback address (or give admin_tokens)",
        );
    }
    if let Err(reason) = token_strength(&server.admin_token) {
        issues.push("server.admin_token", reason);
    }
    for (key, reason) in super::operators::check(server, token_strength) {
        issues.push(key, reason);
    }
    for (key, value) in [
        ("max_body_bytes", server.max_body_bytes),
        ("max_response_bytes", server.max_response_bytes),
        ("header_read_timeout_ms", server.header_read_timeout_ms),
        ("body_read_timeout_ms", server.body_read_timeout_ms),
        ("max_connections", u64::from(server.max_connections)),
        (
            "max_connections_per_client",
            u64::from(server.max_connections_per_client),
        ),
        ("request_timeout_ms", server.request_timeout_ms),
    ] {
        issues.positive(format!("server.{key}"), value);
    }
    if server.max_header_bytes < 1024 {
        issues.push("server.max_header_bytes", "must be at least 1024");
    }
    if !(8..=HEADER_COUNT_MAX).contains(&server.max_header_count) {
        issues.push(
            "server.max_header_count",
            format!("must be between 8 and {HEADER_COUNT_MAX}"),
        );
    }
    if let Some(tls) = &server.tls {
        for (key, path) in [("cert", &tls.cert), ("key", &tls.key)] {
            if !config.resolve(path).is_file() {
                let reason = format!("no such file: {}", path.display());
                issues.push(format!("server.tls.{key}"), reason);
            }
        }
    }
}

fn store(config: &Config, issues: &mut Issues) {
    let store = &config.store;
    if store.backend == super::Backend::Postgres {
        if store.database_url().is_empty() {
            issues.push(
                "store.url",
                format!(
                    "required with backend = \"postgres\" (or set {})",
                    super::STORE_URL_ENV
                ),
            );
        }
        if !(LEASE_MS_MIN..=LEASE_MS_MAX).contains(&store.lease_ms) {
            let reason = format!("must be between {LEASE_MS_MIN} and {LEASE_MS_MAX}");
            issues.push("store.lease_ms", reason);
        }
    }
    issues.positive("store.retention_secs".into(), store.retention_secs);
    issues.positive("store.saga_keys_max".into(), store.saga_keys_max);
    issues.positive("store.saga_bytes_max".into(), store.saga_bytes_max);
    if store.cache_entries_max > CACHE_ENTRIES_MAX {
        issues.push(
            "store.cache_entries_max",
            format!("must be at most {CACHE_ENTRIES_MAX}"),
        );
    }
}

fn upstream_checks(key: &str, upstream: &UpstreamConfig, issues: &mut Issues) {
    if let Err(reason) = crate::upstream::parse_base_url(&upstream.url) {
        issues.push(format!("{key}.url"), reason);
    }
    issues.positive(format!("{key}.timeout_ms"), upstream.timeout_ms);
    if upstream.max_attempts == 0 || upstream.max_attempts > ATTEMPTS_MAX {
        let reason = format!("must be between 1 and {ATTEMPTS_MAX}");
        issues.push(format!("{key}.max_attempts"), reason);
    }
    issues.positive(format!("{key}.backoff_max_ms"), upstream.backoff_max_ms);
    if upstream.backoff_base_ms > upstream.backoff_max_ms {
        issues.push(
            format!("{key}.backoff_base_ms"),
            "must not exceed backoff_max_ms",
        );
    }
    issues.positive(
        format!("{key}.breaker_failures"),
        u64::from(upstream.breaker_failures),
    );
    issues.positive(
        format!("{key}.breaker_cooldown_ms"),
        upstream.breaker_cooldown_ms,
    );
    issues.positive(format!("{key}.idle_timeout_ms"), upstream.idle_timeout_ms);
}

fn route_checks(key: &str, route: &RouteConfig, config: &Config, issues: &mut Issues) {
    if route.name.is_empty() {
        issues.push(format!("{key}.name"), "must not be empty");
    }
    match (&route.path, &route.path_prefix) {
        (Some(_), Some(_)) => issues.push(
            format!("{key}.path_prefix"),
            "give either `path` or `path_prefix`, not both",
        ),
        (None, None) => issues.push(
            format!("{key}.path"),
            "a route needs `path` or `path_prefix`",
        ),
        (Some(p), None) | (None, Some(p)) if !p.starts_with('/') => {
            let field = if route.path.is_some() {
                "path"
            } else {
                "path_prefix"
            };
            issues.push(format!("{key}.{field}"), "must start with `/`");
        }
        _ => {}
    }
    if route.strip_prefix && (route.path_prefix.is_none() || route.upstream.is_none()) {
        issues.push(
            format!("{key}.strip_prefix"),
            "only a plain route with `path_prefix` can strip it",
        );
    }
    for (i, method) in route.methods.iter().enumerate() {
        if http::Method::from_bytes(method.as_bytes()).is_err() || method.to_uppercase() != *method
        {
            let reason = format!("`{method}` is not an upper-case HTTP method");
            issues.push(format!("{key}.methods[{i}]"), reason);
        } else if matches!(method.as_str(), "CONNECT" | "TRACE") {
            let reason =
                format!("{method} is never proxied (a tunnel, or an echo of the client's headers)");
            issues.push(format!("{key}.methods[{i}]"), reason);
        }
    }
    route_plugins(key, route, config, issues);
    let targets = [
        route.upstream.is_some(),
        route.saga.is_some(),
        route.msg.is_some(),
    ];
    match targets.iter().filter(|t| **t).count() {
        0 => issues.push(
            format!("{key}.upstream"),
            "a route needs `upstream` (plain), a `saga` table or a `msg` table",
        ),
        1 => {}
        _ => issues.push(
            format!("{key}.saga"),
            "a route has one of `upstream` (plain), `saga` or `msg`, not more",
        ),
    }
    if let Some(upstream) = &route.upstream {
        known_upstream(&format!("{key}.upstream"), upstream, config, issues);
    }
    if let Some(saga) = &route.saga {
        steps_checks(
            &format!("{key}.saga"),
            &saga.client_key,
            &saga.steps,
            saga.mode,
            config,
            issues,
        );
    }
    if let Some(msg) = &route.msg {
        super::msg::check(key, route, msg, config, issues);
    }
}

/// A saga's or a message's client key and steps.
pub(super) fn steps_checks(
    key: &str,
    client_key: &str,
    steps: &[StepConfig],
    mode: SagaMode,
    config: &Config,
    issues: &mut Issues,
) {
    if let Err(reason) = crate::saga::ClientKey::parse(client_key) {
        issues.push(format!("{key}.client_key"), reason);
    }
    if steps.is_empty() || steps.len() > SAGA_STEPS_MAX {
        let reason = format!("1 to {SAGA_STEPS_MAX} steps are needed");
        issues.push(format!("{key}.steps"), reason);
    }
    let mut names = HashSet::new();
    for (i, step) in steps.iter().enumerate() {
        let step_key = format!("{key}.steps[{i}]");
        if !names.insert(step.name.as_str()) {
            let reason = format!("duplicate step name `{}`", step.name);
            issues.push(format!("{step_key}.name"), reason);
        }
        step_checks(&step_key, step, mode, config, issues);
    }
}

fn route_plugins(key: &str, route: &RouteConfig, config: &Config, issues: &mut Issues) {
    if route.plugins.len() > ROUTE_PLUGINS_MAX {
        let reason = format!("at most {ROUTE_PLUGINS_MAX} plugins per route");
        issues.push(format!("{key}.plugins"), reason);
    }
    let mut seen = HashSet::new();
    for (i, plugin) in route.plugins.iter().enumerate() {
        if !config.plugins.contains_key(plugin) && !issues.is_broken(&format!("plugins.{plugin}")) {
            let reason = format!("unknown plugin `{plugin}`; define it under [plugins.{plugin}]");
            issues.push(format!("{key}.plugins[{i}]"), reason);
        } else if !seen.insert(plugin.as_str()) {
            issues.push(
                format!("{key}.plugins[{i}]"),
                format!("`{plugin}` is listed twice"),
            );
        }
    }
}

pub(super) fn known_upstream(key: &str, upstream: &str, config: &Config, issues: &mut Issues) {
    if !config.upstreams.contains_key(upstream)
        && !issues.is_broken(&format!("upstreams.{upstream}"))
    {
        let reason =
            format!("unknown upstream `{upstream}`; define it under [upstreams.{upstream}]");
        issues.push(key, reason);
    }
}

fn step_checks(key: &str, step: &StepConfig, mode: SagaMode, config: &Config, issues: &mut Issues) {
    if step.name.is_empty()
        || !step
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        issues.push(
            format!("{key}.name"),
            "must be non-empty ASCII letters, digits, `_` or `-` (it goes into Idempotency-Key)",
        );
    }
    known_upstream(&format!("{key}.upstream"), &step.upstream, config, issues);
    let calls = [
        ("action", &step.action, mode != SagaMode::Tcc),
        ("compensate", &step.compensate, mode == SagaMode::Saga),
        ("try", &step.try_call, mode == SagaMode::Tcc),
        ("confirm", &step.confirm, mode == SagaMode::Tcc),
        ("cancel", &step.cancel, mode == SagaMode::Tcc),
    ];
    if let Some(status) = &step.status {
        match super::parse_call(status) {
            Ok(call) if call.method == http::Method::GET => {}
            Ok(_) => issues.push(
                format!("{key}.status"),
                "a status call only reads: it must be a GET",
            ),
            Err(reason) => issues.push(format!("{key}.status"), reason),
        }
    }
    let mode_name = match mode {
        SagaMode::Saga => "saga",
        SagaMode::Tcc => "tcc",
        SagaMode::Msg => "msg",
    };
    for (field, value, wanted) in calls {
        match (value, wanted) {
            (None, true) => issues.push(
                format!("{key}.{field}"),
                format!("required in mode = \"{mode_name}\""),
            ),
            (Some(_), false) => issues.push(
                format!("{key}.{field}"),
                format!("not used in mode = \"{mode_name}\""),
            ),
            (Some(call), true) => {
                if let Err(reason) = super::parse_call(call) {
                    issues.push(format!("{key}.{field}"), reason);
                }
            }
            (None, false) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::load::parse;
    use super::*;

    fn issues_of(text: &str) -> Vec<String> {
        validate(&parse(text).unwrap(), &[])
            .into_iter()
            .map(|i| i.key)
            .collect()
    }

    #[test]
    fn a_steps_status_call_must_be_a_get() {
        let route = |status: &str| {
            format!(
                "[upstreams.bank]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nname = \"t\"\n\
                 path = \"/t\"\n[routes.saga]\nmode = \"saga\"\n[[routes.saga.steps]]\n\
                 name = \"debit\"\nupstream = \"bank\"\naction = \"POST /debit\"\n\
                 compensate = \"POST /debit/compensate\"\n{status}"
            )
        };
        assert!(issues_of(&route("status = \"GET /debit/status\"")).is_empty());
        assert!(issues_of(&route("")).is_empty(), "it is optional");
        for bad in ["status = \"POST /debit/status\"", "status = \"debit\""] {
            assert_eq!(
                issues_of(&route(bad)),
                ["routes[0].saga.steps[0].status"],
                "{bad}"
            );
        }
    }

    #[test]
    fn route_with_unknown_upstream_and_plugin_is_named() {
        let text =
            "[[routes]]\nname = \"r\"\npath = \"/x\"\nupstream = \"nope\"\nplugins = [\"ghost\"]\n";
        assert_eq!(
            issues_of(text),
            ["routes[0].plugins[0]", "routes[0].upstream"]
        );
    }

    #[test]
    fn public_admin_listener_needs_a_token() {
        let text = "[server]\nadmin_listen = \"0.0.0.0:9080\"\n";
        assert_eq!(issues_of(text), ["server.admin_token"]);
    }

    #[test]
    fn a_weak_admin_token_is_refused() {
        for token in [" ", "x", "short-token", "sixteen chars  x"] {
            let text = format!("[server]\nadmin_token = \"{token}\"\n");
            assert_eq!(issues_of(&text), ["server.admin_token"], "{token:?}");
        }
        let strong = "[server]\nadmin_token = \"0123456789abcdef\"\n";
        assert!(issues_of(strong).is_empty());
    }

    #[test]
    fn named_operators_need_their_own_strong_token_and_a_unique_name() {
        let ok = r#"
[server]
admin_listen = "0.0.0.0:9080"
[[server.admin_tokens]]
name = "alice"
token = "alice-0123456789abcdef"
role = "operate"
[[server.admin_tokens]]
name = "bob"
token = "bob-0123456789abcdef"
role = "read"
"#;
        assert!(issues_of(ok).is_empty(), "{:?}", issues_of(ok));
        let bad = r#"
[server]
admin_token = "shared-0123456789abcdef"
[[server.admin_tokens]]
name = "admin"
token = "other-0123456789abcdef"
role = "read"
[[server.admin_tokens]]
name = "carol"
token = "shared-0123456789abcdef"
role = "read"
[[server.admin_tokens]]
name = "dave smith"
token = "short"
role = "read"
[[server.admin_tokens]]
name = "erin"
token_env = "TXGATE_TEST_TOKEN_NEVER_SET"
role = "read"
[[server.admin_tokens]]
name = "frank"
role = "read"
"#;
        assert_eq!(
            issues_of(bad),
            [
                "server.admin_tokens[0].name",
                "server.admin_tokens[1].token",
                "server.admin_tokens[2].name",
                "server.admin_tokens[2].token",
                "server.admin_tokens[3].token_env",
                "server.admin_tokens[4].token",
            ]
        );
        let role = "[[server.admin_tokens]]\nname = \"x\"\ntoken = \"0123456789abcdef\"\nrole = \"root\"\n";
        let issue = &parse(role).unwrap_err()[0];
        assert!(issue.key.starts_with("server"), "{issue}");
    }

    #[test]
    fn saga_step_in_wrong_mode_is_named() {
        let text = r#"
[upstreams.a]
url = "http://127.0.0.1:1"
[[routes]]
name = "t"
path = "/t"
[routes.saga]
mode = "tcc"
[[routes.saga.steps]]
name = "s"
upstream = "a"
action = "POST /x"
try = "POST /try"
confirm = "PUT"
cancel = "POST /cancel"
"#;
        assert_eq!(
            issues_of(text),
            [
                "routes[0].saga.steps[0].action",
                "routes[0].saga.steps[0].confirm"
            ]
        );
    }
}

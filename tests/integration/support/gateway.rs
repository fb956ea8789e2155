//! A gateway process with its own config, store and log in a temp dir.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{bin, client, free_port, wait_until};

/// How long a gateway may take to become ready (plugins are compiled at start).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds a gateway config around a test's upstreams and routes.
pub struct GatewayBuilder {
    server: Vec<String>,
    store: Vec<String>,
    body: String,
    env: Vec<(String, String)>,
}

impl GatewayBuilder {
    /// A config whose upstreams, plugins and routes are `body`; `[server]` and `[store]` are
    /// filled in with free ports and a temp dir.
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            server: Vec::new(),
            store: Vec::new(),
            body: body.into(),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable of the gateway process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds a `[store]` line, such as `backend = "postgres"`.
    pub fn store(mut self, line: &str) -> Self {
        self.store.push(line.to_string());
        self
    }

    /// A gateway of a fleet on `database`, named `name`, with a lease of `lease_ms`.
    pub fn fleet(self, database: &str, name: &str, lease_ms: u64) -> Self {
        self.store("backend = \"postgres\"")
            .store(&format!("url = \"{database}\""))
            .store(&format!("gateway_id = \"{name}\""))
            .store(&format!("lease_ms = {lease_ms}"))
    }

    /// Adds a `[server]` line, such as `max_body_bytes = 100`.
    pub fn server(mut self, line: &str) -> Self {
        self.server.push(line.to_string());
        self
    }

    /// Writes the config and starts `txgate serve`.
    pub async fn start(self) -> Gateway {
        let mut gateway = self.stopped();
        gateway.spawn();
        gateway.wait_ready().await;
        gateway
    }

    /// Writes the config without starting the gateway (for tests of start-up itself).
    pub fn stopped(self) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let admin_port = free_port();
        let config_path = dir.path().join("txgate.toml");
        let mut gateway = Gateway {
            child: None,
            port,
            admin_port,
            dir,
            config_path,
            server: self.server.clone(),
            store: self.store.clone(),
            env: self.env.clone(),
            token: None,
            starts: 0,
            listen: None,
        };
        gateway.write_config(&self.body);
        gateway.token = self.server.iter().find_map(|line| {
            line.strip_prefix("admin_token = ")
                .map(|t| t.trim_matches('"').to_string())
        });
        gateway
    }
}

/// A running `txgate serve`, killed on drop.
pub struct Gateway {
    child: Option<Child>,
    /// Client port.
    pub port: u16,
    /// Admin port.
    pub admin_port: u16,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    server: Vec<String>,
    store: Vec<String>,
    env: Vec<(String, String)>,
    token: Option<String>,
    starts: u32,
    listen: Option<String>,
}

impl Gateway {
    /// Sets a `[store]` line of later configs, replacing the one with the same key (`lease_ms =
    /// 500` replaces `lease_ms = ...`): the process keeps its own until it restarts.
    pub fn set_store_line(&mut self, line: &str) {
        let key = line.split('=').next().unwrap_or(line).trim().to_string();
        self.store
            .retain(|l| l.split('=').next().unwrap_or(l).trim() != key);
        self.store.push(line.to_string());
    }

    /// A second process with this gateway's config file (the same `gateway_id`): started, and
    /// killed on drop. Returns it and the path of its log.
    pub fn spawn_twin(&self) -> (Child, PathBuf) {
        let log_path = self.dir.path().join("twin.log");
        let log = File::create(&log_path).expect("log file");
        let child = Command::new(bin("txgate"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start txgate");
        (child, log_path)
    }

    /// Writes a different client listener into later configs (the process keeps its own).
    pub fn set_config_listen(&mut self, addr: &str) {
        self.listen = Some(addr.to_string());
    }

    /// Rewrites the config file with a new body (same server section, ports and store), for
    /// reload tests.
    pub fn write_config(&self, body: &str) {
        let listen = self
            .listen
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", self.port));
        let config = format!(
            "[server]\nlisten = \"{listen}\"\nadmin_listen = \"127.0.0.1:{}\"\n{}\n\n[store]\ndir = \"store\"\n{}\n\n{body}\n",
            self.admin_port,
            self.server.join("\n"),
            self.store.join("\n"),
        );
        std::fs::write(&self.config_path, config).expect("write config");
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = File::create(self.log_path()).expect("log file");
        let child = Command::new(bin("txgate"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env(
                "TXGATE_LOG",
                std::env::var("TXGATE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start txgate");
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("gateway-{}.log", self.starts))
    }

    /// The config file.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// Everything the current process logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits for `/readyz`, failing fast (with the log) if the process dies.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = self.admin_url("/readyz");
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("txgate exited early ({status}):\n{}", self.log());
            }
            if client()
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("txgate not ready after {READY_TIMEOUT:?}:\n{}", self.log());
    }

    /// A URL on the client listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// An authorised admin request.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = client().request(method, self.admin_url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// An authorised admin GET, its body as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        self.admin(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST /admin/reload`: its status and its body (JSON, or the text as a JSON string).
    pub async fn reload(&self) -> (u16, serde_json::Value) {
        let reply = self
            .admin(reqwest::Method::POST, "/admin/reload")
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        let text = reply.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body)
    }

    /// Whether every saga this gateway can list is finished (none pending, compensating or stuck).
    pub async fn no_saga_unfinished(&self) -> bool {
        for status in ["pending", "compensating", "stuck"] {
            let listed = self
                .admin_json(&format!("/admin/sagas?status={status}&limit=1"))
                .await;
            if listed["sagas"].as_array().is_none_or(|s| !s.is_empty()) {
                return false;
            }
        }
        true
    }

    /// The status `/readyz` answers now (0 when nothing answers).
    pub async fn readyz(&self) -> u16 {
        client()
            .get(self.admin_url("/readyz"))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.admin(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one metric series (`name{labels}`), or 0.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Whether the process was started and not yet seen to exit or killed.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal txgate");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let mut status = None;
        wait_until(timeout, "txgate to exit", || {
            status = child.try_wait().ok().flatten();
            let done = status.is_some();
            async move { done }
        })
        .await;
        self.child = None;
        status.expect("exit status")
    }

    /// SIGKILL, reaped at once.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Starts the gateway again and expects it to refuse: returns its exit status and log.
    pub async fn restart_expecting_failure(&mut self) -> (ExitStatus, String) {
        assert!(
            self.child.is_none(),
            "stop the gateway before restarting it"
        );
        self.spawn();
        let status = self.wait_exit(Duration::from_secs(30)).await;
        (status, self.log())
    }

    /// Starts the gateway again with the same config, ports and store.
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "stop the gateway before restarting it"
        );
        self.spawn();
        self.wait_ready().await;
    }
}

/// Warning and error lines of a gateway's log shown when a test fails.
const LOG_LINES_SHOWN: usize = 80;

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
        // The log lives in a temporary directory that goes with the gateway: a failing test
        // shows its end, so a failure seen once (in CI) can be read afterwards.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|line| {
                    ["WARN", "ERROR", "panicked"]
                        .iter()
                        .any(|l| line.contains(l))
                })
                .collect();
            let shown = &lines[lines.len().saturating_sub(LOG_LINES_SHOWN)..];
            eprintln!(
                "--- the last {} warnings and errors of the gateway on port {} ---\n{}",
                shown.len(),
                self.port,
                shown.join("\n")
            );
        }
    }
}

//! One build's world for the mask suite: a document server, two banks, and a gateway whose
//! routes run the build's plugin.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::fixtures::{ACCOUNT, LEDGER, NOTES, PLUGINS, TEXT, routes};
use super::upstream::{Document, Documents};
use crate::support::{Bank, Gateway, GatewayBuilder, client};
use crate::wasm;

/// A build of the plugin.
#[derive(Debug, Clone, Copy)]
pub enum Build {
    Rust,
    Python,
}

impl Build {
    /// The component.
    pub fn module(self) -> &'static str {
        match self {
            Self::Rust => wasm::MASK,
            Self::Python => wasm::MASK_PY.unwrap_or_else(|| {
                panic!(
                    "the Python build of the mask plugin was not built: componentize-py is not \
                     installed. Install it with `pip install -r plugins/mask-py/requirements.txt` \
                     (tests/run does), then rebuild the tests (`touch tests/build.rs`)."
                )
            }),
        }
    }

    /// The plugin's limits. CPython needs no more memory than the default 16 MiB for these
    /// bodies, but a call takes milliseconds (plugins/mask-py/README.md): a busy test machine
    /// must not turn that into a timeout.
    pub fn limits(self) -> &'static str {
        match self {
            Self::Rust => "",
            Self::Python => "timeout_ms = 1000\nmemory_limit_bytes = 33554432",
        }
    }
}

/// A plugin config template with the build's module and limits.
pub fn plugins(template: &str, build: Build) -> String {
    template
        .replace("@MODULE@", build.module())
        .replace("@LIMITS@", build.limits())
}

/// Everything one build's suite runs against.
pub struct World {
    pub build: Build,
    pub gateway: Gateway,
    pub a: Bank,
    pub b: Bank,
    /// The upstreams and routes of the config, for a test that writes another.
    pub routes: String,
    _documents: Documents,
}

impl World {
    /// Starts the documents, the banks and the gateway for `build`.
    pub async fn start(build: Build) -> Self {
        let document = |path, content_type, body: &str| Document {
            path,
            content_type,
            body: body.to_string(),
        };
        let documents = Documents::start(vec![
            document("/account", "application/json", ACCOUNT),
            document("/ledger", "application/json", LEDGER),
            document("/notes", "application/json", NOTES),
            document("/text", "text/plain", TEXT),
        ])
        .await;
        let a = Bank::start(&["alice=1000"]).await;
        let b = Bank::start(&["carol=1000"]).await;
        let routes = routes(&documents, &a, &b);
        let config = format!("{}{routes}", plugins(PLUGINS, build));
        let mut gateway = GatewayBuilder::new(config).stopped();
        if matches!(build, Build::Python) {
            warm_compile_cache(&gateway).await;
        }
        gateway.restart().await;
        Self {
            build,
            gateway,
            a,
            b,
            routes,
            _documents: documents,
        }
    }

    /// `GET path` through the gateway: status, headers and body.
    pub async fn get(&self, path: &str, request_id: &str) -> reqwest::Response {
        client()
            .get(self.gateway.url(path))
            .header("x-request-id", request_id)
            .send()
            .await
            .unwrap()
    }

    /// `GET path`: status and body.
    pub async fn text(&self, path: &str) -> (u16, String) {
        let response = self.get(path, "mask-get").await;
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

/// How long the first start of the Python build's gateway may take: it compiles CPython.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(300);

/// Starts `gateway`'s config once in a process of its own and waits until it serves, for as
/// long as compiling CPython takes on a busy machine (longer than the support's ready timeout
/// allows a start), then stops it. The compiled component stays in the store's compile cache,
/// so the gateway proper then starts without compiling again.
async fn warm_compile_cache(gateway: &Gateway) {
    let (twin, log) = gateway.spawn_twin();
    let mut twin = Twin(twin);
    let twin = &mut twin.0;
    let deadline = Instant::now() + WARM_UP_TIMEOUT;
    while gateway.readyz().await != 200 {
        if let Some(status) = twin.try_wait().expect("poll the warm-up gateway") {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the warm-up gateway exited ({status}):\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "the warm-up gateway did not serve within {WARM_UP_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = Pid::from_raw(i32::try_from(twin.id()).expect("a pid"));
    kill(pid, Signal::SIGTERM).expect("stop the warm-up gateway");
    let stop_deadline = Instant::now() + Duration::from_secs(30);
    while twin.try_wait().expect("poll the warm-up gateway").is_none() {
        if Instant::now() > stop_deadline {
            let _ = twin.kill();
            let _ = twin.wait();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The warm-up process, killed if the warm-up fails half-way.
struct Twin(std::process::Child);

impl Drop for Twin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

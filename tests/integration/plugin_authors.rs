//! Curious plugin authors: a plugin that sleeps, one that keeps a client's data in a `static`,
//! and one that floods the key-value store. Each is bounded, contained, or stopped, and the
//! rest of the gateway goes on.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sagas::{transfer, transfer_routes};
use crate::support::{Bank, GatewayBuilder, client};
use crate::wasm;

fn one_plugin(bank: &Bank, plugin: &str, module: &str, settings: &str) -> String {
    format!(
        r#"
[upstreams.bank]
url = "{}"
max_attempts = 1
[plugins.{plugin}]
module = "{module}"
{settings}
[[routes]]
name = "guarded"
path_prefix = "/guarded"
strip_prefix = true
upstream = "bank"
plugins = ["{plugin}"]
"#,
        bank.base()
    )
}

#[tokio::test]
async fn a_sleeping_plugin_is_cut_at_its_wall_timeout() {
    // Proves a plugin that waits (std::thread::sleep, a WASI poll) instead of computing is cut
    // at wall_timeout_ms: 503 problem+json, counted as a timeout, and the next call is served.
    let bank = Bank::start(&[]).await;
    let settings = "wall_timeout_ms = 300\ntimeout_ms = 50";
    let gateway = GatewayBuilder::new(one_plugin(&bank, "sleeper", wasm::SLEEPER, settings))
        .start()
        .await;
    let started = Instant::now();
    let slept = client()
        .get(gateway.url("/guarded/echo"))
        .header("x-sleep-ms", "10000")
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(slept.status(), 503);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // The client is told it timed out; the limit it ran into is for the log only.
    let problem: Value = slept.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("did not finish in time"), "{problem}");
    assert!(!detail.contains("wall_timeout_ms"), "{problem}");
    assert!(gateway.log().contains("wall_timeout_ms"));
    let timeouts = gateway
        .metric("txgate_plugin_errors_total{plugin=\"sleeper\",kind=\"timeout\"}")
        .await;
    assert_eq!(timeouts, 1.0);
    let quick = client()
        .get(gateway.url("/guarded/echo"))
        .header("x-sleep-ms", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(quick.status(), 200);
    assert_eq!(
        bank.hits("/echo").await,
        1,
        "only the quick call reached the bank"
    );
}

async fn previous_token(url: &str, token: &str) -> String {
    let echoed: Value = client()
        .get(url)
        .header("x-token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    echoed["headers"]["x-previous-token"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_static_reaches_the_next_client_unless_isolation_is_fresh() {
    // Proves what isolation means: with reused instances a static left by alice's request is
    // seen by carol's; with `isolation = "fresh"` no request ever sees another's.
    let bank = Bank::start(&[]).await;
    let config = |isolation: &str| {
        one_plugin(
            &bank,
            "statics",
            wasm::STATICS,
            &format!("isolation = \"{isolation}\""),
        )
    };
    let reused = GatewayBuilder::new(config("reuse"))
        .server("workers = 1")
        .start()
        .await;
    let url = reused.url("/guarded/echo");
    previous_token(&url, "alice-secret").await;
    assert_eq!(
        previous_token(&url, "carol").await,
        "alice-secret",
        "reuse shares memory"
    );
    let fresh = GatewayBuilder::new(config("fresh"))
        .server("workers = 1")
        .start()
        .await;
    let url = fresh.url("/guarded/echo");
    previous_token(&url, "alice-secret").await;
    assert_eq!(
        previous_token(&url, "carol").await,
        "",
        "a fresh instance remembers nothing"
    );
}

#[tokio::test]
async fn a_plugin_flooding_the_store_stops_at_its_byte_quota_while_others_go_on() {
    // Proves a plugin writing large values under new keys gets limit-reached at its
    // kv_bytes_max, while sagas and other requests through the same gateway go on.
    let a = Bank::start(&["alice=1000"]).await;
    let b = Bank::start(&["carol=0"]).await;
    let config = format!(
        "{}\n[plugins.flooder]\nmodule = \"{}\"\nkv_bytes_max = 4194304\ntimeout_ms = 500\n[[routes]]\nname = \"flood\"\npath = \"/flood\"\nupstream = \"bank_a\"\nplugins = [\"flooder\"]\n",
        transfer_routes(&a, &b, ""),
        wasm::FLOODER
    );
    let gateway = GatewayBuilder::new(config).start().await;
    let flood = |id: &'static str| {
        let url = gateway.url("/flood");
        async move {
            let answer: Value = client()
                .post(url)
                .header("x-request-id", id)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer
        }
    };
    let first = flood("f1").await;
    // 4 MiB holds 15 values of 256 KiB with their keys; the 16th goes past it.
    assert_eq!(first["stored"], 15, "{first}");
    assert!(
        first["error"].as_str().unwrap().contains("quota"),
        "{first}"
    );
    let second = flood("f2").await;
    assert_eq!(second["stored"], 0, "still full: {second}");
    let (status, _) = transfer(
        &gateway,
        "/transfers",
        "beside-the-flood",
        "alice",
        "carol",
        3,
    )
    .await;
    assert_eq!(status, 200, "sagas go on");
    let store: Value = gateway.admin_json("/admin/store").await;
    assert!(
        store["usage"]["kv:flooder"]["bytes"].as_u64().unwrap() <= 4_194_304,
        "{store}"
    );
}

/// A plugin author profiling a plugin: with `TXGATE_PLUGIN_PERFMAP` set, the gateway writes the
/// perf map that names the plugin's own functions, and only then.
#[tokio::test]
async fn a_perf_map_names_the_plugins_functions_when_asked_for() {
    let bank = Bank::start(&["alice=100"]).await;
    let settings = "state = \"volatile\"\n[plugins.rate_limit.config]\nkey = \"route\"\nper_second = 1000\nburst = 1000";
    let body = one_plugin(&bank, "rate_limit", wasm::RATE_LIMIT, settings);
    let plain = GatewayBuilder::new(body.clone()).start().await;
    let profiled = GatewayBuilder::new(body)
        .env("TXGATE_PLUGIN_PERFMAP", "1")
        .start()
        .await;
    for gateway in [&plain, &profiled] {
        let response = client()
            .get(gateway.url("/guarded/accounts/alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let map = |pid: nix::unistd::Pid| std::path::PathBuf::from(format!("/tmp/perf-{pid}.map"));
    assert!(!map(plain.pid()).exists(), "not asked for");
    let written = std::fs::read_to_string(map(profiled.pid())).expect("the perf map");
    let _ = std::fs::remove_file(map(profiled.pid()));
    assert!(
        written
            .lines()
            .any(|line| line.contains("rate_limit") && line.contains("on_request")),
        "the rate limiter's on_request is named"
    );
}

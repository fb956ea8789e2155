//! The plugin runtime with real components built from `plugins/` and `tests/programs/`: the
//! sandbox's limits, failure policies, the example plugin, and hot reload.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::{Bank, GatewayBuilder, client};
use crate::wasm;

/// A plain route to the bank's echo endpoint through one plugin.
fn route_with(bank: &Bank, plugin: &str, module: &str, settings: &str) -> String {
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

[[routes]]
name = "open"
path_prefix = "/open"
strip_prefix = true
upstream = "bank"
"#,
        bank.base()
    )
}

async fn problem_type(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["type"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn example_plugin_adds_its_header_both_ways() {
    // Proves the SDK's example plugin runs in a real gateway: its config reaches it, and its
    // header reaches the upstream and the client. Both edits depend on its config alone and it
    // says so (decisions.reuse, reuse-response): later requests get them without a call.
    let bank = Bank::start(&[]).await;
    let settings = "[plugins.tag.config]\nname = \"x-served-by\"\nvalue = \"edge-7\"";
    let gateway = GatewayBuilder::new(route_with(&bank, "tag", wasm::ADD_HEADER, settings))
        .start()
        .await;
    for _ in 0..3 {
        let response = client()
            .get(gateway.url("/guarded/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-served-by"], "edge-7");
        let echo: Value = response.json().await.unwrap();
        assert_eq!(echo["headers"]["x-served-by"][0], "edge-7");
    }
    for hook in ["on-request", "on-response"] {
        let calls = format!("txgate_plugin_calls_total{{plugin=\"tag\",hook=\"{hook}\"}}");
        assert_eq!(gateway.metric(&calls).await, 1.0, "{hook}: called once");
        let reused =
            format!("txgate_plugin_decisions_reused_total{{plugin=\"tag\",hook=\"{hook}\"}}");
        assert_eq!(gateway.metric(&reused).await, 2.0, "{hook}: reused twice");
    }
}

#[tokio::test]
async fn a_plugin_built_for_abi_0_2_0_runs_unchanged_on_this_gateway() {
    // Proves the ABI's minor step is compatible: a component built against the released
    // txgate:plugin@0.2.0 WIT loads on a gateway running 0.2.3 and its hook runs.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(route_with(&bank, "released", wasm::ABI_0_2_0, ""))
        .start()
        .await;
    let response = client()
        .get(gateway.url("/guarded/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["headers"]["x-abi"][0], "0.2.0", "{echo}");
    assert_eq!(echo["headers"]["x-abi-route"][0], "guarded", "{echo}");
}

#[tokio::test]
async fn a_reused_instance_serves_a_thousand_requests_without_running_out_of_handles() {
    // Proves the views lent to a hook are given back after every call: one keep-alive client
    // keeps one worker, and so one pooled instance, busy for a thousand requests, each lending
    // it three handles (the request to on-request; the request and the response to
    // on-response). An instance holds at most 1,024 handles, so a handle kept per call would
    // fail this within a few hundred requests.
    // add_header declares its edits reusable: turned off here, so every request calls it.
    let bank = Bank::start(&[]).await;
    let config = route_with(&bank, "tag", wasm::ADD_HEADER, "reuse_decisions = false");
    let gateway = GatewayBuilder::new(config).start().await;
    let client = client();
    for n in 0..1000 {
        let response = client
            .get(gateway.url("/guarded/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "request {n}");
        assert_eq!(response.headers()["x-txgate-plugin"], "add-header");
    }
    let series = "txgate_plugin_calls_total{plugin=\"tag\",hook=\"on-response\"}";
    assert_eq!(gateway.metric(series).await, 1000.0);
    let errors = gateway.metrics().await;
    assert!(
        !errors.contains("txgate_plugin_errors_total{plugin=\"tag\""),
        "no plugin call failed"
    );
}

#[tokio::test]
async fn infinite_loop_is_cut_at_its_deadline_and_rejected() {
    // Proves a looping plugin is stopped at timeout_ms: the client gets 503 problem+json soon
    // after, nothing reaches the backend, and the failure is counted as a timeout.
    let bank = Bank::start(&[]).await;
    let config = route_with(&bank, "looper", wasm::LOOPER, "timeout_ms = 100");
    let gateway = GatewayBuilder::new(config).start().await;
    let started = Instant::now();
    let response = client()
        .get(gateway.url("/guarded/echo"))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 503);
    assert_eq!(
        problem_type(response).await,
        "urn:txgate:problem:plugin-failed"
    );
    assert!(
        elapsed >= Duration::from_millis(100),
        "cut after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1000),
        "cut after {elapsed:?}"
    );
    assert_eq!(bank.total_hits().await, 0);
    let errors = gateway
        .metric("txgate_plugin_errors_total{plugin=\"looper\",kind=\"timeout\"}")
        .await;
    assert_eq!(errors, 1.0);
}

#[tokio::test]
async fn failing_plugin_with_skip_policy_lets_the_request_through() {
    // Proves on_error = "skip": the looping plugin is cut and passed over, the request reaches
    // the backend and succeeds.
    let bank = Bank::start(&[]).await;
    let config = route_with(
        &bank,
        "looper",
        wasm::LOOPER,
        "timeout_ms = 20\non_error = \"skip\"",
    );
    let gateway = GatewayBuilder::new(config).start().await;
    let response = client()
        .get(gateway.url("/guarded/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(bank.hits("/echo").await, 1);
}

#[tokio::test]
async fn memory_bomb_is_stopped_at_its_cap() {
    // Proves memory_limit_bytes caps a plugin: the allocation loop fails with kind "memory", and
    // the gateway keeps serving.
    let bank = Bank::start(&[]).await;
    let settings = "memory_limit_bytes = 8388608\ntimeout_ms = 2000";
    let gateway = GatewayBuilder::new(route_with(&bank, "bomb", wasm::MEMORY_BOMB, settings))
        .start()
        .await;
    for _ in 0..3 {
        let response = client()
            .get(gateway.url("/guarded/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
    }
    let errors = gateway
        .metric("txgate_plugin_errors_total{plugin=\"bomb\",kind=\"memory\"}")
        .await;
    assert_eq!(errors, 3.0);
    let open = client()
        .get(gateway.url("/open/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
}

#[tokio::test]
async fn a_trap_fails_only_its_own_request() {
    // Proves a trap is isolated: the trapping request gets 503, the next request through the same
    // plugin (on a fresh instance) succeeds.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(route_with(&bank, "trapper", wasm::TRAPPER, ""))
        .start()
        .await;
    let trapped = client()
        .get(gateway.url("/guarded/echo/trap"))
        .send()
        .await
        .unwrap();
    assert_eq!(trapped.status(), 503);
    for _ in 0..3 {
        let fine = client()
            .get(gateway.url("/guarded/echo/fine"))
            .send()
            .await
            .unwrap();
        assert_eq!(fine.status(), 200);
    }
    let errors = gateway
        .metric("txgate_plugin_errors_total{plugin=\"trapper\",kind=\"trap\"}")
        .await;
    assert_eq!(errors, 1.0);
}

#[tokio::test]
async fn oversized_plugin_output_is_bounded() {
    // Proves the gateway refuses a plugin answer past its limits (a 12 MiB body, 10,000 headers)
    // as an "output" failure instead of sending it.
    let bank = Bank::start(&[]).await;
    // Making 12 MiB takes the plugin time: on a loaded host more than the default 1 s of wall
    // time, which would fail it as a timeout before its output is looked at.
    let settings = "memory_limit_bytes = 268435456\ntimeout_ms = 5000\nwall_timeout_ms = 10000";
    let gateway = GatewayBuilder::new(route_with(&bank, "big", wasm::BIG_OUTPUT, settings))
        .server("max_response_bytes = 1048576")
        .start()
        .await;
    let response = client()
        .get(gateway.url("/guarded/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body = response.bytes().await.unwrap();
    assert!(body.len() < 4096, "the oversized answer was not sent");
    let errors = gateway
        .metric("txgate_plugin_errors_total{plugin=\"big\",kind=\"output\"}")
        .await;
    assert_eq!(errors, 1.0);
}

#[tokio::test]
async fn sandbox_denies_files_sockets_and_environment() {
    // Proves WASI is linked deny-all: opening a file, listing a directory and connecting a socket
    // all fail inside the plugin, and it sees no environment variables and no arguments.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(route_with(&bank, "escape", wasm::ESCAPE, ""))
        .start()
        .await;
    let response = client()
        .get(gateway.url("/guarded/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    for attempt in ["file", "dir", "socket"] {
        let outcome = report[attempt].as_str().unwrap();
        assert!(outcome.starts_with("error"), "{attempt}: {outcome}");
    }
    assert_eq!(report["env_vars"], 0);
    assert_eq!(report["args"], 0);
}

#[tokio::test]
async fn other_routes_keep_succeeding_while_a_looping_plugin_is_hit() {
    // Proves a looping plugin cannot stall the gateway: with looping requests in flight
    // continuously, every request on another route succeeds, and its worst latency stays far
    // below the looping plugin's deadline.
    let bank = Bank::start(&[]).await;
    let config = route_with(&bank, "looper", wasm::LOOPER, "timeout_ms = 500");
    let gateway = GatewayBuilder::new(config).start().await;
    let loop_url = gateway.url("/guarded/echo");
    let hammers: Vec<_> = (0..4)
        .map(|_| {
            let url = loop_url.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(3);
                let mut cut = 0;
                while Instant::now() < deadline {
                    let response = client().get(&url).send().await.unwrap();
                    assert_eq!(response.status(), 503);
                    cut += 1;
                }
                cut
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        let response = client()
            .get(gateway.url("/open/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        worst = worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let mut cut = 0;
    for hammer in hammers {
        cut += hammer.await.unwrap();
    }
    // Four loopers share two workers, so each gets about half a core: a 500 ms budget of the
    // plugin's own execution lasts about a second of wall time.
    assert!(cut >= 6, "the looping route was hit {cut} times");
    // 15 ms is typical here; the bound leaves room for a loaded test machine.
    assert!(
        worst < Duration::from_millis(400),
        "worst latency on the other route: {worst:?}"
    );
}

fn tag_config(bank: &Bank, module: &str, value: &str) -> String {
    route_with(
        bank,
        "tag",
        module,
        &format!("[plugins.tag.config]\nname = \"x-version\"\nvalue = \"{value}\""),
    )
}

#[tokio::test]
async fn reload_under_load_drops_nothing_and_takes_effect_at_once() {
    // Proves hot reload: 20 reloads under continuous traffic lose no request, and the first
    // request after each reload shows the new plugin config.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(tag_config(&bank, wasm::ADD_HEADER, "v0"))
        .start()
        .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (gateway.url("/guarded/echo"), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match client().get(&url).send().await {
                        Ok(r) if r.status() == 200 && r.headers().contains_key("x-version") => {
                            ok += 1
                        }
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    for version in 1..=20 {
        let value = format!("v{version}");
        gateway.write_config(&tag_config(&bank, wasm::ADD_HEADER, &value));
        let (status, body) = gateway.reload().await;
        assert_eq!(status, 200, "{body}");
        let response = client()
            .get(gateway.url("/guarded/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-version"], value.as_str());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for task in load {
        let (o, f) = task.await.unwrap();
        ok += o;
        failed += f;
    }
    assert_eq!(
        failed, 0,
        "{failed} requests failed during reloads ({ok} succeeded)"
    );
    assert!(ok > 100, "only {ok} requests ran during the reloads");
}

#[tokio::test]
async fn failed_reload_keeps_the_running_plugins() {
    // Proves a reload that cannot compile its plugin is refused with 422 problem+json naming the
    // key, and the old plugin keeps serving.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(tag_config(&bank, wasm::ADD_HEADER, "good"))
        .start()
        .await;
    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(garbage.path(), b"not wasm at all").unwrap();
    gateway.write_config(&tag_config(
        &bank,
        &garbage.path().display().to_string(),
        "bad",
    ));
    let (status, body) = gateway.reload().await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("plugins.tag.module"),
        "{body}"
    );
    let response = client()
        .get(gateway.url("/guarded/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-version"], "good");
}

#[tokio::test]
async fn sighup_reloads_the_plugins() {
    // Proves SIGHUP reloads like the admin call does.
    let bank = Bank::start(&[]).await;
    let gateway = GatewayBuilder::new(tag_config(&bank, wasm::ADD_HEADER, "before"))
        .start()
        .await;
    gateway.write_config(&tag_config(&bank, wasm::ADD_HEADER, "after"));
    gateway.signal(Signal::SIGHUP);
    crate::support::wait_until(Duration::from_secs(10), "the SIGHUP reload", || {
        let url = gateway.url("/guarded/echo");
        async move {
            let response = client().get(url).send().await.unwrap();
            response.headers()["x-version"] == "after"
        }
    })
    .await;
}

#[test]
fn check_names_a_component_that_does_not_implement_the_world() {
    // Proves `txgate check` compiles each plugin: a component exporting nothing is reported with
    // its key and the missing hooks interface, and a file that is not wasm is named too.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.wat"), "(component)").unwrap();
    std::fs::write(dir.path().join("junk.wasm"), b"\0asm junk").unwrap();
    let config = r#"
[plugins.empty]
module = "empty.wat"
[plugins.junk]
module = "junk.wasm"
"#;
    std::fs::write(dir.path().join("txgate.toml"), config).unwrap();
    let output = std::process::Command::new(crate::support::bin("txgate"))
        .args(["check", "-c"])
        .arg(dir.path().join("txgate.toml"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("plugins.empty.module: does not implement the txgate:plugin world"),
        "{stderr}"
    );
    assert!(
        stderr.contains("txgate:plugin/hooks"),
        "the missing part is named: {stderr}"
    );
    assert!(
        stderr.contains("plugins.junk.module: not a WebAssembly component"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_plugin_that_implements_only_on_request_is_never_called_on_other_hooks() {
    // Proves the gateway asks a plugin for its hooks at load and calls no other: the no-op
    // plugin defines only on-request, so plain requests, a saga that completes and a saga that
    // compensates call it on-request each time, and on no other hook, not even once.
    let (a, b) = crate::sagas::banks().await;
    let config = format!(
        "[plugins.noop]\nmodule = \"{}\"\n{}\n[[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\nstrip_prefix = true\nupstream = \"bank_a\"\nplugins = [\"noop\"]\n",
        wasm::NOOP,
        crate::sagas::transfer_routes(&a, &b, "").replace(
            "path = \"/transfers\"\n",
            "path = \"/transfers\"\nplugins = [\"noop\"]\n"
        )
    );
    let gateway = GatewayBuilder::new(config).start().await;
    for _ in 0..3 {
        let response = client()
            .get(gateway.url("/plain/accounts/alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let (status, body) =
        crate::sagas::transfer(&gateway, "/transfers", "only-1", "alice", "carol", 10).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        crate::sagas::transfer(&gateway, "/transfers", "only-2", "alice", "nobody", 10).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["steps"][0]["compensation"], "done", "{body}");
    let calls = |hook: &'static str| {
        let gateway = &gateway;
        async move {
            gateway
                .metric(&format!(
                    "txgate_plugin_calls_total{{plugin=\"noop\",hook=\"{hook}\"}}"
                ))
                .await
        }
    };
    assert_eq!(calls("on-request").await, 5.0);
    for hook in [
        "on-step-request",
        "on-step-response",
        "on-compensate",
        "on-response",
    ] {
        assert_eq!(calls(hook).await, 0.0, "{hook}");
    }
}

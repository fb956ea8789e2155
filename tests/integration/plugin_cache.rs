//! The compile cache: a restart or a reload loads compiled plugins from the store's directory
//! instead of compiling them again; a damaged artifact is compiled again, never loaded; and a
//! reload that changes ten plugins drops no request under steady load.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{Bank, Gateway, GatewayBuilder, client, wait_until};
use crate::wasm;

/// The log line of a plugin compiled at load.
const COMPILED: &str = "plugin compiled";
/// The log line of a plugin loaded from its artifact.
const FROM_CACHE: &str = "plugin loaded from the compile cache";
/// The log line of an artifact refused at load.
const UNUSABLE: &str = "compiled plugin unusable";

/// Plugins on one route, plugin `i` being `modules[i]` adding the header `x-p{i}: value`.
fn plugins_on_one_route(bank: &Bank, modules: &[PathBuf], value: &str) -> String {
    let mut config = format!(
        "[upstreams.bank]\nurl = \"{}\"\nmax_attempts = 1\n",
        bank.base()
    );
    for (i, module) in modules.iter().enumerate() {
        config += &format!(
            "\n[plugins.p{i}]\nmodule = \"{}\"\n[plugins.p{i}.config]\nname = \"x-p{i}\"\nvalue = \"{value}\"\n",
            module.display()
        );
    }
    let names: Vec<String> = (0..modules.len()).map(|i| format!("\"p{i}\"")).collect();
    config += &format!(
        "\n[[routes]]\nname = \"tagged\"\npath_prefix = \"/tagged\"\nstrip_prefix = true\nupstream = \"bank\"\nplugins = [{}]\n",
        names.join(", ")
    );
    config
}

/// A copy of the component `original` with a custom section naming `tag`: the same plugin, in
/// a module with bytes (and so an artifact key) of its own.
fn variant(original: &str, tag: &str, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(original).unwrap();
    let name = b"txgate-test-variant";
    let mut payload = vec![u8::try_from(name.len()).unwrap()];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    // A custom section (id 0) whose size fits one LEB128 byte.
    bytes.push(0);
    bytes.push(
        u8::try_from(payload.len())
            .ok()
            .filter(|n| *n < 128)
            .unwrap(),
    );
    bytes.extend_from_slice(&payload);
    let path = dir.join(format!("{tag}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Ten distinct add-header modules, tagged `generation`.
fn generation(dir: &Path, generation: &str) -> Vec<PathBuf> {
    (0..10)
        .map(|i| variant(wasm::ADD_HEADER, &format!("{generation}-{i}"), dir))
        .collect()
}

fn artifacts(gateway: &Gateway) -> Vec<PathBuf> {
    let dir = gateway.store_dir().join("plugin-cache");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|path| path.extension().is_some_and(|e| e == "cwasm"));
    found.sort();
    found
}

/// Whether a request through the ten plugins passes with every plugin's header at `value`.
async fn tagged_by_all(gateway: &Gateway, value: &str) -> bool {
    let Ok(answer) = client().get(gateway.url("/tagged/echo")).send().await else {
        return false;
    };
    answer.status() == 200
        && (0..10).all(|i| {
            answer
                .headers()
                .get(format!("x-p{i}"))
                .is_some_and(|v| v == value)
        })
}

async fn stop(gateway: &mut Gateway) {
    gateway.signal(Signal::SIGTERM);
    gateway.wait_exit(Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_restart_with_a_warm_cache_compiles_nothing() {
    // Proves a restart loads every plugin from its artifact: the first start compiles the two
    // modules and keeps one artifact each; the second logs no compilation, only loads from the
    // cache, and serves.
    let bank = Bank::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let modules = [
        variant(wasm::ADD_HEADER, "warm-a", dir.path()),
        variant(wasm::ADD_HEADER, "warm-b", dir.path()),
    ];
    let mut gateway = GatewayBuilder::new(plugins_on_one_route(&bank, &modules, "w"))
        .start()
        .await;
    assert_eq!(
        gateway.log().matches(COMPILED).count(),
        2,
        "{}",
        gateway.log()
    );
    assert_eq!(artifacts(&gateway).len(), 2);
    stop(&mut gateway).await;
    gateway.restart().await;
    let log = gateway.log();
    assert_eq!(log.matches(COMPILED).count(), 0, "{log}");
    assert_eq!(log.matches(FROM_CACHE).count(), 2, "{log}");
    let answer = client()
        .get(gateway.url("/tagged/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-p1"], "w");
}

#[tokio::test]
async fn a_corrupted_or_torn_artifact_is_compiled_again_and_the_gateway_serves() {
    // Proves a damaged artifact is never loaded: one with a flipped byte and one cut short are
    // both refused (their checksum or header), compiled again and rewritten, and the gateway
    // serves with the plugins working; the next start loads the rewritten artifacts.
    let bank = Bank::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let modules = [
        variant(wasm::ADD_HEADER, "damage-a", dir.path()),
        variant(wasm::ADD_HEADER, "damage-b", dir.path()),
    ];
    let mut gateway = GatewayBuilder::new(plugins_on_one_route(&bank, &modules, "d"))
        .start()
        .await;
    let written = artifacts(&gateway);
    assert_eq!(written.len(), 2);
    stop(&mut gateway).await;
    let mut flipped = std::fs::read(&written[0]).unwrap();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x5a;
    std::fs::write(&written[0], &flipped).unwrap();
    let torn = std::fs::read(&written[1]).unwrap();
    std::fs::write(&written[1], &torn[..torn.len() / 3]).unwrap();
    gateway.restart().await;
    let log = gateway.log();
    assert_eq!(log.matches(UNUSABLE).count(), 2, "{log}");
    assert_eq!(log.matches(COMPILED).count(), 2, "{log}");
    let answer = client()
        .get(gateway.url("/tagged/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-p0"], "d");
    assert_eq!(answer.headers()["x-p1"], "d");
    assert_eq!(
        artifacts(&gateway),
        written,
        "rewritten under the same keys"
    );
    stop(&mut gateway).await;
    gateway.restart().await;
    assert_eq!(gateway.log().matches(FROM_CACHE).count(), 2);
}

#[tokio::test]
async fn a_changed_module_gets_an_artifact_of_its_own() {
    // Proves the artifact is keyed by the module's content: a reload that points one plugin at
    // changed bytes compiles that one only, and keeps a new artifact beside the old one.
    let bank = Bank::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let first = [
        variant(wasm::ADD_HEADER, "change-a", dir.path()),
        variant(wasm::ADD_HEADER, "change-b", dir.path()),
    ];
    let gateway = GatewayBuilder::new(plugins_on_one_route(&bank, &first, "1"))
        .start()
        .await;
    let before = artifacts(&gateway);
    assert_eq!(before.len(), 2);
    let changed = [
        first[0].clone(),
        variant(wasm::ADD_HEADER, "change-c", dir.path()),
    ];
    gateway.write_config(&plugins_on_one_route(&bank, &changed, "2"));
    let (status, body) = gateway.reload().await;
    assert_eq!(status, 200, "{body}");
    let log = gateway.log();
    assert_eq!(log.matches(COMPILED).count(), 2 + 1, "{log}");
    assert_eq!(log.matches(FROM_CACHE).count(), 1, "{log}");
    let after = artifacts(&gateway);
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(before.iter().all(|path| after.contains(path)));
}

#[tokio::test]
async fn a_reload_of_ten_changed_plugins_under_steady_load_drops_no_request() {
    // Proves a reload that compiles ten new modules does not disturb traffic: under steady load
    // from eight clients, every request before, during and after the reload is answered 200
    // with every plugin's header, the new version takes over, and a reload back to the first
    // modules loads them from the cache.
    let bank = Bank::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let first = generation(dir.path(), "g1");
    let gateway = GatewayBuilder::new(plugins_on_one_route(&bank, &first, "g1"))
        .start()
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (url, stop) = (gateway.url("/tagged/echo"), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                let http = client();
                while !stop.load(Ordering::Relaxed) {
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 && r.headers().contains_key("x-p9") => ok += 1,
                        Ok(r) => failed.push(r.status().to_string()),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    wait_until(Duration::from_secs(10), "the load to run", || async {
        bank.hits("/echo").await >= 50
    })
    .await;
    gateway.write_config(&plugins_on_one_route(
        &bank,
        &generation(dir.path(), "g2"),
        "g2",
    ));
    let (status, body) = gateway.reload().await;
    assert_eq!(status, 200, "{body}");
    wait_until(Duration::from_secs(10), "the new plugins to answer", || {
        tagged_by_all(&gateway, "g2")
    })
    .await;
    gateway.write_config(&plugins_on_one_route(&bank, &first, "g1"));
    let (status, body) = gateway.reload().await;
    assert_eq!(status, 200, "{body}");
    wait_until(
        Duration::from_secs(10),
        "the first plugins to answer again",
        || tagged_by_all(&gateway, "g1"),
    )
    .await;
    let hits = bank.hits("/echo").await;
    wait_until(
        Duration::from_secs(10),
        "more load after the reloads",
        || async { bank.hits("/echo").await >= hits + 50 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for client in load {
        let (o, f) = client.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok >= 100, "{ok} requests");
    let log = gateway.log();
    assert_eq!(
        log.matches(COMPILED).count(),
        20,
        "ten at start, ten at the first reload"
    );
    assert_eq!(
        log.matches(FROM_CACHE).count(),
        10,
        "the reload back compiles nothing"
    );
}

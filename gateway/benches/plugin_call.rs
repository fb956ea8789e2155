//! The cost of plugin hook calls, in process:
//!
//! - `hook_call/reused`: one `on-request` call on a pooled instance, through a route of that
//!   one plugin (the gateway's path: the request lent as a handle, read by nothing);
//! - `hook_call/runtime`: the same call with only what wasmtime needs (an instance, its budget
//!   and epoch deadline, the request lent and taken back): the runtime's share of
//!   `hook_call/reused`;
//! - `hook_call/fresh`: a new instance plus the call (the alternative it was measured against);
//! - `chain/three_noops`: `on-request` and `on-response` through a route of three no-op plugins,
//!   the per-request plugin work of the pipeline;
//! - `chain/rate_limit_add_header`: the same through the shipped `rate_limit` and `add_header`,
//!   the work `bench/plugins.sh` compares with Envoy's proxy-wasm filter (`add_header` declares
//!   its edits reusable, so after the first request only `rate_limit` is called);
//! - `chain/rate_limit_add_header_calls`: the same with `reuse_decisions = false` on
//!   `add_header`, so that every hook is called;
//! - `.../two_workers`: each chain on two workers at once (threads with their own runtimes), the
//!   time per request on one of them: what running both at once costs, in what the workers share
//!   (the store's keys, the call metrics) and in what the machine's cores share.
//!
//! The runtime is entered once per batch of calls, as in the gateway, where every call runs on a
//! worker that is already inside it; entering it per call would add its own cost to each one.
//!
//! Run: `cargo bench -p txgate --bench plugin_call`. It builds the components first.

use std::future::Future;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Response};
use http_body_util::Full;
use txgate::metrics::Metrics;
use txgate::plugin::{Chain, PluginEnv, PluginSet, RequestFacts, RequestScope, Runtime};
use txgate::store::{Embedded, EmbeddedLimits, Quota, Store};

/// Builds the components the benches load; returns their directory.
fn components() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(["-p", "txgate-test-noop", "-p", "txgate-plugin-rate-limit"])
        .args([
            "-p",
            "txgate-plugin-add-header",
            "--target-dir",
            "target/wasm",
        ])
        .status()
        .expect("cargo");
    assert!(status.success(), "building the components failed");
    root.join("target/wasm/wasm32-wasip2/release")
}

fn load(dir: &tempfile::TempDir, store: Arc<dyn Store>) -> PluginSet {
    let modules = components();
    let module = |name: &str| format!("{:?}", modules.join(name).display().to_string());
    let mut text = String::new();
    for name in ["a", "b", "c"] {
        text.push_str(&format!(
            "[plugins.{name}]\nmodule = {}\n",
            module("txgate_test_noop.wasm")
        ));
    }
    // The same work as `bench/plugins.sh`'s `work` route, with limits it never reaches.
    text.push_str(&format!(
        "[plugins.rate_limit]\nmodule = {}\nstate = \"volatile\"\n\
         [plugins.rate_limit.config]\nkey = \"route\"\nper_second = 1000000000\nburst = 1000000000\n\
         [plugins.add_header]\nmodule = {}\n\
         [plugins.add_header.config]\nname = \"x-served-by\"\nvalue = \"txgate\"\n\
         [plugins.add_header_calls]\nmodule = {}\nreuse_decisions = false\n\
         [plugins.add_header_calls.config]\nname = \"x-served-by\"\nvalue = \"txgate\"\n",
        module("txgate_plugin_rate_limit.wasm"),
        module("txgate_plugin_add_header.wasm"),
        module("txgate_plugin_add_header.wasm"),
    ));
    text.push_str("[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n");
    text.push_str("[[routes]]\nname = \"three\"\npath = \"/\"\nupstream = \"u\"\nplugins = [\"a\", \"b\", \"c\"]\n");
    text.push_str("[[routes]]\nname = \"work\"\npath = \"/work\"\nupstream = \"u\"\nplugins = [\"rate_limit\", \"add_header\"]\n");
    text.push_str("[[routes]]\nname = \"work_calls\"\npath = \"/work-calls\"\nupstream = \"u\"\nplugins = [\"rate_limit\", \"add_header_calls\"]\n");
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, text).unwrap();
    let config = txgate::config::load(&path).unwrap();
    let metrics = Arc::new(Metrics::new());
    let env = PluginEnv {
        runtime: Runtime::new().unwrap(),
        store,
        metrics: metrics.clone(),
        boot_id: Arc::from("bench"),
        audit: Arc::new(txgate::audit::AuditLog::open(None, "bench", metrics).unwrap()),
    };
    PluginSet::build(&config, &env).unwrap()
}

fn request() -> Arc<RequestFacts> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-request-id", HeaderValue::from_static("bench-1"));
    Arc::new(RequestFacts {
        route: Arc::new("three".to_string()),
        method: Method::POST,
        path: "/transfers".into(),
        headers,
        body: Bytes::from_static(br#"{"from":"alice","to":"bob","amount":10}"#),
        client_ip: "127.0.0.1".parse().unwrap(),
        request_id: HeaderValue::from_static("bench-1"),
        id_from_client: true,
        saga_route: false,
        client_key: None,
        received: Instant::now(),
    })
}

/// Times `iterations` runs of `call`, inside one entry into the runtime.
fn in_runtime<F: Future>(
    runtime: &tokio::runtime::Runtime,
    iterations: u64,
    mut call: impl FnMut() -> F,
) -> Duration {
    runtime.block_on(async {
        let started = Instant::now();
        for _ in 0..iterations {
            black_box(call().await);
        }
        started.elapsed()
    })
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Instances are pooled per worker: two, as on the bench machine's gateway.
    txgate::worker::set_count(2);
    let dir = tempfile::tempdir().unwrap();
    let limits = EmbeddedLimits {
        cache_entries_max: 1000,
        sagas: Quota::UNLIMITED,
        retention_ms: 0,
    };
    let store: Arc<dyn Store> =
        Arc::new(Embedded::open(&dir.path().join("store"), limits, None).unwrap());
    let set = load(&dir, store.clone());
    let chain_plugins = set.chain("three").unwrap().clone();
    let plugin = chain_plugins[0].clone();
    let one = Chain::new(Arc::from(vec![plugin.clone()]), 1 << 20);
    let scope = RequestScope::new();
    let call_with = |input: Arc<RequestFacts>| {
        let one = &one;
        let scope = &scope;
        async move {
            let mut seen = input;
            one.on_request(&mut seen, scope).await.unwrap()
        }
    };
    let input = request();
    let call = || call_with(input.clone());
    let mut group = c.benchmark_group("hook_call");
    group.bench_function("reused", |b| {
        b.iter_custom(|iterations| in_runtime(&runtime, iterations, call))
    });
    // Every call must return: a call cut by its deadline would be timed as a cheap one.
    let unmanaged = || async { assert!(plugin.call_on_request_unmanaged(&input).await) };
    group.bench_function("runtime", |b| {
        b.iter_custom(|iterations| in_runtime(&runtime, iterations, unmanaged))
    });
    let empty = Arc::new(RequestFacts {
        headers: HeaderMap::new(),
        body: Bytes::new(),
        ..(*request()).clone()
    });
    group.bench_function("reused_empty", |b| {
        b.iter_custom(|iterations| in_runtime(&runtime, iterations, || call_with(empty.clone())))
    });
    group.bench_function("fresh", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                plugin.discard_idle();
                let started = Instant::now();
                runtime.block_on(call());
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
    for (name, route) in [
        ("chain/three_noops", "three"),
        ("chain/rate_limit_add_header", "work"),
        ("chain/rate_limit_add_header_calls", "work_calls"),
    ] {
        let chain = Chain::new(set.chain(route).unwrap().clone(), 1 << 20);
        c.bench_function(name, |b| {
            b.iter_custom(|iterations| in_runtime(&runtime, iterations, || through(&chain)))
        });
        c.bench_function(&format!("{name}/two_workers"), |b| {
            b.iter_custom(|iterations| on_two_workers(&chain, iterations))
        });
    }
}

/// One request through `chain`: `on-request`, then `on-response` on a small answer.
async fn through(chain: &Chain) -> Response<Full<Bytes>> {
    let scope = RequestScope::new();
    let mut seen = request();
    chain.on_request(&mut seen, &scope).await.unwrap();
    let response = Response::new(Full::new(Bytes::from_static(b"{}")));
    chain
        .on_response(chain.len(), &seen, response, &scope)
        .await
        .unwrap()
}

/// Times `iterations` requests through `chain` on each of two workers at once, each a thread
/// with its own runtime, as the gateway's are: the time per request on one worker while the
/// other works too.
fn on_two_workers(chain: &Chain, iterations: u64) -> Duration {
    std::thread::scope(|threads| {
        let runs: Vec<_> = (0..2)
            .map(|index| {
                threads.spawn(move || {
                    txgate::worker::set_index(index);
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    in_runtime(&runtime, iterations, || through(chain))
                })
            })
            .collect();
        let took = runs.into_iter().map(|run| run.join().unwrap());
        took.max().unwrap_or_default()
    })
}

criterion_group!(plugin_call, benches);
criterion_main!(plugin_call);

//! The mask plugin, built twice — from Rust (`plugins/mask`) and from Python with
//! componentize-py (`plugins/mask-py`) — and put through one behaviour suite in real gateways,
//! in front of a real document server and real banks: each case below runs against each build,
//! with the same plugin config and the same expected bytes.
//!
//! Each build gets one gateway for the whole suite, its cases run in turn: compiling the
//! CPython component takes the gateway half a minute, so a gateway per case would cost minutes
//! and crowd the machine. The suite prints each case's name before it runs it.

mod upstream;
mod wire;

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::sagas::transfer;
use crate::support::{Bank, Gateway, GatewayBuilder, client};
use crate::wasm;
use upstream::{Document, Documents};
use wire::Connection;

/// A build of the plugin.
#[derive(Debug, Clone, Copy)]
enum Build {
    Rust,
    Python,
}

impl Build {
    /// The component.
    fn module(self) -> &'static str {
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
    fn limits(self) -> &'static str {
        match self {
            Self::Rust => "",
            Self::Python => "timeout_ms = 1000\nmemory_limit_bytes = 33554432",
        }
    }
}

/// The masked fields of an account, laid out as no serializer would: spacing, `1.50`, a
/// 30-digit number and escapes must all come back as they were.
const ACCOUNT: &str = r#"{
  "owner": {"name": "Alice", "email": "alice@example.com", "phone": "+49 151 12345678"},
  "iban": "DE89370400440532013000",
  "pin": 1234,
  "number": 4111111111111111,
  "cards": [{"pan": "4111111111111111", "cvv": "123"}, {"pan": "5500000000000004", "cvv": "456"}],
  "limit": 1.50,
  "id": 123456789012345678901234567890,
  "motto": "caf\u00e9 \"quoted\"",
  "active": true
}"#;

const ACCOUNT_MASKED: &str = r#"{
  "owner": {"name": "Alice", "email": "a***@example.com", "phone": "+** *** ******78"},
  "iban": "******************3000",
  "pin": "[redacted]",
  "number": "**************11",
  "cards": [{"pan": "************1111", "cvv": "[redacted]"}, {"pan": "5500000000000004", "cvv": "[redacted]"}],
  "limit": 1.50,
  "id": 123456789012345678901234567890,
  "motto": "caf\u00e9 \"quoted\"",
  "active": true
}"#;

/// Wildcards over members and elements, and secrets at every depth.
const LEDGER: &str = r#"{"accounts": {"a1": {"holder": "Alice", "secret": "s1", "history": [{"secret": "s2", "amount": 5}]}, "a2": {"holder": "Bob", "nested": {"deeper": {"secret": {"pin": 1}}}}}, "secret": "top", "items": [10, 20, 30]}"#;

const LEDGER_MASKED: &str = r#"{"accounts": {"a1": {"holder": "****e", "secret": "[redacted]", "history": [{"secret": "[redacted]", "amount": 5}]}, "a2": {"holder": "**b", "nested": {"deeper": {"secret": "[redacted]"}}}}, "secret": "[redacted]", "items": [10, "*0", 30]}"#;

/// A valid card number, an invalid one, and a card number as a JSON number.
const NOTES: &str = r#"{"note": "paid with 4111111111111111 on 2024-01-01", "ref": "order 4111111111111112", "card": 4111111111111111}"#;

const NOTES_SCANNED: &str = r#"{"note": "paid with ************1111 on 2024-01-01", "ref": "order 4111111111111112", "card": 4111111111111111}"#;

const TEXT: &str = "pan=4111111111111111";

/// The plugins and routes; `@MODULE@` and `@LIMITS@` are the build's.
const PLUGINS: &str = r#"
[plugins.mask_doc]
module = "@MODULE@"
@LIMITS@
[plugins.mask_doc.config]
rules = [
  { path = "$.owner.email", mask = "email" },
  { path = "$.owner.phone", mask = "phone" },
  { path = "$.iban", mask = "keep_last" },
  { path = "$.pin", mask = "redact" },
  { path = "$.number", mask = "keep_last", keep = 2 },
  { path = "$.cards[*].cvv", mask = "redact" },
  { path = "$.cards[0].pan", mask = "keep_last" },
  { path = "$.accounts[*].holder", mask = "keep_last", keep = 1 },
  { path = "$..secret", mask = "redact" },
  { path = "$.items[1]", mask = "keep_last", keep = 1 },
]

[plugins.mask_luhn]
module = "@MODULE@"
@LIMITS@
[plugins.mask_luhn.config]
luhn_scan = true

[plugins.mask_reject]
module = "@MODULE@"
@LIMITS@
[plugins.mask_reject.config]
rules = [{ path = "$..pan", mask = "keep_last" }]
non_json = "reject"

[plugins.mask_saga]
module = "@MODULE@"
@LIMITS@
[plugins.mask_saga.config]
rules = [
  { path = "$.steps[*].body.account", mask = "keep_last", keep = 2 },
  { path = "$..balance", mask = "redact" },
]
"#;

/// The same plugin with a bad second rule, added by a reload.
const BAD_PLUGIN: &str = r#"
[plugins.mask_bad]
module = "@MODULE@"
@LIMITS@
[plugins.mask_bad.config]
rules = [{ path = "$.pin", mask = "redact" }, { path = "$.cards[", mask = "redact" }]
"#;

fn routes(documents: &Documents, a: &Bank, b: &Bank) -> String {
    let documents = documents.base();
    let (a, b) = (a.base(), b.base());
    let proxied = ["doc", "luhn", "reject"]
        .iter()
        .map(|name| {
            format!(
                "[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}/\"\nstrip_prefix = true\n\
                 upstream = \"documents\"\nplugins = [\"mask_{name}\"]\n"
            )
        })
        .collect::<String>();
    format!(
        r#"
[upstreams.documents]
url = "{documents}"

[upstreams.bank_a]
url = "{a}"

[upstreams.bank_b]
url = "{b}"

{proxied}
[[routes]]
name = "transfers"
methods = ["POST"]
path = "/transfers"
plugins = ["mask_saga"]
[routes.saga]
mode = "saga"
[[routes.saga.steps]]
name = "debit"
upstream = "bank_a"
action = "POST /debit"
compensate = "POST /debit/compensate"
[[routes.saga.steps]]
name = "credit"
upstream = "bank_b"
action = "POST /credit"
compensate = "POST /credit/compensate"
"#
    )
}

fn plugins(template: &str, build: Build) -> String {
    template
        .replace("@MODULE@", build.module())
        .replace("@LIMITS@", build.limits())
}

/// Everything one build's suite runs against.
struct World {
    build: Build,
    gateway: Gateway,
    a: Bank,
    b: Bank,
    routes: String,
    _documents: Documents,
}

impl World {
    async fn start(build: Build) -> Self {
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
    async fn get(&self, path: &str, request_id: &str) -> reqwest::Response {
        client()
            .get(self.gateway.url(path))
            .header("x-request-id", request_id)
            .send()
            .await
            .unwrap()
    }

    async fn text(&self, path: &str) -> (u16, String) {
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

/// Runs each case against `world`, naming it first so a failure says which case it was.
macro_rules! cases {
    ($world:expr, $($case:ident),+ $(,)?) => {
        $(
            eprintln!("mask suite, {:?} build: {}", $world.build, stringify!($case));
            $case(&$world).await;
        )+
    };
}

async fn suite(build: Build) {
    let world = World::start(build).await;
    cases!(
        world,
        every_masker_changes_only_its_values,
        wildcards_and_recursive_descent_reach_every_depth,
        luhn_scan_masks_valid_card_numbers_only_when_on,
        a_body_that_is_not_json_passes_or_gets_502,
        a_saga_answer_is_masked_and_the_books_are_untouched,
        content_length_is_the_masked_length_and_keep_alive_holds,
        a_bad_rule_is_refused_naming_it_and_the_running_config_stays,
    );
}

#[tokio::test]
async fn the_rust_build_passes_the_suite() {
    suite(Build::Rust).await;
}

#[tokio::test]
async fn the_python_build_passes_the_suite() {
    suite(Build::Python).await;
}

async fn every_masker_changes_only_its_values(world: &World) {
    // Proves keep_last, email, phone and redact, a number masked by keep_last becoming a
    // string, [*] and [n], and that every byte not masked comes back as the upstream sent it
    // (same bytes from both builds), with the status and headers kept.
    let response = world.get("/doc/account", "mask-account").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-document"], "/account");
    let body = response.text().await.unwrap();
    assert_eq!(body, ACCOUNT_MASKED);
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert!(parsed["number"].is_string(), "a masked number is a string");
    assert_eq!(parsed["limit"], json!(1.5));
}

async fn wildcards_and_recursive_descent_reach_every_depth(world: &World) {
    // Proves [*] over an object's members, ..name at every depth (an object value redacted
    // whole), and [n] on an array.
    assert_eq!(
        world.text("/doc/ledger").await,
        (200, LEDGER_MASKED.to_string())
    );
}

async fn luhn_scan_masks_valid_card_numbers_only_when_on(world: &World) {
    // Proves the scan masks a Luhn-valid number inside a string and leaves an invalid one and
    // a JSON number; off, nothing changes.
    assert_eq!(
        world.text("/luhn/notes").await,
        (200, NOTES_SCANNED.to_string())
    );
    assert_eq!(world.text("/doc/notes").await, (200, NOTES.to_string()));
}

async fn a_body_that_is_not_json_passes_or_gets_502(world: &World) {
    // Proves a text body passes unchanged by default, and with non_json = "reject" becomes a
    // 502 problem+json, the same bytes from both builds; JSON on that route is still masked.
    let passed = world.get("/doc/text", "mask-text").await;
    assert_eq!(passed.status(), 200);
    assert_eq!(passed.headers()["content-type"], "text/plain");
    assert_eq!(passed.text().await.unwrap(), TEXT);
    let refused = world.get("/reject/text", "mask-reject-1").await;
    assert_eq!(refused.status(), 502);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        refused.text().await.unwrap(),
        r#"{"detail":"the upstream's answer is not JSON, and this route passes only masked JSON","request_id":"mask-reject-1","status":502,"title":"Bad gateway","type":"urn:txgate:problem:response-not-json"}"#
    );
    let json: Value = world
        .get("/reject/account", "mask-reject-2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["cards"][1]["pan"], "************0004");
}

async fn a_saga_answer_is_masked_and_the_books_are_untouched(world: &World) {
    // Proves on-response masks the saga's own answer (each step's upstream body), while the
    // saga completes and the banks hold exactly the transfer: masking is the client's view only.
    let id = format!("mask-saga-{:?}", world.build);
    let (status, answer) = transfer(&world.gateway, "/transfers", &id, "alice", "carol", 10).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "completed");
    assert!(answer["saga_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(answer["steps"][0]["body"]["account"], "***ce");
    assert_eq!(answer["steps"][0]["body"]["applied"], -10);
    assert_eq!(answer["steps"][0]["body"]["balance"], "[redacted]");
    assert_eq!(answer["steps"][1]["body"]["account"], "***ol");
    assert_eq!(answer["steps"][1]["body"]["balance"], "[redacted]");
    assert_eq!(world.a.balance("alice").await, 990);
    assert_eq!(world.b.balance("carol").await, 1010);
    assert_eq!(world.a.hits("/debit").await, 1);
    // A retry gets the same saga's answer, masked the same way; nothing runs again.
    let (again_status, again) =
        transfer(&world.gateway, "/transfers", &id, "alice", "carol", 10).await;
    assert_eq!((again_status, &again), (200, &answer));
    assert_eq!(world.a.hits("/debit").await, 1);
}

async fn content_length_is_the_masked_length_and_keep_alive_holds(world: &World) {
    // Proves the client's Content-Length is the masked body's length on a plain route and on a
    // saga route, and that the connection carries the next request after each.
    let mut connection = Connection::open(world.gateway.port).await;
    let plain = connection
        .send(
            "GET",
            "/doc/account",
            &[("x-request-id", "mask-wire-1")],
            "",
        )
        .await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.text(), ACCOUNT_MASKED);
    assert_eq!(
        plain.header("content-length"),
        Some(ACCOUNT_MASKED.len().to_string().as_str())
    );
    let transfer = r#"{"from":"alice","to":"carol","amount":1}"#;
    let id = format!("mask-wire-saga-{:?}", world.build);
    let saga = connection
        .send(
            "POST",
            "/transfers",
            &[("x-request-id", &id), ("content-type", "application/json")],
            transfer,
        )
        .await;
    assert_eq!(saga.status, 200, "{}", saga.text());
    let answer: Value = serde_json::from_slice(&saga.body).unwrap();
    assert_eq!(answer["steps"][1]["body"]["account"], "***ol");
    let after = connection
        .send("GET", "/luhn/notes", &[("x-request-id", "mask-wire-2")], "")
        .await;
    assert_eq!((after.status, after.text()), (200, NOTES_SCANNED));
}

async fn a_bad_rule_is_refused_naming_it_and_the_running_config_stays(world: &World) {
    // Proves a config whose rule has a bad path is refused when the plugin loads (a reload
    // here), the plugin's log naming the rule, and the running config keeps masking.
    let bad = format!(
        "{}{}{}",
        plugins(PLUGINS, world.build),
        plugins(BAD_PLUGIN, world.build),
        world.routes
    );
    world.gateway.write_config(&bad);
    let reply = world
        .gateway
        .admin(reqwest::Method::POST, "/admin/reload")
        .timeout(Duration::from_secs(180))
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let detail = reply.text().await.unwrap();
    assert_ne!(status, 200, "{detail}");
    assert!(detail.contains("plugins.mask_bad"), "{detail}");
    let log = world.gateway.log();
    assert!(
        log.contains("mask: plugin config: rules[1].path: `[` at character 7 is never closed"),
        "the plugin's reason is not in the log:\n{log}"
    );
    assert_eq!(
        world.text("/doc/account").await,
        (200, ACCOUNT_MASKED.to_string())
    );
}

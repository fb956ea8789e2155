//! The audit stream (SPEC §5) and the shipped audit plugin (SPEC §5.1), in a real gateway
//! writing a real audit file: one line per request, the gateway's own tags (request id, route,
//! client, saga, time) beside the plugin's fields, behind a real `jwt_auth`, and a plugin that
//! tries to forge those tags.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::{Bank, Gateway, GatewayBuilder, client, wait_until};
use crate::wasm;

/// The audit plugin's config in most tests: the claim `jwt_auth` passes on, and two extras.
const AUDIT_CONFIG: &str = r#"claims = { sub = "X-User-ID" }
fields = { amount = "$.amount", tenant = "header:X-Tenant" }"#;

/// A gateway whose routes run `jwt_auth` then `audit`, and whose audit stream is a file.
struct Audited {
    _a: Bank,
    _b: Bank,
    gateway: Gateway,
    /// Holds the audit file.
    dir: tempfile::TempDir,
}

impl Audited {
    async fn start() -> Self {
        let (a, b, dir, builder) = Self::build(AUDIT_CONFIG).await;
        let gateway = builder.start().await;
        Self {
            _a: a,
            _b: b,
            gateway,
            dir,
        }
    }

    /// Banks, the audit file's directory, and a gateway config with `audit_config`.
    async fn build(audit_config: &str) -> (Bank, Bank, tempfile::TempDir, GatewayBuilder) {
        let a = Bank::start(&["alice=1000"]).await;
        let b = Bank::start(&["carol=1000"]).await;
        let dir = tempfile::tempdir().unwrap();
        let body = config(&a, &b, &dir.path().join("audit.log"), audit_config);
        let builder = GatewayBuilder::new(body).server("request_timeout_ms = 5000");
        (a, b, dir, builder)
    }

    /// Every line of the audit file so far, parsed.
    fn lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// The lines, once there are at least `count` of them.
    async fn wait_lines(&self, count: usize) -> Vec<Value> {
        let what = format!("{count} audit lines");
        wait_until(Duration::from_secs(10), &what, || async {
            self.lines().len() >= count
        })
        .await;
        self.lines()
    }
}

fn config(a: &Bank, b: &Bank, audit_file: &Path, audit_config: &str) -> String {
    let jwks = std::fs::read_to_string(fixture("jwks.json")).unwrap();
    format!(
        r#"
[audit]
file = "{audit_file}"

[upstreams.bank_a]
url = "{a}"
timeout_ms = 1000
max_attempts = 2
backoff_base_ms = 1
backoff_max_ms = 10

[upstreams.bank_b]
url = "{b}"
timeout_ms = 1000
max_attempts = 2
backoff_base_ms = 1
backoff_max_ms = 10

[plugins.jwt_auth]
module = "{jwt_auth}"
[plugins.jwt_auth.config]
jwks = '''{jwks}'''
claims_to_headers = {{ sub = "X-User-ID" }}

[plugins.audit]
module = "{audit}"
[plugins.audit.config]
{audit_config}

[plugins.audit_forger]
module = "{forger}"

[[routes]]
name = "transfers"
methods = ["POST"]
path = "/transfers"
plugins = ["jwt_auth", "audit"]
[routes.saga]
mode = "saga"
client_key = "header:x-user-id"
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

[[routes]]
name = "api"
path_prefix = "/api/"
strip_prefix = true
upstream = "bank_a"
plugins = ["jwt_auth", "audit"]

[[routes]]
name = "forger"
path_prefix = "/forger/"
strip_prefix = true
upstream = "bank_a"
plugins = ["audit_forger"]
"#,
        audit_file = audit_file.display(),
        a = a.base(),
        b = b.base(),
        jwt_auth = wasm::JWT_AUTH,
        audit = wasm::AUDIT,
        forger = wasm::AUDIT_FORGER,
    )
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/jwt")
        .join(name)
}

/// A bearer token for `sub`, signed with the fixture key `rsa-1`, valid for ten minutes.
fn token(sub: &str) -> String {
    let pem = std::fs::read(fixture("rsa.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(&header, &json!({"sub": sub, "exp": exp}), &key).unwrap()
}

/// The one line about `request_id`; fails if there are none or several.
fn line_of<'a>(lines: &'a [Value], request_id: &str) -> &'a Value {
    let found: Vec<&Value> = lines
        .iter()
        .filter(|line| line["request_id"] == request_id)
        .collect();
    assert_eq!(found.len(), 1, "one line for {request_id}: {lines:#?}");
    found[0]
}

/// The gateway's tags that do not depend on the request: who wrote the line, and when.
fn assert_written_by_the_gateway(line: &Value, plugin: &str, event: &str) {
    assert_eq!(line["plugin"], plugin, "{line}");
    assert_eq!(line["event"], event, "{line}");
    let gateway = line["gateway"].as_str().unwrap_or_default();
    assert!(!gateway.is_empty() && gateway != "forged", "{line}");
    let ts = line["ts"].as_str().unwrap_or_default();
    let ts = OffsetDateTime::parse(ts, &Rfc3339).unwrap_or_else(|e| panic!("ts: {e}: {line}"));
    let age = OffsetDateTime::now_utc() - ts;
    assert!(age.whole_seconds().abs() < 300, "ts is now-ish: {line}");
}

#[tokio::test]
async fn each_request_gets_one_line_with_the_gateways_tags_and_the_plugins_fields() {
    // Proves, for a plain request (with and without a client X-Request-ID) and a saga request:
    // exactly one line each, the gateway's tags (request id, route, client, saga id) are the
    // real ones, the plugin's fields carry status, method, claims, extras and the saga's
    // outcome, and the metric counts the lines.
    let audited = Audited::start().await;
    let gateway = &audited.gateway;
    let plain = client()
        .post(gateway.url("/api/echo?status=201"))
        .header("x-request-id", "audit-plain-1")
        .bearer_auth(token("alice"))
        .header("x-user-id", "mallory")
        .header("x-tenant", "acme")
        .json(&json!({"amount": 7, "memo": "rent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 201);
    let generated = client()
        .get(gateway.url("/api/echo"))
        .bearer_auth(token("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(generated.status(), 200);
    let generated_id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let saga = client()
        .post(gateway.url("/transfers"))
        .header("x-request-id", "audit-saga-1")
        .bearer_auth(token("alice"))
        .header("x-tenant", "acme")
        .json(&json!({"from": "alice", "to": "carol", "amount": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(saga.status(), 200);
    assert_eq!(saga.headers()["x-request-id"], "audit-saga-1");
    let answer: Value = saga.json().await.unwrap();
    assert_eq!(answer["status"], "completed", "{answer}");
    let saga_id = answer["saga_id"].as_str().unwrap().to_string();

    let lines = audited.wait_lines(3).await;
    for line in &lines {
        assert_written_by_the_gateway(line, "audit", "request");
        let fields = &line["fields"];
        for tag in ["route", "client", "saga_id"] {
            assert_eq!(fields[tag], line[tag], "the plugin's copy of {tag}: {line}");
        }
        assert!(fields["latency_ms"].is_u64(), "{line}");
    }

    let plain = line_of(&lines, "audit-plain-1");
    assert_eq!(plain["route"], "api");
    assert_eq!(
        plain["client"],
        Value::Null,
        "a plain route has no client key"
    );
    assert_eq!(plain["saga_id"], Value::Null);
    let fields = &plain["fields"];
    assert_eq!(fields["method"], "POST");
    assert_eq!(fields["status"], 201);
    assert_eq!(fields["outcome"], Value::Null);
    assert_eq!(
        fields["claims"],
        json!({"sub": "alice"}),
        "jwt_auth's, not the client's copy"
    );
    assert_eq!(fields["amount"], 7);
    assert_eq!(fields["tenant"], "acme");

    let generated = line_of(&lines, &generated_id);
    assert_eq!(generated["fields"]["method"], "GET");
    assert_eq!(generated["fields"]["claims"], json!({"sub": "bob"}));
    assert_eq!(generated["fields"]["amount"], Value::Null, "no body");
    assert_eq!(generated["fields"]["tenant"], Value::Null, "no header");

    let saga = line_of(&lines, "audit-saga-1");
    assert_eq!(saga["route"], "transfers");
    assert_eq!(
        saga["client"], "alice",
        "the route's client_key, from jwt_auth's header"
    );
    assert_eq!(saga["saga_id"], saga_id.as_str());
    let fields = &saga["fields"];
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["outcome"], "completed");
    assert_eq!(fields["amount"], 10);

    let series = r#"txgate_audit_events_total{plugin="audit",event="request"}"#;
    assert_eq!(
        gateway.metric(series).await,
        3.0,
        "{}",
        gateway.metrics().await
    );
    assert_eq!(audited.lines().len(), 3, "one line per request, no more");
}

#[tokio::test]
async fn a_plugin_cannot_forge_the_gateways_tags_nor_write_a_bad_event() {
    // Proves the tags outside `fields` come from the gateway whatever a plugin puts in its
    // fields, and that an invalid event name or non-object fields are refused, unwritten and
    // uncounted.
    let audited = Audited::start().await;
    let gateway = &audited.gateway;
    let response = client()
        .get(gateway.url("/forger/echo"))
        .header("x-request-id", "audit-forge-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
    assert_eq!(header("x-audit-invalid-name"), "invalid audit event name");
    let not_object = header("x-audit-not-object");
    assert!(
        not_object.starts_with("audit fields are not a JSON object"),
        "{not_object}"
    );

    let lines = audited.wait_lines(1).await;
    let line = line_of(&lines, "audit-forge-1");
    assert_written_by_the_gateway(line, "audit_forger", "forged");
    assert_eq!(line["route"], "forger");
    assert_eq!(line["client"], Value::Null);
    assert_eq!(line["saga_id"], Value::Null);
    let forged: serde_json::Map<String, Value> = [
        "ts",
        "gateway",
        "plugin",
        "event",
        "request_id",
        "route",
        "client",
        "saga_id",
    ]
    .into_iter()
    .map(|key| (key.to_string(), json!("forged")))
    .collect();
    assert_eq!(
        line["fields"],
        Value::Object(forged),
        "the plugin's copies stay in fields"
    );

    let metrics = gateway.metrics().await;
    let forged_series = r#"txgate_audit_events_total{plugin="audit_forger",event="forged"}"#;
    assert_eq!(gateway.metric(forged_series).await, 1.0, "{metrics}");
    let refused: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("audit_forger") && l.starts_with("txgate_audit_events_total"))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "refused events are not counted: {refused:?}"
    );
    assert_eq!(audited.lines().len(), 1, "refused events are not written");
}

#[tokio::test]
async fn an_audit_config_mistake_names_its_key_and_the_gateway_refuses_to_start() {
    // Proves a bad field spec never goes live: the gateway exits at start, and its log names
    // the key and the spec.
    let bad = r#"fields = { amount = "body.amount" }"#;
    let (_a, _b, _dir, builder) = Audited::build(bad).await;
    let mut gateway = builder.stopped();
    let (status, log) = gateway.restart_expecting_failure().await;
    assert!(!status.success(), "{log}");
    assert!(log.contains("fields.amount"), "{log}");
    assert!(log.contains("body.amount"), "{log}");
}

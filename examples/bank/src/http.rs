//! The bank's HTTP surface.
//!
//! Business calls (each needs `Idempotency-Key`; saga calls also carry `X-Saga-ID` and
//! `X-Saga-Step`, which key the barrier):
//!
//! | call | effect |
//! |---|---|
//! | `POST /debit`, `POST /credit` | saga action: move money now |
//! | `POST /debit/compensate`, `POST /credit/compensate` | undo the step's action, or a no-op that bars it |
//! | `POST /tcc/{debit,credit}/{try,confirm,cancel}` | TCC reserve, commit, release |
//!
//! The body names the account and amount: `{"account": "alice", "amount": 10}`; or a transfer
//! `{"from": "alice", "to": "bob", "amount": 10}` (debits use `from`, credits use `to`); or
//! `{"legs": {"<step>": {"account": .., "amount": ..}}}`, picked by `X-Saga-Step`.
//!
//! Orders (transactional messages' local transaction and back-check, `orders.rs`):
//! `POST /orders/{id}/commit[?hold_ms=N]` and `POST /orders/check`.
//!
//! Management: `GET /accounts`, `GET|PUT /accounts/{id}`, `GET /ledger` (barrier records),
//! `GET /stats`, `GET /_requests` (the last business requests, with their bodies),
//! `GET|POST|DELETE /_faults`, `GET /healthz`, and `ANY /echo/...` (answers with what it
//! received; `?delay_ms=`, `?status=` and `?bytes=` (padding) shape the answer, and `?text=`
//! answers that word as plain text instead, as a back-check that is not JSON might).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};

use crate::faults::{FaultKind, FaultRule, Faults};
use crate::journal::Journal;
use crate::ledger::{Answer, Direction, Ledger, Operation, Phase};
use crate::orders::{Checked, Orders};

/// Largest request body the bank reads.
const BODY_BYTES_MAX: usize = 64 * 1024;
/// Largest accepted amount, in minor units.
const AMOUNT_MAX: i64 = 1_000_000_000_000;
/// Largest `/echo?bytes=` padding.
const ECHO_PADDING_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Longest `/echo?delay_ms=`.
const ECHO_DELAY_MS_MAX: u64 = 60_000;
/// Business requests kept for `GET /_requests`, newest last.
const REQUEST_LOG_MAX: usize = 4096;
/// Headers kept in the request log (`x-txgate-gateway` names the gateway of a fleet that sent
/// the call).
const LOGGED_HEADERS: [&str; 6] = [
    "idempotency-key",
    "x-saga-id",
    "x-saga-step",
    "x-request-id",
    "x-txgate-gateway",
    "content-type",
];

/// The bank: books, faults, journal and counters.
#[derive(Debug)]
pub struct Bank {
    name: String,
    ledger: Mutex<Ledger>,
    journal: Option<Mutex<Journal>>,
    faults: Mutex<Faults>,
    requests: AtomicU64,
    /// Connections open now (tests watch a gateway's pool close idle ones, and drop abandoned
    /// calls).
    connections: AtomicU64,
    paths: Mutex<BTreeMap<String, u64>>,
    /// The request log, and how many business requests arrived in all (each entry's `seq`).
    log: Mutex<(std::collections::VecDeque<Logged>, u64)>,
    /// Idempotency-Keys whose request is being served: a repeat meanwhile gets 409 "in
    /// progress", as payment APIs answer (the first call may still apply).
    in_progress: Mutex<std::collections::HashSet<String>>,
    /// The orders service beside the bank (transactional messages' local transaction and
    /// back-check).
    orders: Arc<Orders>,
}

/// A key being served; dropped however the request ends.
struct InProgress<'a> {
    bank: &'a Bank,
    key: String,
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.bank.in_progress.lock().unwrap().remove(&self.key);
    }
}

/// A business request as kept for `GET /_requests`: kept raw and turned into JSON only when
/// read, so that the log costs a load test next to nothing.
#[derive(Debug)]
struct Logged {
    seq: u64,
    method: Method,
    path: String,
    headers: Vec<(&'static str, http::HeaderValue)>,
    body: Bytes,
}

impl Logged {
    fn to_json(&self) -> Value {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .iter()
            .filter_map(|(name, value)| Some((*name, value.to_str().ok()?)))
            .collect();
        json!({"seq": self.seq, "method": self.method.as_str(), "path": self.path, "headers": headers, "body": parse_json(&self.body).unwrap_or(Value::Null)})
    }
}

/// The connection is closed without an answer (the `drop` faults).
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injection: connection dropped")
    }
}

impl std::error::Error for DropConnection {}

type Reply = Result<Response<Full<Bytes>>, DropConnection>;

impl Bank {
    /// Opens the books (replaying the journal, if any) and adds the opening accounts.
    pub fn open(
        name: &str,
        data: Option<&Path>,
        keys_max: usize,
        accounts: &[(String, i64)],
    ) -> std::io::Result<Self> {
        let mut ledger = Ledger::new(keys_max);
        // The orders' barrier sits beside the journal (`<journal>.orders.db`), or in a temporary
        // directory without one.
        let orders_db = data.map(|path| path.with_extension("orders.db"));
        let orders = Orders::open(orders_db.as_deref()).map_err(std::io::Error::other)?;
        let mut journal = match data {
            Some(path) => Some(Journal::open(path, &mut ledger)?.0),
            None => None,
        };
        for (id, balance) in accounts {
            if ledger.account(id).is_none() {
                let change = ledger.set_balance(id, *balance);
                if let Some(journal) = &mut journal {
                    journal.append(&change)?;
                }
            }
        }
        Ok(Self {
            name: name.to_string(),
            ledger: Mutex::new(ledger),
            journal: journal.map(Mutex::new),
            faults: Mutex::new(Faults::default()),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            paths: Mutex::new(BTreeMap::new()),
            log: Mutex::new((std::collections::VecDeque::new(), 0)),
            in_progress: Mutex::new(std::collections::HashSet::new()),
            orders: Arc::new(orders),
        })
    }

    /// Marks a business request's key in progress; `None` when a request with it already is.
    fn begin(&self, headers: &HeaderMap) -> Option<Option<InProgress<'_>>> {
        let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
            return Some(None);
        };
        let fresh = self.in_progress.lock().unwrap().insert(key.to_string());
        fresh.then(|| {
            Some(InProgress {
                bank: self,
                key: key.to_string(),
            })
        })
    }

    async fn handle(&self, request: Request<Incoming>) -> Reply {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let path = request.uri().path().to_string();
        let management = is_management(&path);
        if !management {
            let mut paths = self.paths.lock().unwrap();
            match paths.get_mut(&path) {
                Some(count) => *count += 1,
                None => {
                    paths.insert(path.clone(), 1);
                }
            }
        }
        // A status call only reads: it must not hold the key an action is retried with.
        let reads = request.method() == Method::GET && path.ends_with("/status");
        let _in_progress = if management || reads {
            None
        } else {
            match self.begin(request.headers()) {
                Some(guard) => guard,
                None => {
                    return Ok(reply(
                        409,
                        &json!({"error": "in_progress", "detail": "a request with this Idempotency-Key is in progress"}),
                    ));
                }
            }
        };
        let fault = if management {
            None
        } else {
            self.faults.lock().unwrap().pick(&path)
        };
        match fault.as_ref().map(|f| f.kind) {
            Some(FaultKind::FailBefore) => {
                let status = fault.as_ref().map_or(503, |f| f.status);
                return Ok(reply(
                    status,
                    &json!({"error": "injected_fault", "kind": "fail_before"}),
                ));
            }
            Some(FaultKind::Drop) => return Err(DropConnection),
            Some(FaultKind::Ack) => {
                return Ok(reply(200, &json!({"acknowledged": true})));
            }
            Some(FaultKind::Latency) => {
                let ms = fault.as_ref().map_or(0, |f| f.latency_ms);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            _ => {}
        }
        let amount = fault
            .as_ref()
            .filter(|f| f.kind == FaultKind::Amount)
            .map(|f| f.amount);
        let response = self.route(request, &path, amount).await;
        match fault {
            Some(FaultRule {
                kind: FaultKind::FailAfter,
                status,
                ..
            }) => Ok(reply(
                status,
                &json!({"error": "injected_fault", "kind": "fail_after"}),
            )),
            Some(FaultRule {
                kind: FaultKind::DropAfter,
                ..
            }) => Err(DropConnection),
            _ => Ok(response),
        }
    }

    /// Serves one request; `amount` replaces a business call's amount (the `amount` fault).
    async fn route(
        &self,
        request: Request<Incoming>,
        path: &str,
        amount: Option<i64>,
    ) -> Response<Full<Bytes>> {
        let method = request.method().clone();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["healthz"]) => reply(200, &json!({"status": "ok", "bank": self.name})),
            (&Method::GET, ["accounts"]) => self.accounts(),
            (&Method::GET, ["accounts", id]) => self.account(id),
            (&Method::PUT, ["accounts", id]) => self.set_account(id, request).await,
            (&Method::GET, ["ledger"]) => self.audit(),
            (&Method::GET, ["stats"]) => self.stats(),
            (_, ["_faults"]) => self.faults(request).await,
            (&Method::GET, ["_requests"]) => self.request_log(),
            (_, ["echo", ..]) => echo(request).await,
            (&Method::GET, [_, "status"] | ["tcc", _, "status"]) => self.status(request.headers()),
            (&Method::POST, ["orders", "check"]) => self.order_check(request.headers()).await,
            (&Method::POST, ["orders", id, "commit"]) => {
                let hold_ms = query_number(request.uri(), "hold_ms");
                self.order_commit(id, hold_ms).await
            }
            (&Method::POST, [direction]) => {
                self.business(request, direction, "action", amount).await
            }
            (&Method::POST, [direction, "compensate"]) => {
                self.business(request, direction, "compensate", amount)
                    .await
            }
            (&Method::POST, ["tcc", direction, phase]) => {
                self.business(request, direction, phase, amount).await
            }
            _ => reply(
                404,
                &json!({"error": "not_found", "detail": format!("{method} {path}")}),
            ),
        }
    }

    async fn business(
        &self,
        request: Request<Incoming>,
        direction: &str,
        phase: &str,
        amount: Option<i64>,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let bytes = match read_body(body).await {
            Ok(bytes) => bytes,
            Err(detail) => return reply(400, &json!({"error": "bad_body", "detail": detail})),
        };
        let body = match parse_json(&bytes) {
            Ok(body) => body,
            Err(detail) => return reply(400, &json!({"error": "bad_body", "detail": detail})),
        };
        self.remember(&parts, bytes);
        let op = match operation(&parts.headers, &body, direction, phase) {
            Ok(op) => Operation {
                amount: amount.unwrap_or(op.amount),
                ..op
            },
            Err(detail) => return reply(400, &json!({"error": "bad_request", "detail": detail})),
        };
        let answer = self.apply(&op);
        reply(answer.status, &answer.body)
    }

    fn apply(&self, op: &Operation) -> Answer {
        let mut ledger = self.ledger.lock().unwrap();
        let (answer, change) = ledger.apply(op);
        if let Some(Err(error)) = self
            .journal
            .as_ref()
            .map(|j| j.lock().unwrap().append(&change))
        {
            eprintln!("bank {}: journal write failed: {error}", self.name);
            return Answer {
                status: 500,
                body: json!({"error": "journal"}),
            };
        }
        answer
    }

    /// Keeps a business request for `GET /_requests` (tests check what exactly arrived).
    fn remember(&self, parts: &http::request::Parts, body: Bytes) {
        let headers = LOGGED_HEADERS
            .iter()
            .filter_map(|name| Some((*name, parts.headers.get(*name)?.clone())))
            .collect();
        let mut entry = Logged {
            seq: 0,
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            headers,
            body,
        };
        let mut log = self.log.lock().unwrap();
        let (log, seq) = &mut *log;
        *seq += 1;
        entry.seq = *seq;
        if log.len() == REQUEST_LOG_MAX {
            log.pop_front();
        }
        log.push_back(entry);
    }

    /// `GET /{debit,credit}/status` and `GET /tcc/{debit,credit}/status`: what the bank holds
    /// for the step named by `X-Saga-ID` and `X-Saga-Step` (`txgate reconcile` asks).
    fn status(&self, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(saga), Some(step)) = (header("x-saga-id"), header("x-saga-step")) else {
            let detail = "a status call needs X-Saga-ID and X-Saga-Step";
            return reply(400, &json!({"error": "bad_request", "detail": detail}));
        };
        match self
            .ledger
            .lock()
            .unwrap()
            .status(&format!("{saga}/{step}"))
        {
            Some(held) => reply(200, &held),
            None => reply(
                404,
                &json!({"error": "unknown_key", "detail": "this bank holds nothing for that step"}),
            ),
        }
    }

    /// `POST /orders/{id}/commit`: the orders service's local transaction (see `orders.rs`).
    async fn order_commit(&self, id: &str, hold_ms: u64) -> Response<Full<Bytes>> {
        let (orders, order) = (self.orders.clone(), id.to_string());
        match tokio::task::spawn_blocking(move || orders.commit(&order, hold_ms)).await {
            Ok(Ok(true)) => reply(200, &json!({"order": id, "committed": true})),
            Ok(Ok(false)) => reply(
                409,
                &json!({"error": "rolled_back", "detail": "the back-check rolled this order back"}),
            ),
            Ok(Err(error)) => reply(500, &json!({"error": "orders", "detail": error})),
            Err(_) => reply(500, &json!({"error": "orders"})),
        }
    }

    /// `POST /orders/check`: the back-check of the message named by `X-Request-ID`.
    async fn order_check(&self, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) else {
            let detail = "a back-check needs X-Request-ID";
            return reply(400, &json!({"error": "bad_request", "detail": detail}));
        };
        let (orders, order) = (self.orders.clone(), id.to_string());
        match tokio::task::spawn_blocking(move || orders.check(&order)).await {
            Ok(Ok(Checked::Committed)) => reply(200, &json!({"order": id, "outcome": "committed"})),
            Ok(Ok(Checked::RolledBack)) => {
                reply(409, &json!({"order": id, "outcome": "rolled_back"}))
            }
            Ok(Ok(Checked::Running)) => reply(425, &json!({"order": id, "outcome": "running"})),
            Ok(Err(error)) => reply(500, &json!({"error": "orders", "detail": error})),
            Err(_) => reply(500, &json!({"error": "orders"})),
        }
    }

    fn request_log(&self) -> Response<Full<Bytes>> {
        let log = self.log.lock().unwrap();
        let entries: Vec<Value> = log.0.iter().map(Logged::to_json).collect();
        reply(200, &json!({ "requests": entries, "received": log.1 }))
    }

    fn accounts(&self) -> Response<Full<Bytes>> {
        let ledger = self.ledger.lock().unwrap();
        let accounts: BTreeMap<_, _> = ledger
            .accounts()
            .iter()
            .map(|(id, a)| (id.clone(), json!(a)))
            .collect();
        reply(
            200,
            &json!({"bank": self.name, "total": ledger.total(), "accounts": accounts}),
        )
    }

    fn account(&self, id: &str) -> Response<Full<Bytes>> {
        match self.ledger.lock().unwrap().account(id) {
            Some(account) => reply(
                200,
                &json!({"id": id, "balance": account.balance, "held": account.held, "incoming": account.incoming}),
            ),
            None => reply(404, &json!({"error": "unknown_account", "detail": id})),
        }
    }

    async fn set_account(&self, id: &str, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = match read_json(request.into_body()).await {
            Ok(body) => body,
            Err(detail) => return reply(400, &json!({"error": "bad_body", "detail": detail})),
        };
        let Some(balance) = body.get("balance").and_then(Value::as_i64) else {
            return reply(
                400,
                &json!({"error": "bad_body", "detail": "expected {\"balance\": <integer>}"}),
            );
        };
        let mut ledger = self.ledger.lock().unwrap();
        let change = ledger.set_balance(id, balance);
        if let Some(journal) = &self.journal {
            let _ = journal.lock().unwrap().append(&change);
        }
        reply(200, &json!({"id": id, "balance": balance}))
    }

    fn audit(&self) -> Response<Full<Bytes>> {
        let ledger = self.ledger.lock().unwrap();
        let barriers: BTreeMap<_, _> = ledger
            .barriers()
            .map(|(k, b)| (k.clone(), json!(b)))
            .collect();
        reply(200, &json!({"bank": self.name, "barriers": barriers}))
    }

    fn stats(&self) -> Response<Full<Bytes>> {
        let paths = self.paths.lock().unwrap().clone();
        let requests = self.requests.load(Ordering::Relaxed);
        reply(
            200,
            &json!({
                "bank": self.name,
                "requests": requests,
                "connections": self.connections.load(Ordering::Relaxed),
                "paths": paths,
            }),
        )
    }

    async fn faults(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match *request.method() {
            Method::GET => {}
            Method::DELETE => self.faults.lock().unwrap().clear(),
            Method::POST => {
                let body = match read_json(request.into_body()).await {
                    Ok(body) => body,
                    Err(detail) => {
                        return reply(400, &json!({"error": "bad_body", "detail": detail}));
                    }
                };
                let added = serde_json::from_value::<FaultRule>(body)
                    .map_err(|e| e.to_string())
                    .and_then(|rule| self.faults.lock().unwrap().add(rule));
                if let Err(detail) = added {
                    return reply(400, &json!({"error": "bad_fault", "detail": detail}));
                }
            }
            _ => return reply(405, &json!({"error": "method_not_allowed"})),
        }
        let rules = self.faults.lock().unwrap().rules().to_vec();
        reply(200, &json!({"rules": rules}))
    }
}

/// Management paths never get faults and are not counted per path.
fn is_management(path: &str) -> bool {
    path.starts_with("/_")
        || path == "/healthz"
        || path == "/stats"
        || path == "/ledger"
        || path.starts_with("/accounts")
}

fn operation(
    headers: &HeaderMap,
    body: &Value,
    direction: &str,
    phase: &str,
) -> Result<Operation, String> {
    let direction = match direction {
        "debit" => Direction::Debit,
        "credit" => Direction::Credit,
        other => return Err(format!("unknown operation `{other}`")),
    };
    let phase = match phase {
        "action" => Phase::Action,
        "compensate" => Phase::Compensate,
        "try" => Phase::Try,
        "confirm" => Phase::Confirm,
        "cancel" => Phase::Cancel,
        other => return Err(format!("unknown TCC phase `{other}`")),
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let key = header("idempotency-key").ok_or("Idempotency-Key is required")?;
    let step = header("x-saga-step");
    let barrier = match (header("x-saga-id"), &step) {
        (Some(saga), Some(step)) => Some(format!("{saga}/{step}")),
        _ if matches!(phase, Phase::Action | Phase::Try) => None,
        _ => return Err("an undo, confirm or cancel needs X-Saga-ID and X-Saga-Step".into()),
    };
    let (account, amount) = match phase {
        Phase::Action | Phase::Try => leg(body, step.as_deref(), direction)?,
        _ => (String::new(), 0),
    };
    Ok(Operation {
        key,
        barrier,
        request_id: header("x-request-id"),
        direction,
        phase,
        account,
        amount,
    })
}

/// Finds the account and amount this bank acts on.
fn leg(body: &Value, step: Option<&str>, direction: Direction) -> Result<(String, i64), String> {
    let leg = match (step, body.get("legs")) {
        (Some(step), Some(legs)) => legs
            .get(step)
            .ok_or_else(|| format!("no leg for step `{step}`"))?,
        _ => body,
    };
    let field = match direction {
        Direction::Debit => "from",
        Direction::Credit => "to",
    };
    let account = leg
        .get("account")
        .or_else(|| leg.get(field))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the body needs \"account\" or \"{field}\""))?;
    let amount = leg
        .get("amount")
        .and_then(Value::as_i64)
        .filter(|a| (1..=AMOUNT_MAX).contains(a))
        .ok_or_else(|| {
            format!("the body needs \"amount\": a whole number from 1 to {AMOUNT_MAX}")
        })?;
    Ok((account.to_string(), amount))
}

async fn read_json(body: Incoming) -> Result<Value, String> {
    parse_json(&read_body(body).await?)
}

async fn read_body(body: Incoming) -> Result<Bytes, String> {
    Ok(Limited::new(body, BODY_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| format!("cannot read the body: {e}"))?
        .to_bytes())
}

fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("the body is not JSON: {e}"))
}

async fn echo(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let query: BTreeMap<String, String> = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(ms) = query.get("delay_ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(ECHO_DELAY_MS_MAX))).await;
    }
    let body = Limited::new(body, BODY_BYTES_MAX)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into());
    }
    let status = query
        .get("status")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    if let Some(text) = query.get("text") {
        let mut response = reply(status, &Value::Null);
        *response.body_mut() = Full::new(Bytes::from(text.clone()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        return response;
    }
    let padding = query
        .get("bytes")
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(0, |n| n.min(ECHO_PADDING_BYTES_MAX));
    let mut response = reply(
        status,
        &json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
            "padding": "x".repeat(padding),
        }),
    );
    // Lets tests check that the gateway strips hop-by-hop headers on the way back too.
    response
        .headers_mut()
        .insert("keep-alive", http::HeaderValue::from_static("timeout=5"));
    response
}

fn reply(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Serves until the process is killed.
pub async fn serve(addr: SocketAddr, bank: Arc<Bank>) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bank: cannot listen on {addr}: {e}"))?;
    eprintln!("bank {} listening on {addr}", bank.name);
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let bank = bank.clone();
        let builder = builder.clone();
        bank.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let counted = bank.clone();
            // Each request runs in a task of its own, as a real bank's processing outlives a
            // caller who hangs up: a call the gateway timed out on still applies, and its key
            // stays "in progress" until it has.
            let service = service_fn(move |request| {
                let bank = bank.clone();
                async move {
                    tokio::spawn(async move { bank.handle(request).await })
                        .await
                        .unwrap_or(Err(DropConnection))
                }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
            counted.connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// A whole number from the query (`?hold_ms=500`), 0 without one.
fn query_number(uri: &http::Uri, name: &str) -> u64 {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

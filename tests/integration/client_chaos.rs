//! The seeded client-chaos suite: transfers from three clients that hang up at random moments
//! (before the body ends, right after sending, while the saga runs, while the answer is being
//! written), that reuse X-Request-IDs across clients and across bodies, and that retry in
//! storms, against banks that answer slowly. Afterwards every accepted saga has finished, every
//! retry gets a final answer, no idempotency key answers 409 once its request has ended, one
//! saga at most ran per (client, X-Request-ID), and the books are exact.
//!
//! CI runs seeds 1 to 3. A soak runs any number:
//!
//! ```text
//! TXGATE_CLIENT_SEEDS=1-50 cargo nextest run -p txgate-tests client_chaos --no-capture
//! ```

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::faults::seeds;
use crate::support::raw::request;
use crate::support::{Bank, Gateway, GatewayBuilder, client, wait_until};
use crate::wasm;

const CLIENTS: [&str; 3] = ["acme", "globex", "initech"];
const TRANSFERS: usize = 90;
const OPENING: i64 = 1_000_000;
const ACCOUNTS: usize = 4;
/// Once the chaos stops, every client must have its final answer within this.
const SETTLE_BOUND: Duration = Duration::from_secs(60);

/// When a client goes away.
#[derive(Debug, Clone, Copy)]
enum Exit {
    BeforeTheBodyEnds,
    RightAfterSending,
    WhileTheSagaRuns,
    WhileTheAnswerIsWritten,
    Never,
    Storm,
}

#[derive(Debug, Clone)]
struct Planned {
    client: &'static str,
    id: String,
    body: Value,
    exit: Exit,
}

fn plan(rng: &mut fastrand::Rng, seed: u64) -> Vec<Planned> {
    let exits = [
        Exit::BeforeTheBodyEnds,
        Exit::RightAfterSending,
        Exit::WhileTheSagaRuns,
        Exit::WhileTheAnswerIsWritten,
        Exit::Never,
        Exit::Storm,
    ];
    let mut planned: Vec<Planned> = Vec::new();
    for n in 0..TRANSFERS {
        // One in five reuses an earlier X-Request-ID: from another client, or with another body.
        let id = match planned.len() {
            len if len > 0 && rng.u8(..5) == 0 => planned[rng.usize(..len)].id.clone(),
            _ => format!("chaos-{seed}-{n}"),
        };
        let to = if rng.u8(..10) == 0 {
            "ghost".to_string()
        } else {
            format!("b{}", rng.usize(..ACCOUNTS))
        };
        planned.push(Planned {
            client: CLIENTS[rng.usize(..CLIENTS.len())],
            id,
            body: json!({"from": format!("a{}", rng.usize(..ACCOUNTS)), "to": to, "amount": rng.i64(1..=100)}),
            exit: exits[rng.usize(..exits.len())],
        });
    }
    planned
}

fn routes(a: &Bank, b: &Bank) -> String {
    format!(
        r#"
[upstreams.bank_a]
url = "{}"
backoff_base_ms = 2
backoff_max_ms = 50
[upstreams.bank_b]
url = "{}"
backoff_base_ms = 2
backoff_max_ms = 50
[plugins.idempotency]
module = "{}"
[plugins.idempotency.config]
client_key = "header:x-client-id"
[[routes]]
name = "transfers"
methods = ["POST"]
path = "/transfers"
plugins = ["idempotency"]
[routes.saga]
mode = "saga"
client_key = "header:x-client-id"
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
"#,
        a.base(),
        b.base(),
        wasm::IDEMPOTENCY
    )
}

fn bytes_of(p: &Planned) -> Vec<u8> {
    let body = p.body.to_string();
    request(
        "POST",
        "/transfers",
        &[
            ("x-request-id", &p.id),
            ("x-client-id", p.client),
            ("content-type", "application/json"),
        ],
        &body,
    )
}

/// One client, leaving as planned.
async fn act(port: u16, url: String, p: Planned, pause_ms: u64) {
    let bytes = bytes_of(&p);
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    match p.exit {
        Exit::BeforeTheBodyEnds => {
            let _ = stream.write_all(&bytes[..bytes.len() - 5]).await;
        }
        Exit::RightAfterSending => {
            let _ = stream.write_all(&bytes).await;
        }
        Exit::WhileTheSagaRuns => {
            let _ = stream.write_all(&bytes).await;
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
        Exit::WhileTheAnswerIsWritten => {
            let _ = stream.write_all(&bytes).await;
            let mut first = [0u8; 1];
            let _ = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut first)).await;
        }
        Exit::Never => {
            drop(stream);
            let _ = send(&url, &p).await;
        }
        Exit::Storm => {
            drop(stream);
            let storm = (0..6).map(|_| send(&url, &p));
            futures_util::future::join_all(storm).await;
        }
    }
}

async fn send(url: &str, p: &Planned) -> Option<(u16, Value)> {
    let response = client()
        .post(url)
        .header("x-request-id", &p.id)
        .header("x-client-id", p.client)
        .json(&p.body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

/// One retry per transfer, in turn, until each has a final answer. Nothing else runs now, so a
/// 409 could only come from a key still held by a request that has ended.
async fn settle(gateway: &Gateway, planned: &[Planned], replay: &str) -> Vec<(u16, Value)> {
    let deadline = Instant::now() + SETTLE_BOUND;
    let url = gateway.url("/transfers");
    let mut finals = Vec::new();
    for p in planned {
        loop {
            assert!(
                Instant::now() < deadline,
                "{} ({}) never got a final answer ({replay})",
                p.id,
                p.client
            );
            match send(&url, p).await {
                Some((409, body)) if !crate::crash::is_final(409, &body) => panic!(
                    "{} answered 409 after its request ended: {body} ({replay})",
                    p.id
                ),
                Some((202 | 503, _)) | None => tokio::time::sleep(Duration::from_millis(50)).await,
                Some(answer) => break finals.push(answer),
            }
        }
    }
    finals
}

async fn check(a: &Bank, b: &Bank, planned: &[Planned], finals: &[(u16, Value)], replay: &str) {
    let opening = ACCOUNTS as i64 * OPENING;
    let (total_a, total_b) = (a.total().await, b.total().await);
    assert_eq!(
        total_a + total_b,
        2 * opening,
        "money was made or lost ({replay})"
    );
    let mut ran: HashMap<(&str, &str), (&Value, &Value)> = HashMap::new();
    let mut credited = 0;
    for (p, (status, answer)) in planned.iter().zip(finals) {
        assert!(
            crate::crash::is_outcome(*status),
            "{} got {status} {answer} ({replay})",
            p.id
        );
        if *status == 422 {
            continue;
        }
        let key = (p.client, p.id.as_str());
        match ran.get(&key) {
            Some((body, first)) => {
                assert_eq!(*body, &p.body, "{key:?} ran two bodies ({replay})");
                assert_eq!(
                    first["saga_id"], answer["saga_id"],
                    "{key:?} ran twice ({replay})"
                );
            }
            None => {
                ran.insert(key, (&p.body, answer));
                if answer["status"] == "completed" {
                    credited += p.body["amount"].as_i64().unwrap();
                }
            }
        }
    }
    assert_eq!(
        total_b - opening,
        credited,
        "credits differ from the completed transfers ({replay})"
    );
    let mut sagas: HashSet<String> = HashSet::new();
    for bank in [a, b] {
        for key in bank.barriers().await.keys() {
            sagas.insert(key.split('/').next().unwrap_or_default().to_string());
        }
    }
    let answered: HashSet<String> = ran
        .values()
        .filter_map(|(_, a)| a["saga_id"].as_str().map(str::to_string))
        .collect();
    assert!(
        sagas.is_subset(&answered),
        "a saga ran that no client was answered with ({replay})"
    );
}

async fn run(seed: u64) {
    let replay = format!(
        "replay: TXGATE_CLIENT_SEEDS={seed} cargo nextest run -p txgate-tests client_chaos --no-capture"
    );
    eprintln!("client chaos, seed {seed} ({replay})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let accounts = |bank: char| {
        (0..ACCOUNTS)
            .map(|i| format!("{bank}{i}={OPENING}"))
            .collect::<Vec<_>>()
    };
    let (a_accounts, b_accounts) = (accounts('a'), accounts('b'));
    let a = Bank::start(&a_accounts.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let b = Bank::start(&b_accounts.iter().map(String::as_str).collect::<Vec<_>>()).await;
    for bank in [&a, &b] {
        bank.fault(json!({"kind": "latency", "probability": 0.5, "latency_ms": 5 + rng.u64(..60)}))
            .await;
    }
    let gateway = GatewayBuilder::new(routes(&a, &b))
        .server("request_timeout_ms = 1000")
        .start()
        .await;
    let planned = plan(&mut rng, seed);
    let clients: Vec<_> = planned
        .iter()
        .map(|p| {
            tokio::spawn(act(
                gateway.port,
                gateway.url("/transfers"),
                p.clone(),
                rng.u64(..80),
            ))
        })
        .collect();
    for c in clients {
        let _ = c.await;
    }
    for bank in [&a, &b] {
        bank.clear_faults().await;
    }
    wait_until(SETTLE_BOUND, "every accepted saga to finish", || {
        gateway.no_saga_unfinished()
    })
    .await;
    let finals = settle(&gateway, &planned, &replay).await;
    check(&a, &b, &planned, &finals, &replay).await;
}

#[tokio::test]
async fn clients_that_hang_up_reuse_ids_and_storm_never_break_the_promise() {
    // Proves, for each seed, that careless clients change nothing: every accepted saga
    // finishes, every retry gets its final answer, no key stays held, and the books are exact.
    for seed in seeds("TXGATE_CLIENT_SEEDS", 1..=3) {
        run(seed).await;
    }
}

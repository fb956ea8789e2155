//! `txgate reconcile` (SPEC §10) against real banks whose books were made to disagree on
//! purpose: a bank that acknowledges a debit and loses it, one that acknowledges a compensation
//! and keeps the money, a TCC reservation whose cancel was lost, and a credit booked for another
//! amount. On SQLite and on PostgreSQL; and, in the fault suites, nothing on books kept right.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::console::{Browser, OPS};
use crate::sagas::{banks, transfer, transfer_routes};
use crate::support::postgres::Postgres;
use crate::support::{Gateway, GatewayBuilder, bin};

/// What a run printed, and how it ended.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `txgate reconcile -c config` with `args`.
pub fn reconcile(config: &Path, args: &[&str]) -> Run {
    let output = Command::new(bin("txgate"))
        .arg("reconcile")
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The fault suites' last check: the books the gateway kept agree with every bank's, step by
/// step, through the status calls.
pub fn books_agree(config: &Path, seed: u64, replay: &str) {
    let run = reconcile(config, &["--since", "1h", "--format", "jsonl"]);
    assert_eq!(
        run.code,
        Some(0),
        "seed {seed}: reconcile after the faults: {}{} ({replay})",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.is_empty(), "seed {seed}: {}", run.stdout);
    assert!(
        run.stderr.contains(" 0 without a status call"),
        "seed {seed}: every step has its status call: {}",
        run.stderr
    );
    let sagas: u64 = number_before(&run.stderr, " finished sagas");
    assert!(sagas > 0, "seed {seed}: sagas were checked: {}", run.stderr);
}

/// The number just before `label` in a summary line.
fn number_before(text: &str, label: &str) -> u64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("`{label}` in {text}"));
    let digits: String = text[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

/// Makes the four discrepancies, and two transfers that agree.
async fn make_discrepancies(gateway: &Gateway, a: &crate::support::Bank, b: &crate::support::Bank) {
    let ok = |(status, body): (u16, Value), want: u16| {
        assert_eq!(status, want, "{body}");
        body
    };
    ok(
        transfer(gateway, "/transfers", "agree-1", "alice", "carol", 10).await,
        200,
    );
    ok(
        transfer(gateway, "/tcc", "agree-2", "alice", "carol", 10).await,
        200,
    );
    // A bank that acknowledges the debit and never books it.
    a.fault(json!({"kind": "ack", "path_prefix": "/debit", "count": 1}))
        .await;
    ok(
        transfer(gateway, "/transfers", "lost-1", "alice", "carol", 10).await,
        200,
    );
    // One that acknowledges the compensation of a debit and keeps the money.
    a.fault(json!({"kind": "ack", "path_prefix": "/debit/compensate", "count": 1}))
        .await;
    ok(
        transfer(gateway, "/transfers", "kept-1", "alice", "nobody", 10).await,
        404,
    );
    // A reservation whose cancel the bank acknowledged and dropped.
    a.fault(json!({"kind": "ack", "path_prefix": "/tcc/debit/cancel", "count": 1}))
        .await;
    ok(
        transfer(gateway, "/tcc", "hang-1", "alice", "nobody", 10).await,
        404,
    );
    // A credit booked for 7 instead of 10.
    b.fault(json!({"kind": "amount", "path_prefix": "/credit", "amount": 7, "count": 1}))
        .await;
    ok(
        transfer(gateway, "/transfers", "amount-1", "alice", "carol", 10).await,
        200,
    );
}

/// Runs the check and asserts exactly the four findings, each on its saga and step.
async fn reconcile_finds_the_four(gateway: &Gateway) {
    let run = reconcile(
        gateway.config_path(),
        &["--since", "1h", "--format", "jsonl"],
    );
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    let mut found: Vec<(String, String, String)> = run
        .stdout
        .lines()
        .map(|line| {
            let f: Value = serde_json::from_str(line).expect("one JSON object per line");
            for key in ["saga", "backend", "expected", "actual", "action"] {
                assert!(
                    f[key].as_str().is_some_and(|v| !v.is_empty()),
                    "{key}: {line}"
                );
            }
            let text = |k: &str| f[k].as_str().unwrap().to_string();
            (text("request_id"), text("step"), text("category"))
        })
        .collect();
    found.sort();
    let want = [
        ("amount-1", "credit", "amount_differs"),
        ("hang-1", "debit", "tcc_unresolved"),
        ("kept-1", "debit", "unexpected_effect"),
        ("lost-1", "debit", "missing_effect"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(r, s, c)| (r.to_string(), s.to_string(), c.to_string()))
        .collect();
    assert_eq!(found, want, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("\"expected\":\"amount 10\",\"actual\":\"amount 7\""),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("6 finished sagas, 12 steps checked, 0 without a status call"),
        "{}",
        run.stderr
    );

    let table = reconcile(gateway.config_path(), &["--since", "1h"]);
    assert_eq!(table.code, Some(1), "{}{}", table.stdout, table.stderr);
    for category in [
        "missing_effect",
        "unexpected_effect",
        "tcc_unresolved",
        "amount_differs",
    ] {
        let counted_once = table
            .stdout
            .lines()
            .any(|l| l.starts_with(&format!("{category} ")) && l.trim_end().ends_with(" 1"));
        assert!(counted_once, "{category} counted once in\n{}", table.stdout);
    }

    // A window before any of them finished checks nothing, and agrees.
    let before = reconcile(gateway.config_path(), &["--since", "2h", "--until", "1h"]);
    assert_eq!(before.code, Some(0), "{}{}", before.stdout, before.stderr);
    assert!(
        before.stdout.contains(": 0 finished sagas"),
        "{}",
        before.stdout
    );
}

/// The console lists the runs, newest first, with the findings linked to their sagas.
async fn console_lists_the_runs(gateway: &Gateway) {
    let browser = Browser::sign_in(gateway, OPS).await;
    let (status, page) = browser.get("/ui/reconcile").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page.matches("Run of ").count(), 3, "three runs: {page}");
    assert!(page.contains("4 disagreements"), "{page}");
    assert!(page.contains("the books agree"), "the empty window: {page}");
    for category in [
        "missing_effect",
        "unexpected_effect",
        "tcc_unresolved",
        "amount_differs",
    ] {
        assert!(page.contains(category), "{category}: {page}");
    }
    let lost = gateway.admin_json("/admin/sagas?q=lost-1").await;
    let id = lost["sagas"][0]["saga_id"].as_str().unwrap().to_string();
    assert!(page.contains(&format!("/ui/sagas/{id}")), "{page}");
}

async fn gateway_on(
    database: Option<&str>,
) -> (Gateway, crate::support::Bank, crate::support::Bank) {
    let (a, b) = banks().await;
    let mut builder = GatewayBuilder::new(transfer_routes(&a, &b, ""))
        .server("admin_token = \"admin-token-0123456789\"")
        .server(&format!(
            "[[server.admin_tokens]]\nname = \"ops-alice\"\ntoken = \"{OPS}\"\nrole = \"operate\""
        ));
    if let Some(url) = database {
        builder = builder.fleet(url, "reconcile-1", 2000);
    }
    (builder.start().await, a, b)
}

#[tokio::test]
async fn reconcile_finds_each_discrepancy_on_sqlite_and_the_console_lists_it() {
    // Proves each category on purpose-made discrepancies, one finding per bad step and none on
    // the steps that agree; exit 1 in both formats, 0 for a window with nothing in it; and the
    // console's list of runs with their findings linked to the sagas.
    let (gateway, a, b) = gateway_on(None).await;
    make_discrepancies(&gateway, &a, &b).await;
    reconcile_finds_the_four(&gateway).await;
    console_lists_the_runs(&gateway).await;
}

#[tokio::test]
async fn reconcile_finds_each_discrepancy_on_postgres() {
    // Proves the same on a fleet's database: the sagas read and the runs kept in PostgreSQL.
    let db = Postgres::start();
    let (gateway, a, b) = gateway_on(Some(&db.url())).await;
    make_discrepancies(&gateway, &a, &b).await;
    reconcile_finds_the_four(&gateway).await;
    console_lists_the_runs(&gateway).await;
}

#[tokio::test]
async fn reconcile_refuses_bad_flags_and_a_missing_store_with_exit_2() {
    // Proves a check that cannot run says why and exits 2, never 1 ("the books disagree"):
    // a window flag it cannot read, and a store that does not exist yet.
    let (a, b) = banks().await;
    let gateway = GatewayBuilder::new(transfer_routes(&a, &b, "")).stopped();
    let run = reconcile(gateway.config_path(), &["--since", "yesterday"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--since"), "{}", run.stderr);
    let run = reconcile(gateway.config_path(), &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("no store here"), "{}", run.stderr);
}

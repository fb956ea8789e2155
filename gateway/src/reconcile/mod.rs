//! `txgate reconcile` (SPEC §10): checks the books. For every saga finished in the window, it
//! asks each step's backend what it holds (the step's `status` call) and compares that with what
//! the gateway's record says the step left there; it prints each disagreement, keeps the run's
//! report in the store for the console, and never moves money itself.
//!
//! - `window.rs`: `--since` and `--until`;
//! - `ask.rs`: the status calls;
//! - `judge.rs`: the verdict on one step;
//! - `report.rs`: the output, and the stored report.
//!
//! The sagas are read page by page, newest first, through the store's primary key (see
//! `store/books.rs`); each page's status calls run a bounded number at a time.

mod ask;
mod judge;
mod report;
mod window;

use std::io::Write;
use std::path::Path;

use futures_util::StreamExt;

pub use judge::{Category, Held};
pub use report::{Finding, Report, rfc3339};
pub use window::Window;

use crate::config;
use crate::error::{Error, ErrorKind};
use crate::saga::SagaRecord;
use crate::store::books::{Books, Page};
use crate::store::now_unix_ms;
use ask::{Asked, Asker};

/// Finished sagas read per page.
const PAGE_SAGAS: usize = 500;
/// Sagas whose status calls are under way at once.
const SAGAS_IN_FLIGHT: usize = 16;

/// How reconcile prints what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The findings as a table, then the summary.
    Table,
    /// One JSON object per finding on stdout; the summary on stderr.
    Jsonl,
}

/// How a run ended: the process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every step checked agrees (exit 0).
    Agree,
    /// Something disagrees (exit 1).
    Disagree,
    /// Nothing disagrees, but some status calls failed (exit 2, as a run that could not start).
    Incomplete,
}

/// Runs a check of the window `since`..`until` against the store and backends of the config
/// at `path`, printing to stdout in `format`.
pub fn reconcile(
    path: &Path,
    since: Option<&str>,
    until: Option<&str>,
    format: Format,
) -> Result<Verdict, Error> {
    let config = config::load(path)?;
    let window = Window::parse(since, until, now_unix_ms())
        .map_err(|reason| Error::new(ErrorKind::Config, reason))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot start a runtime").with_cause(e))?;
    runtime.block_on(async {
        let mut books = Books::open(&config).await?;
        let asker = Asker::new(&config)?;
        let report = check(&books, &asker, window, format).await?;
        let stored = serde_json::to_string(&report).map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot encode the report").with_cause(e)
        })?;
        books.record_run(&report.id, &stored).await?;
        let summary = report.summary();
        match format {
            Format::Table => print!("{}{summary}", report.table()),
            Format::Jsonl => eprint!("{summary}"),
        }
        Ok(if report.disagreements() > 0 {
            Verdict::Disagree
        } else if report.count(Category::Unchecked) > 0 {
            Verdict::Incomplete
        } else {
            Verdict::Agree
        })
    })
}

/// Walks the window's finished sagas and checks each.
async fn check(
    books: &Books,
    asker: &Asker,
    window: Window,
    format: Format,
) -> Result<Report, Error> {
    let mut report = Report {
        id: uuid::Uuid::now_v7().to_string(),
        started_ms: now_unix_ms(),
        since_ms: window.since_ms,
        until_ms: window.until_ms,
        ..Report::default()
    };
    let mut before = String::new();
    let mut stdout = std::io::stdout().lock();
    loop {
        let page = Page {
            since_ms: window.since_ms,
            until_ms: window.until_ms,
            before_id: &before,
            limit: PAGE_SAGAS,
        };
        let rows = books.finished(page).await?;
        let Some((last, _)) = rows.last() else { break };
        before = last.clone();
        let checked: Vec<Checked> = futures_util::stream::iter(rows)
            .map(|(id, bytes)| check_saga(asker, id, bytes))
            .buffer_unordered(SAGAS_IN_FLIGHT)
            .collect()
            .await;
        for saga in checked {
            report.sagas += 1;
            report.steps += saga.steps;
            report.steps_without_call += saga.without_call;
            for finding in saga.findings {
                if format == Format::Jsonl {
                    let _ = report::write_line(&mut stdout, &finding);
                }
                report.add(finding);
            }
        }
    }
    let _ = stdout.flush();
    report.finished_ms = now_unix_ms();
    Ok(report)
}

/// What one saga's check came to.
#[derive(Debug, Default)]
struct Checked {
    steps: u64,
    without_call: u64,
    findings: Vec<Finding>,
}

/// Asks about every step of one saga, in order, and judges each answer.
async fn check_saga(asker: &Asker, id: String, bytes: bytes::Bytes) -> Checked {
    let mut checked = Checked::default();
    let Some(record) = SagaRecord::decode(&bytes) else {
        checked.findings.push(unreadable(&id));
        return checked;
    };
    let amount = requested_amount(&record);
    for (i, step) in record.plan.iter().enumerate() {
        let Some(expected) = record.expected(i) else {
            continue;
        };
        let found = match asker.ask(&record, i).await {
            Asked::NoCall => {
                checked.without_call += 1;
                continue;
            }
            Asked::Held(held) => {
                checked.steps += 1;
                let amount = amount(&step.name);
                judge::judge(record.mode, expected, amount, held)
            }
            Asked::Failed(why) => vec![judge::Disagreement {
                category: Category::Unchecked,
                expected: "an answer".into(),
                actual: why,
            }],
        };
        checked.findings.extend(found.into_iter().map(|d| Finding {
            category: d.category.as_str().into(),
            saga: record.id.to_string(),
            route: record.route.to_string(),
            request_id: record.request_id.to_string(),
            step: step.name.clone(),
            backend: step.upstream.clone(),
            expected: d.expected,
            actual: d.actual,
            action: d.category.action().into(),
        }));
    }
    checked
}

/// A saga whose record this build cannot read: nothing of it was checked.
fn unreadable(id: &str) -> Finding {
    Finding {
        category: Category::Unchecked.as_str().into(),
        saga: id.to_string(),
        route: String::new(),
        request_id: String::new(),
        step: String::new(),
        backend: String::new(),
        expected: "a record".into(),
        actual: "a record this build cannot read".into(),
        action: "run reconcile with the build that wrote it".into(),
    }
}

/// The amount the request asked each step to move: the body's `amount`, or a leg's
/// (`{"legs": {"<step>": {"amount": ..}}}`); `None` when the body names none.
fn requested_amount(record: &SagaRecord) -> impl Fn(&str) -> Option<f64> {
    let body: Option<serde_json::Value> = serde_json::from_slice(&record.body).ok();
    move |step: &str| {
        let body = body.as_ref()?;
        body.get("legs")
            .and_then(|legs| legs.get(step))
            .and_then(|leg| leg.get("amount"))
            .or_else(|| body.get("amount"))
            .and_then(serde_json::Value::as_f64)
    }
}

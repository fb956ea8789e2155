//! The console's "Reconcile" page: the newest runs of `txgate reconcile` as the store keeps them
//! (SPEC §10), each with its window, what it checked, and its findings linked to their sagas.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use maud::{Markup, html};

use super::pages::{Viewer, layout};
use super::session::Session;
use super::{Console, page};
use crate::error::{Error, ErrorKind};
use crate::reconcile::{Category, Report, rfc3339};

/// Runs the page shows; the store keeps more.
const RUNS_SHOWN: usize = 20;

impl Console<'_> {
    /// `GET /ui/reconcile`.
    pub(super) async fn reconcile(
        &self,
        session: &Session,
    ) -> Result<Response<Full<Bytes>>, Error> {
        let stored = self
            .gateway
            .store()
            .reconcile_runs(RUNS_SHOWN)
            .await
            .map_err(|e| Error::new(ErrorKind::StoreUnavailable, e.to_string()))?;
        // A report this build cannot read (a newer one's) is left out rather than failing the page.
        let runs: Vec<Report> = stored
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        Ok(page(StatusCode::OK, runs_page(&session.viewer(), &runs)))
    }
}

fn runs_page(viewer: &Viewer<'_>, runs: &[Report]) -> Markup {
    layout(
        "Reconcile",
        Some(viewer),
        "",
        html! {
            h1 { "Reconcile" }
            p { "What " code { "txgate reconcile" } " found when it compared finished sagas with \
                 what each backend holds, newest run first. It never moves money: each finding \
                 says what to do by hand." }
            @if runs.is_empty() {
                p.none { "No run yet: " code { "txgate reconcile --config FILE --since 1h" } }
            }
            @for (n, run) in runs.iter().enumerate() {
                (run_section(run, n == 0))
            }
        },
    )
}

fn run_section(run: &Report, newest: bool) -> Markup {
    let disagreements = run.disagreements();
    let unchecked = run.count(Category::Unchecked);
    html! {
        section.run {
            h2 { "Run of " (rfc3339(run.started_ms)) }
            p {
                "Sagas finished " (rfc3339(run.since_ms)) " to " (rfc3339(run.until_ms)) ": "
                strong { (run.sagas) } " sagas, " strong { (run.steps) } " steps checked, "
                (run.steps_without_call) " without a status call. "
                @if disagreements == 0 && unchecked == 0 {
                    span class="status completed" { "the books agree" }
                } @else {
                    span class="status stuck" { (counted(disagreements, "disagreement")) }
                    @if unchecked > 0 { " " span class="status pending" { (unchecked) " unchecked" } }
                }
            }
            @if !run.findings.is_empty() {
                details open[newest] {
                    summary { (counted(run.findings.len() as u64, "finding")) }
                    (findings_table(run))
                }
            }
        }
    }
}

fn findings_table(run: &Report) -> Markup {
    html! {
        table.findings {
            thead { tr {
                th { "Category" } th { "Saga" } th { "Step" } th { "Backend" }
                th { "Expected" } th { "Actual" } th { "What to do" }
            } }
            tbody {
                @for f in &run.findings {
                    tr {
                        td { span class={ "status " (severity(&f.category)) } { (f.category) } }
                        td { a href={ "/ui/sagas/" (f.saga) } { code { (f.saga) } } }
                        td { (f.step) }
                        td { (f.backend) }
                        td { (f.expected) }
                        td { (f.actual) }
                        td { (f.action) }
                    }
                }
            }
        }
    }
}

/// "1 finding", "2 findings".
fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The badge colour of a category: an unchecked step is pending, a disagreement stuck.
fn severity(category: &str) -> &'static str {
    if category == Category::Unchecked.as_str() {
        "pending"
    } else {
        "stuck"
    }
}

//! The console's pages, as `maud` templates compiled into the binary. Every value is escaped
//! by the template (a saga body holding `<script>` shows as text), there is no script at all,
//! and the pages render what the admin API returns (`saga::admin_view`), so the two never
//! disagree.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::chart;
use super::masked::Shown;
use crate::config::Role;
use crate::last_hour::MinuteView;
use crate::store::{SAGA_STATUSES, SagaFilter};

/// What every page knows about who is looking.
pub(super) struct Viewer<'a> {
    /// The operator's name.
    pub(super) name: &'a str,
    /// Its role: a `read` operator is shown no action.
    pub(super) role: Role,
    /// The session's anti-CSRF token, put in every form.
    pub(super) csrf: &'a str,
}

pub(super) fn layout(title: &str, viewer: Option<&Viewer<'_>>, q: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · txgate" }
                link rel="stylesheet" href="/ui/style.css";
            }
            body {
                header {
                    a.brand href="/ui/" { "txgate" }
                    @if let Some(viewer) = viewer {
                        nav {
                            a href="/ui/" { "Sagas" }
                            a href="/ui/attention" { "Needs attention" }
                            a href="/ui/reconcile" { "Reconcile" }
                        }
                        form.search method="get" action="/ui/" {
                            input type="search" name="q" value=(q) aria-label="Search"
                                placeholder="saga id, X-Request-ID or client";
                            button type="submit" { "Search" }
                        }
                        form.who method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            span { (viewer.name) " (" (viewer.role.as_str()) ")" }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The sign-in form; `error` says why the last try failed.
pub(super) fn login(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        "",
        html! {
            h1 { "Sign in" }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/ui/login" {
                label for="token" { "Operator token" }
                input #token type="password" name="token" required autocomplete="current-password";
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// What a listing page shows.
pub(super) struct ListPage<'a> {
    /// Its heading.
    pub(super) title: &'a str,
    /// The sagas, as the admin API shows them.
    pub(super) sagas: &'a [Value],
    /// The filters in force, when the page offers them.
    pub(super) filter: Option<&'a SagaFilter>,
    /// The search text.
    pub(super) q: &'a str,
    /// Sagas per status, each counted up to `count_cap`.
    pub(super) counts: &'a [(&'static str, u64)],
    pub(super) count_cap: u64,
    /// The routes a filter may name.
    pub(super) routes: &'a [String],
    /// The last hour, oldest minute first (empty: no chart).
    pub(super) hour: &'a [MinuteView],
}

/// A listing: counts, filters, the sagas, and the last hour's chart.
pub(super) fn list(viewer: &Viewer<'_>, listing: &ListPage<'_>) -> Markup {
    layout(
        listing.title,
        Some(viewer),
        listing.q,
        html! {
            h1 { (listing.title) }
            @if !listing.counts.is_empty() {
                ul.counts aria-label="Sagas per status" {
                    @for (status, n) in listing.counts {
                        li { a href={ "/ui/?status=" (status) } {
                            span class={ "status " (status) } { (status) } " "
                            strong { (n) @if *n >= listing.count_cap { "+" } }
                        } }
                    }
                }
            }
            @if !listing.hour.is_empty() { (chart::last_hour(listing.hour)) }
            @if let Some(filter) = listing.filter { (filters(filter, listing.q, listing.routes)) }
            @if !listing.sagas.is_empty() {
                p.count { (listing.sagas.len()) " saga" @if listing.sagas.len() != 1 { "s" } " shown, newest first" }
            }
            (saga_table(listing.sagas))
        },
    )
}

/// The filter form: status, route, and created before a time (UTC).
fn filters(filter: &SagaFilter, q: &str, routes: &[String]) -> Markup {
    let before = filter.before_ms.map(minute_text).unwrap_or_default();
    html! {
        form.filters method="get" action="/ui/" {
            input type="hidden" name="q" value=(q);
            label for="status" { "Status" }
            select #status name="status" {
                option value="" selected[filter.status.is_none()] { "any" }
                @for s in SAGA_STATUSES {
                    option value=(s) selected[filter.status == Some(s)] { (s) }
                }
            }
            label for="route" { "Route" }
            select #route name="route" {
                option value="" selected[filter.route.is_none()] { "any" }
                @for r in routes {
                    option value=(r) selected[filter.route.as_deref() == Some(r.as_str())] { (r) }
                }
            }
            label for="before" { "Created before (UTC)" }
            input #before type="datetime-local" name="before" value=(before);
            button type="submit" { "Filter" }
        }
    }
}

fn saga_table(sagas: &[Value]) -> Markup {
    if sagas.is_empty() {
        return html! { p.none { "None." } };
    }
    html! {
        table.sagas {
            thead { tr { th { "Saga" } th { "Status" } th { "Route" } th { "Client" } th { "X-Request-ID" } th { "Created" } } }
            tbody {
                @for saga in sagas {
                    @let id = text(&saga["saga_id"]);
                    tr {
                        td { a href={ "/ui/sagas/" (id) } { code { (id) } } }
                        td { span class={ "status " (text(&saga["status"])) } { (text(&saga["status"])) } }
                        td { (text(&saga["route"])) }
                        td { (text(&saga["client"])) }
                        td { code { (text(&saga["request_id"])) } }
                        td { (time(&saga["created_ms"])) }
                    }
                }
            }
        }
    }
}

/// One saga's page: what it is, its plan and steps, every attempt, its operators' actions, and
/// (for an `operate` operator) the actions its state allows.
pub(super) fn saga(
    viewer: &Viewer<'_>,
    saga: &Value,
    bodies: &[Shown],
    masked: bool,
    notice: Option<&str>,
) -> Markup {
    let id = text(&saga["saga_id"]);
    layout(
        &id,
        Some(viewer),
        "",
        html! {
            h1 { "Saga " code { (id) } }
            @if let Some(notice) = notice { p.notice role="status" { (notice) } }
            dl.facts {
                dt { "Status" } dd { span class={ "status " (text(&saga["status"])) } { (text(&saga["status"])) } " · " (text(&saga["stage"])) }
                dt { "Route" } dd { (text(&saga["route"])) " (" (text(&saga["mode"])) ")" }
                dt { "Client" } dd { (text(&saga["client"])) }
                dt { "X-Request-ID" } dd { code { (text(&saga["request_id"])) } }
                dt { "Created" } dd { (time(&saga["created_ms"])) }
                dt { "Updated" } dd { (time(&saga["updated_ms"])) }
                @if saga["failure"].is_object() {
                    dt { "Failure" }
                    dd { (text(&saga["failure"]["cause"])) " at " (text(&saga["failure"]["step"])) ": " (text(&saga["failure"]["error"])) }
                }
            }
            h2 { "Plan and steps" }
            table {
                thead { tr { th { "Step" } th { "Upstream" } th { "Forward" } th { "Undo" } th { "Answer" } th { "Compensation" } } }
                tbody {
                    @for (i, step) in rows(&saga["plan"]).iter().enumerate() {
                        @let state = &saga["steps"][i];
                        tr {
                            td { (text(&step["name"])) }
                            td { (text(&step["upstream"])) }
                            td { code { (text(&step["forward"])) } }
                            td { code { (text(&step["undo"])) } }
                            td { (text(&state["status"])) }
                            td { (text(&state["compensation"])) }
                        }
                    }
                }
            }
            h2 { "Bodies" }
            @if masked { p { "As the route's mask plugin shows them." } }
            @for shown in bodies {
                h3 { (shown.what) }
                pre.body { (shown.text) }
            }
            h2 { "Attempts" }
            p { (saga["attempts_total"]) " in all; the newest are kept." }
            table.timeline {
                thead { tr { th { "Time" } th { "Step" } th { "Phase" } th { "Status" } th { "Latency" } th { "Error" } } }
                tbody {
                    @for attempt in rows(&saga["attempts"]) {
                        tr {
                            td { (time(&attempt["at_ms"])) }
                            td { (text(&attempt["step"])) }
                            td { (text(&attempt["phase"])) }
                            td { (text(&attempt["status"])) }
                            td { (text(&attempt["latency_ms"])) " ms" }
                            td { (text(&attempt["error"])) }
                        }
                    }
                }
            }
            h2 { "Operator actions" }
            @if rows(&saga["actions"]).is_empty() { p { "None." } }
            @else {
                table.actions {
                    thead { tr { th { "Time" } th { "Operator" } th { "Action" } th { "Reason" } th { "Outcome" } } }
                    tbody {
                        @for action in rows(&saga["actions"]) {
                            tr {
                                td { (time(&action["at_ms"])) }
                                td { (text(&action["operator"])) }
                                td { (text(&action["action"])) }
                                td { (text(&action["reason"])) }
                                td { (text(&action["outcome"])) @if action["refused_because"].is_string() { ": " (text(&action["refused_because"])) } }
                            }
                        }
                    }
                }
            }
            @if viewer.role == Role::Operate {
                (action_forms(viewer, saga))
            }
        },
    )
}

/// The actions the saga's state allows, each confirmed and with a required reason.
fn action_forms(viewer: &Viewer<'_>, saga: &Value) -> Markup {
    let id = text(&saga["saga_id"]);
    let status = text(&saga["status"]);
    let forward = text(&saga["stage"]).starts_with("Forward");
    let allowed = [
        (
            "retry",
            "Retry now",
            status != "completed" && status != "compensated",
        ),
        (
            "resolve",
            "Resolve (fixed by hand)",
            matches!(status.as_str(), "stuck" | "compensating"),
        ),
        (
            "abort",
            "Abort and compensate",
            forward && matches!(status.as_str(), "pending" | "stuck"),
        ),
    ];
    html! {
        @if allowed.iter().any(|(_, _, ok)| *ok) {
            h2 { "Act on this saga" }
            @for (action, label, ok) in allowed {
                @if ok {
                    form.action method="post" action={ "/ui/sagas/" (id) "/" (action) } {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        label for={ (action) "-reason" } { "Reason (recorded under your name)" }
                        input id={ (action) "-reason" } type="text" name="reason" required maxlength="2048";
                        label.confirm {
                            input type="checkbox" name="confirm" value="yes" required;
                            " I confirm: " (label)
                        }
                        button type="submit" { (label) }
                    }
                }
            }
        }
    }
}

/// A page for a failure the console shows instead of JSON.
pub(super) fn problem(viewer: Option<&Viewer<'_>>, title: &str, detail: &str) -> Markup {
    layout(
        title,
        viewer,
        "",
        html! {
            h1 { (title) }
            p.error role="alert" { (detail) }
            p { a href="/ui/" { "Back to the sagas" } }
        },
    )
}

fn rows(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// A JSON value as plain text: strings without their quotes, null as nothing, the rest as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Milliseconds since the Unix epoch as a browser's `datetime-local` value (UTC).
fn minute_text(ms: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch as an RFC 3339 time (UTC).
fn time(value: &Value) -> String {
    let Some(ms) = value.as_u64() else {
        return String::new();
    };
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

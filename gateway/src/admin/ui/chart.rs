//! The last hour, drawn on the server as SVG (no script): sagas finished per minute, stacked by
//! outcome, and the p50 and p99 of their latency. The SVG scales to the page's width, so it reads
//! on a phone as on a laptop.

use maud::{Markup, html};

use crate::last_hour::{MINUTES, MinuteView, OUTCOMES};

/// The drawing's units: one minute is `BAR` wide.
const BAR: f64 = 12.0;
const WIDTH: f64 = BAR * MINUTES as f64;
const COUNT_HEIGHT: f64 = 80.0;
const LATENCY_HEIGHT: f64 = 60.0;

/// Both charts of `hour` (oldest minute first), with their scales in words.
pub(super) fn last_hour(hour: &[MinuteView]) -> Markup {
    let total: u64 = hour
        .iter()
        .map(|m| m.counts.iter().map(|&n| u64::from(n)).sum::<u64>())
        .sum();
    let busiest = hour
        .iter()
        .map(|m| m.counts.iter().sum::<u32>())
        .max()
        .unwrap_or(0)
        .max(1);
    let slowest = hour.iter().filter_map(|m| m.p99_ms).fold(1.0f64, f64::max);
    html! {
        section.chart aria-label="The last hour" {
            h2 { "The last hour on this gateway" }
            @if total == 0 {
                p.legend { "No saga finished here in the last hour." }
            } @else {
            p.legend {
                (total) " sagas finished · "
                span.key.ok { "completed" } " "
                span.key.comp { "compensated" } " · at most " (busiest) " a minute"
            }
            svg viewBox={ "0 0 " (WIDTH) " " (COUNT_HEIGHT) } role="img"
                aria-label="Sagas finished per minute, by outcome" {
                @for (i, minute) in hour.iter().enumerate() {
                    (bars(i, minute, busiest))
                }
            }
            p.legend {
                "Latency, start to end: " span.key.p50 { "p50" } " " span.key.p99 { "p99" }
                " · up to " (format_ms(slowest))
            }
            svg viewBox={ "0 0 " (WIDTH) " " (LATENCY_HEIGHT) } role="img"
                aria-label="p50 and p99 latency per minute" {
                @for (class, value) in [("p50", P50), ("p99", P99)] {
                    @let points = points(hour, value, slowest);
                    polyline class=(class) points=(join(&points)) {}
                    // A lone minute draws no line: each point gets a dot.
                    @for (x, y) in points {
                        circle class=(class) cx=(x) cy=(y) r="2.5" {}
                    }
                }
            }
            p.axis { span { "an hour ago" } span { "now" } }
            }
        }
    }
}

/// One minute's stacked bars.
fn bars(i: usize, minute: &MinuteView, busiest: u32) -> Markup {
    let x = i as f64 * BAR + 1.0;
    let mut top = COUNT_HEIGHT;
    let mut parts = Vec::new();
    for (which, &count) in minute.counts.iter().enumerate() {
        let height = f64::from(count) / f64::from(busiest) * (COUNT_HEIGHT - 4.0);
        top -= height;
        parts.push((OUTCOMES[which], top, height, count));
    }
    html! {
        @for (outcome, y, height, count) in parts {
            @if count > 0 {
                rect class=(class_of(outcome)) x=(x) y=(y) width=(BAR - 2.0) height=(height) {
                    title { (count) " " (outcome) }
                }
            }
        }
    }
}

fn class_of(outcome: &str) -> &'static str {
    match outcome {
        "completed" => "ok",
        _ => "comp",
    }
}

/// Which latency a line draws.
type Pick = fn(&MinuteView) -> Option<f64>;
const P50: Pick = |m| m.p50_ms;
const P99: Pick = |m| m.p99_ms;

/// A line's points: each minute with a value, at the middle of its bar.
fn points(hour: &[MinuteView], value: Pick, top: f64) -> Vec<(String, String)> {
    hour.iter()
        .enumerate()
        .filter_map(|(i, minute)| {
            let ms = value(minute)?;
            let x = i as f64 * BAR + BAR / 2.0;
            let y = LATENCY_HEIGHT - 3.0 - ms / top * (LATENCY_HEIGHT - 8.0);
            Some((format!("{x:.1}"), format!("{y:.1}")))
        })
        .collect()
}

fn join(points: &[(String, String)]) -> String {
    points
        .iter()
        .map(|(x, y)| format!("{x},{y}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_lines_follow_the_minutes() {
        let mut hour: Vec<MinuteView> = (0..MINUTES as u64)
            .map(|i| MinuteView {
                start_ms: i * 60_000,
                counts: [0, 0],
                p50_ms: None,
                p99_ms: None,
            })
            .collect();
        hour[59] = MinuteView {
            start_ms: 59 * 60_000,
            counts: [30, 10],
            p50_ms: Some(16.0),
            p99_ms: Some(64.0),
        };
        let svg = last_hour(&hour).into_string();
        assert!(svg.contains("40 sagas finished"), "{svg}");
        assert!(svg.contains("<title>30 completed</title>"), "{svg}");
        assert!(svg.contains("<title>10 compensated</title>"), "{svg}");
        assert!(svg.contains("up to 64 ms"), "{svg}");
        // One minute with a latency: each line is one point, at the last bar's middle.
        assert!(svg.contains("points=\"714.0,"), "{svg}");
        assert!(!svg.contains("<script"), "{svg}");
        hour[59].counts = [0, 0];
        let quiet = last_hour(&hour).into_string();
        assert!(quiet.contains("No saga finished"), "{quiet}");
        assert!(!quiet.contains("<svg"), "{quiet}");
    }
}

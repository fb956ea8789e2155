//! What a run found, as operators read it: one JSON line per disagreement, or a table and a
//! summary; and the run's report as the store keeps it for the console.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use super::judge::Category;

/// Findings a report keeps (and the table prints); the counts cover them all.
pub(super) const FINDINGS_KEPT: usize = 1000;

/// One disagreement on one step of one saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Its kind (`missing_effect`, ...).
    pub category: String,
    /// The saga's id.
    pub saga: String,
    /// Its route.
    pub route: String,
    /// The client's X-Request-ID.
    pub request_id: String,
    /// The step.
    pub step: String,
    /// The step's upstream.
    pub backend: String,
    /// What the gateway's record says.
    pub expected: String,
    /// What the backend holds.
    pub actual: String,
    /// What to do about it.
    pub action: String,
}

/// A run: its window, what it checked, and what it found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run's id (a UUID v7).
    pub id: String,
    /// When it started and ended, ms since the epoch.
    pub started_ms: u64,
    /// End.
    pub finished_ms: u64,
    /// The window of finish times it checked.
    pub since_ms: u64,
    /// Its end.
    pub until_ms: u64,
    /// Finished sagas read.
    pub sagas: u64,
    /// Steps whose backend answered its status call.
    pub steps: u64,
    /// Steps without a status call in the config.
    pub steps_without_call: u64,
    /// Findings per category.
    pub counts: BTreeMap<String, u64>,
    /// The first `FINDINGS_KEPT` findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Counts a finding, and keeps it while there is room.
    pub fn add(&mut self, finding: Finding) {
        *self.counts.entry(finding.category.clone()).or_default() += 1;
        if self.findings.len() < FINDINGS_KEPT {
            self.findings.push(finding);
        }
    }

    /// How many findings of one category.
    pub fn count(&self, category: Category) -> u64 {
        self.counts.get(category.as_str()).copied().unwrap_or(0)
    }

    /// Findings other than unchecked steps: the books disagree.
    pub fn disagreements(&self) -> u64 {
        Category::ALL
            .into_iter()
            .filter(|c| *c != Category::Unchecked)
            .map(|c| self.count(c))
            .sum()
    }

    /// The summary: the window, what was checked, and the count of each category.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "reconcile {} .. {}: {} finished sagas, {} steps checked, {} without a status call\n",
            rfc3339(self.since_ms),
            rfc3339(self.until_ms),
            self.sagas,
            self.steps,
            self.steps_without_call
        );
        text.push_str(&format!("{:<22} {:>6}\n", "category", "count"));
        for category in Category::ALL {
            text.push_str(&format!(
                "{:<22} {:>6}\n",
                category.as_str(),
                self.count(category)
            ));
        }
        text
    }

    /// The findings kept, as a table (with a line for those beyond it).
    pub fn table(&self) -> String {
        let mut text = String::new();
        if self.findings.is_empty() {
            return text;
        }
        text.push_str(&format!(
            "{:<18} {:<36} {:<10} {:<10} {:<24} {}\n",
            "category", "saga", "step", "backend", "expected", "actual"
        ));
        for f in &self.findings {
            text.push_str(&format!(
                "{:<18} {:<36} {:<10} {:<10} {:<24} {}\n",
                f.category, f.saga, f.step, f.backend, f.expected, f.actual
            ));
        }
        let total: u64 = self.counts.values().sum();
        let more = total.saturating_sub(self.findings.len() as u64);
        if more > 0 {
            text.push_str(&format!(
                "... and {more} more (use --format jsonl for all)\n"
            ));
        }
        text.push('\n');
        text
    }
}

/// Writes one finding as a JSON line.
pub(super) fn write_line(out: &mut impl Write, finding: &Finding) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, finding)?;
    out.write_all(b"\n")
}

/// A time for humans: RFC 3339, UTC, to the second.
pub fn rfc3339(unix_ms: u64) -> String {
    let seconds = i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(category: Category) -> Finding {
        Finding {
            category: category.as_str().into(),
            saga: "s".into(),
            route: "r".into(),
            request_id: "q".into(),
            step: "debit".into(),
            backend: "bank".into(),
            expected: "applied".into(),
            actual: "nothing (404)".into(),
            action: category.action().into(),
        }
    }

    #[test]
    fn unchecked_steps_are_not_disagreements_and_counts_cover_what_is_not_kept() {
        let mut report = Report::default();
        report.add(finding(Category::Unchecked));
        assert_eq!(report.disagreements(), 0);
        for _ in 0..FINDINGS_KEPT + 5 {
            report.add(finding(Category::MissingEffect));
        }
        assert_eq!(report.disagreements(), FINDINGS_KEPT as u64 + 5);
        assert_eq!(report.findings.len(), FINDINGS_KEPT);
        assert!(report.table().contains("and 6 more"), "{}", report.table());
        assert!(report.summary().contains("missing_effect"));
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let mut out = Vec::new();
        write_line(&mut out, &finding(Category::AmountDiffers)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in [
            "category", "saga", "step", "backend", "expected", "actual", "action",
        ] {
            assert!(value.get(key).is_some(), "{key} in {text}");
        }
        assert_eq!(rfc3339(1_894_694_400_000), "2030-01-15T08:00:00Z");
    }
}

//! Fault injection, switched at run time through `POST /_faults` (add a rule), `GET /_faults`
//! (list) and `DELETE /_faults` (clear). Tests and the demo use it to show how the gateway behaves
//! when a backend fails before or after applying a call, is slow, or drops the connection.

use serde::{Deserialize, Serialize};

/// Most rules active at once.
pub const RULES_MAX: usize = 64;

/// What a fault does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` (503 by default) without applying anything.
    FailBefore,
    /// Apply the call, then answer `status` instead of the real answer. A retry with the same
    /// Idempotency-Key gets the real (stored) answer.
    FailAfter,
    /// Sleep `latency_ms`, then serve normally.
    Latency,
    /// Close the connection without answering, before applying anything.
    Drop,
    /// Apply the call, then close the connection without answering.
    DropAfter,
    /// Answer 200 without applying anything: a bank that acknowledges a call and loses it
    /// (`txgate reconcile` finds what it should hold and does not).
    Ack,
    /// Apply an action or try with `amount` instead of the requested amount: a bank that
    /// books a different sum than it was asked to.
    Amount,
}

/// One rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// What happens.
    pub kind: FaultKind,
    /// Only paths starting with this (default: every business path).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Chance that a matching request is hit, 0 to 1 (default 1).
    #[serde(default = "always")]
    pub probability: f64,
    /// How many requests to hit before the rule expires (default: no limit).
    #[serde(default)]
    pub count: Option<u64>,
    /// Status for `fail_before` and `fail_after` (default 503).
    #[serde(default = "unavailable")]
    pub status: u16,
    /// Delay for `latency`.
    #[serde(default)]
    pub latency_ms: u64,
    /// The amount `amount` books instead.
    #[serde(default)]
    pub amount: i64,
}

fn always() -> f64 {
    1.0
}

fn unavailable() -> u16 {
    503
}

/// The active rules, first match wins.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
}

impl Faults {
    /// Adds a rule, refusing nonsense.
    pub fn add(&mut self, rule: FaultRule) -> Result<(), String> {
        if !(0.0..=1.0).contains(&rule.probability) {
            return Err("probability must be between 0 and 1".into());
        }
        if !(100..=599).contains(&rule.status) {
            return Err("status must be an HTTP status".into());
        }
        if rule.latency_ms > 600_000 {
            return Err("latency_ms must be at most 600000".into());
        }
        if self.rules.len() >= RULES_MAX {
            return Err(format!("at most {RULES_MAX} rules"));
        }
        self.rules.push(rule);
        Ok(())
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The active rules.
    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    /// The fault to inject for a request on `path`, if any; spends one use of a counted rule.
    pub fn pick(&mut self, path: &str) -> Option<FaultRule> {
        let index = self.rules.iter().position(|rule| {
            rule.path_prefix
                .as_deref()
                .is_none_or(|prefix| path.starts_with(prefix))
                && fastrand::f64() < rule.probability
        })?;
        let rule = self.rules[index].clone();
        if let Some(count) = &mut self.rules[index].count {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.rules.remove(index);
            }
        }
        Some(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: FaultKind, count: Option<u64>, prefix: Option<&str>) -> FaultRule {
        FaultRule {
            kind,
            path_prefix: prefix.map(str::to_string),
            probability: 1.0,
            count,
            status: 503,
            latency_ms: 0,
            amount: 0,
        }
    }

    #[test]
    fn counted_rule_expires_after_its_uses() {
        let mut faults = Faults::default();
        faults
            .add(rule(FaultKind::FailBefore, Some(2), None))
            .unwrap();
        assert!(faults.pick("/debit").is_some());
        assert!(faults.pick("/debit").is_some());
        assert!(faults.pick("/debit").is_none());
    }

    #[test]
    fn rule_matches_only_its_prefix() {
        let mut faults = Faults::default();
        faults
            .add(rule(FaultKind::Drop, None, Some("/credit")))
            .unwrap();
        assert!(faults.pick("/debit").is_none());
        assert_eq!(
            faults.pick("/credit/compensate").unwrap().kind,
            FaultKind::Drop
        );
    }

    #[test]
    fn nonsense_rules_are_refused() {
        let mut faults = Faults::default();
        let mut bad = rule(FaultKind::Latency, None, None);
        bad.probability = 2.0;
        assert!(faults.add(bad).is_err());
    }
}

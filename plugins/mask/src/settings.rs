//! `[plugins.NAME.config]`: the rules, parsed and checked once per instance. A mistake is
//! reported with its key (`rules[1].path: ...`), so it names the rule.

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

use crate::maskers::{KEEP_DEFAULT, Mask};
use crate::path::Path;
use crate::walk::Rule;

/// Most rules in one config.
pub(crate) const RULES_MAX: usize = 64;
/// Largest `keep`.
pub(crate) const KEEP_MAX: usize = 64;
/// `body_bytes_max` when the config does not say: the gateway's default `max_body_bytes`.
pub(crate) const BODY_BYTES_DEFAULT: usize = 1024 * 1024;
/// Largest `body_bytes_max` accepted.
pub(crate) const BODY_BYTES_LIMIT: usize = 64 * 1024 * 1024;

/// What happens to a body that is not JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NonJson {
    /// It goes to the client unchanged.
    #[default]
    Pass,
    /// The client gets 502 problem+json instead.
    Reject,
}

/// The checked config.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The rules, in order.
    pub(crate) rules: Vec<Rule>,
    /// Whether every string is scanned for card numbers.
    pub(crate) luhn_scan: bool,
    /// What happens to a body that is not JSON.
    pub(crate) non_json: NonJson,
    /// The largest body masked; a larger one is refused (502), never passed.
    pub(crate) body_bytes_max: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    luhn_scan: bool,
    #[serde(default)]
    non_json: NonJson,
    #[serde(default = "body_bytes_default")]
    body_bytes_max: usize,
}

fn body_bytes_default() -> usize {
    BODY_BYTES_DEFAULT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: String,
    mask: MaskName,
    keep: Option<usize>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum MaskName {
    KeepLast,
    Email,
    Phone,
    Redact,
}

impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde_path_to_error names the key of a type error (`rules[2].mask: unknown variant`).
        let raw: RawSettings = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            D::Error::custom(format!("{key}: {}", e.into_inner()))
        })?;
        Self::checked(raw).map_err(D::Error::custom)
    }
}

impl Settings {
    fn checked(raw: RawSettings) -> Result<Self, String> {
        if raw.rules.len() > RULES_MAX {
            return Err(format!("rules: more than {RULES_MAX} rules"));
        }
        if !(1..=BODY_BYTES_LIMIT).contains(&raw.body_bytes_max) {
            return Err(format!(
                "body_bytes_max: must be 1 to {BODY_BYTES_LIMIT}, not {}",
                raw.body_bytes_max
            ));
        }
        let rules = raw
            .rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| rule.checked(index))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rules,
            luhn_scan: raw.luhn_scan,
            non_json: raw.non_json,
            body_bytes_max: raw.body_bytes_max,
        })
    }

    /// Whether a body may change at all: with no rule and no scan, only `non_json` acts.
    pub(crate) fn masks(&self) -> bool {
        !self.rules.is_empty() || self.luhn_scan
    }
}

impl RawRule {
    fn checked(self, index: usize) -> Result<Rule, String> {
        let path = Path::parse(&self.path).map_err(|why| format!("rules[{index}].path: {why}"))?;
        let mask = match (self.mask, self.keep) {
            (MaskName::KeepLast, keep) => {
                let keep = keep.unwrap_or(KEEP_DEFAULT);
                if keep > KEEP_MAX {
                    return Err(format!(
                        "rules[{index}].keep: must be 0 to {KEEP_MAX}, not {keep}"
                    ));
                }
                Mask::KeepLast(keep)
            }
            (_, Some(_)) => {
                return Err(format!(
                    "rules[{index}].keep: only a keep_last rule takes `keep`"
                ));
            }
            (MaskName::Email, None) => Mask::Email,
            (MaskName::Phone, None) => Mask::Phone,
            (MaskName::Redact, None) => Mask::Redact,
        };
        Ok(Rule { path, mask })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::serde_json::{self, json};

    fn parse(config: serde_json::Value) -> Result<Settings, String> {
        serde_json::from_value(config).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let settings = parse(json!({})).unwrap();
        assert!(settings.rules.is_empty());
        assert!(!settings.luhn_scan);
        assert_eq!(settings.non_json, NonJson::Pass);
        assert_eq!(settings.body_bytes_max, BODY_BYTES_DEFAULT);
        assert!(!settings.masks());
        let settings = parse(json!({"rules": [{"path": "$.a", "mask": "keep_last"}]})).unwrap();
        assert_eq!(settings.rules[0].mask, Mask::KeepLast(4));
    }

    #[test]
    fn every_mistake_names_its_key() {
        for (config, key) in [
            (
                json!({"rules": [{"path": "$.a", "mask": "redact"}, {"path": "$.a[", "mask": "redact"}]}),
                "rules[1].path: `[` at character 3 is never closed",
            ),
            (
                json!({"rules": [{"path": "$.a", "mask": "hide"}]}),
                "rules[0].mask: unknown variant `hide`",
            ),
            (
                json!({"rules": [{"mask": "redact"}]}),
                "rules[0]: missing field `path`",
            ),
            (
                json!({"rules": [{"path": "$.a", "mask": "email", "keep": 2}]}),
                "rules[0].keep: only a keep_last rule takes `keep`",
            ),
            (
                json!({"rules": [{"path": "$.a", "mask": "keep_last", "keep": 65}]}),
                "rules[0].keep: must be 0 to 64, not 65",
            ),
            (
                json!({"rules": [{"path": "$.a", "mask": "redact", "kep": 1}]}),
                "rules[0].kep: unknown field `kep`",
            ),
            (json!({"luhn": true}), "unknown field `luhn`"),
            (
                json!({"non_json": "drop"}),
                "non_json: unknown variant `drop`",
            ),
            (json!({"body_bytes_max": 0}), "body_bytes_max: must be 1 to"),
        ] {
            let error = parse(config).unwrap_err();
            assert!(error.contains(key), "expected `{key}` in `{error}`");
        }
        let many: Vec<_> = (0..65)
            .map(|_| json!({"path": "$", "mask": "redact"}))
            .collect();
        assert!(
            parse(json!({ "rules": many }))
                .unwrap_err()
                .contains("more than 64")
        );
    }
}

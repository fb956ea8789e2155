//! Reading a config file and turning every mistake into a [`ConfigIssue`] that names its key.
//!
//! serde stops at the first error, so each table (`server`, `store`, every upstream, plugin and
//! route) is deserialised on its own: one run of `txgate check` reports a mistake in each of them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::{Config, PluginConfig, RouteConfig, StoreConfig, UpstreamConfig, validate};
use crate::error::Error;

/// Largest config file read; a config is a few kilobytes, a huge file is a mistake.
const CONFIG_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// One mistake in a config file: the key path (`upstreams.bank_a.timeout_ms`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, with `[i]` for array entries; empty for the file as a whole.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigIssue {
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.key, self.reason)
        }
    }
}

/// Reads, parses and validates a config file. Every issue found is returned at once.
pub fn load(path: &Path) -> Result<Config, Error> {
    let fail = |issues: Vec<ConfigIssue>| Error::config(path, issues);
    let text = read_text(path).map_err(|reason| fail(vec![ConfigIssue::new("", reason)]))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail(vec![ConfigIssue::new("", syntax_reason(&text, &e))]))?;
    let (mut config, mut issues) = parse_table(table);
    config.path = path.to_path_buf();
    config.base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    // Tables that failed to parse are still "defined": references to them are not reported twice.
    let broken: Vec<String> = issues.iter().map(|i| i.key.clone()).collect();
    issues.extend(validate::validate(&config, &broken));
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(fail(issues))
    }
}

fn read_text(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if meta.len() > CONFIG_BYTES_MAX {
        return Err(format!(
            "the file is {} bytes; the limit is {CONFIG_BYTES_MAX}",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read the file: {e}"))
}

/// Parses TOML text into a [`Config`], without the cross-reference checks.
#[cfg(test)]
pub(crate) fn parse(text: &str) -> Result<Config, Vec<ConfigIssue>> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| vec![ConfigIssue::new("", syntax_reason(text, &e))])?;
    match parse_table(table) {
        (config, issues) if issues.is_empty() => Ok(config),
        (_, issues) => Err(issues),
    }
}

/// Parses and validates TOML text as `load` does, minus the file (property tests).
#[cfg(test)]
pub(crate) fn check_text(text: &str) -> Result<Config, Vec<ConfigIssue>> {
    let config = parse(text)?;
    let issues = validate::validate(&config, &[]);
    if issues.is_empty() {
        Ok(config)
    } else {
        Err(issues)
    }
}

/// Deserialises each table on its own; broken tables are left out of the config and reported.
fn parse_table(table: toml::Table) -> (Config, Vec<ConfigIssue>) {
    let mut issues = Vec::new();
    let mut config = Config::default();
    for (key, value) in table {
        match key.as_str() {
            "server" => config.server = section(&key, value, &mut issues).unwrap_or_default(),
            "store" => {
                config.store = section::<StoreConfig>(&key, value, &mut issues).unwrap_or_default();
            }
            "upstreams" => config.upstreams = named::<UpstreamConfig>(&key, value, &mut issues),
            "plugins" => config.plugins = named::<PluginConfig>(&key, value, &mut issues),
            "routes" => config.routes = routes(value, &mut issues),
            "audit" => config.audit = section(&key, value, &mut issues).unwrap_or_default(),
            _ => issues.push(ConfigIssue::new(
                key,
                "unknown key, expected one of `server`, `store`, `upstreams`, `plugins`, \
                 `routes`, `audit`",
            )),
        }
    }
    (config, issues)
}

fn syntax_reason(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    }
}

/// Deserialises one table, recording an issue (with the full key path) on failure.
fn section<T: DeserializeOwned>(
    prefix: &str,
    value: toml::Value,
    issues: &mut Vec<ConfigIssue>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            let inner = error.path().to_string();
            let key = if inner == "." || inner.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{inner}")
            };
            issues.push(ConfigIssue::new(
                key,
                clean_reason(&error.inner().to_string()),
            ));
            None
        }
    }
}

fn named<T: DeserializeOwned>(
    prefix: &str,
    value: toml::Value,
    issues: &mut Vec<ConfigIssue>,
) -> BTreeMap<String, T> {
    let toml::Value::Table(table) = value else {
        issues.push(ConfigIssue::new(prefix, "expected a table"));
        return BTreeMap::new();
    };
    table
        .into_iter()
        .filter_map(|(name, value)| {
            let parsed = section(&format!("{prefix}.{name}"), value, issues)?;
            Some((name, parsed))
        })
        .collect()
}

fn routes(value: toml::Value, issues: &mut Vec<ConfigIssue>) -> Vec<RouteConfig> {
    let toml::Value::Array(entries) = value else {
        issues.push(ConfigIssue::new(
            "routes",
            "expected an array of tables ([[routes]])",
        ));
        return Vec::new();
    };
    entries
        .into_iter()
        .enumerate()
        .filter_map(|(i, value)| section(&format!("routes[{i}]"), value, issues))
        .collect()
}

/// serde's messages for `toml::Value` end with an "in `path`" line that repeats our key path.
fn clean_reason(message: &str) -> String {
    message
        .lines()
        .filter(|line| !line.starts_with("in `"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_its_full_path() {
        let issues = parse("[upstreams.a]\nurl = \"http://x\"\ntimeout_msx = 3\n").unwrap_err();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].key, "upstreams.a.timeout_msx");
        assert!(issues[0].reason.contains("unknown field"), "{}", issues[0]);
    }

    #[test]
    fn every_broken_table_is_reported() {
        let text = "[server]\nlisten = 3\n[store]\ndirx = \"d\"\n[[routes]]\nname = 1\n";
        let issues = parse(text).unwrap_err();
        let keys: Vec<_> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["routes[0].name", "server.listen", "store.dirx"]);
    }

    #[test]
    fn syntax_error_gives_line_and_column() {
        let issues = parse("[server]\nlisten = [\n").unwrap_err();
        assert!(issues[0].reason.contains("line 2"), "{}", issues[0]);
    }

    #[test]
    fn defaults_fill_an_empty_file() {
        let config = parse("").unwrap();
        assert_eq!(config.server.max_body_bytes, 1_048_576);
        assert_eq!(config.store.retention_secs, 86_400);
    }
}

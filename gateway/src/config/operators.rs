//! `[[server.admin_tokens]]`: named operators and what each may do (SPEC §2, §6).
//!
//! Every operator action is recorded under the operator's name, so a name must say who it is:
//! names are unique, tokens are unique (two people sharing one token are one operator to the
//! gateway), and `admin` is taken by `admin_token` when that is set.

use std::collections::HashSet;

use serde::Deserialize;

use super::ServerConfig;

/// The operator `admin_token` acts as.
pub const ADMIN_OPERATOR: &str = "admin";
/// The longest operator name: it is shown in timelines and audit lines.
const OPERATOR_NAME_CHARS_MAX: usize = 64;
/// Named operators one gateway accepts.
const OPERATORS_MAX: usize = 256;

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Look only: every call that changes something gets 403.
    Read,
    /// Also retry, resolve, abort and reload.
    Operate,
}

impl Role {
    /// The role's name, as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
        }
    }
}

/// One `[[server.admin_tokens]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenConfig {
    /// Who this is, as recorded with every action.
    pub name: String,
    /// The bearer token itself.
    #[serde(default)]
    pub token: Option<String>,
    /// Or the environment variable holding it (kept out of the file).
    #[serde(default)]
    pub token_env: Option<String>,
    /// `read` or `operate`.
    pub role: Role,
}

impl AdminTokenConfig {
    /// The token, from the file or the environment; `Err` says why there is none.
    pub fn secret(&self) -> Result<String, (&'static str, String)> {
        match (&self.token, &self.token_env) {
            (Some(token), None) => Ok(token.clone()),
            (None, Some(var)) => match std::env::var(var) {
                Ok(token) if !token.is_empty() => Ok(token),
                _ => Err((
                    "token_env",
                    format!("the environment variable `{var}` is not set"),
                )),
            },
            (Some(_), Some(_)) => Err(("token", "give `token` or `token_env`, not both".into())),
            (None, None) => Err(("token", "missing: give `token` or `token_env`".into())),
        }
    }
}

/// Checks the named operators; returns (key, reason) for each problem. `strength` judges a
/// token as it judges `admin_token`.
pub(super) fn check(
    server: &ServerConfig,
    strength: impl Fn(&str) -> Result<(), String>,
) -> Vec<(String, String)> {
    let mut issues = Vec::new();
    if server.admin_tokens.len() > OPERATORS_MAX {
        let reason = format!("at most {OPERATORS_MAX} operators");
        issues.push(("server.admin_tokens".to_string(), reason));
    }
    let mut names = HashSet::new();
    let mut tokens = HashSet::new();
    if !server.admin_token.is_empty() {
        names.insert(ADMIN_OPERATOR.to_string());
        tokens.insert(server.admin_token.clone());
    }
    for (i, operator) in server.admin_tokens.iter().enumerate() {
        let key = format!("server.admin_tokens[{i}]");
        if let Err(reason) = name_shape(&operator.name) {
            issues.push((format!("{key}.name"), reason));
        } else if !names.insert(operator.name.clone()) {
            let reason = format!(
                "the operator `{}` is named twice (`admin` is admin_token's)",
                operator.name
            );
            issues.push((format!("{key}.name"), reason));
        }
        match operator.secret() {
            Err((field, reason)) => issues.push((format!("{key}.{field}"), reason)),
            Ok(token) => {
                let field = if operator.token.is_some() {
                    "token"
                } else {
                    "token_env"
                };
                if token.is_empty() {
                    issues.push((format!("{key}.{field}"), "must not be empty".into()));
                } else if let Err(reason) = strength(&token) {
                    issues.push((format!("{key}.{field}"), reason));
                } else if !tokens.insert(token) {
                    let reason = "the same token as another operator: each operator needs its own";
                    issues.push((format!("{key}.{field}"), reason.into()));
                }
            }
        }
    }
    issues
}

fn name_shape(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > OPERATOR_NAME_CHARS_MAX || !name.chars().all(allowed) {
        return Err(format!(
            "must be 1 to {OPERATOR_NAME_CHARS_MAX} letters, digits, `.`, `_`, `-` or `@`"
        ));
    }
    Ok(())
}

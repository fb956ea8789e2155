//! Who is calling the admin API: the operator a bearer token names, and what its role allows.
//!
//! Every configured token is compared in constant time, and all of them every time, so the
//! time an answer takes says nothing about which token came close.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, header};
use subtle::{Choice, ConstantTimeEq};

use crate::config::{ADMIN_OPERATOR, Role, ServerConfig};
use crate::error::{Error, ErrorKind};

/// The operator behind an admin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The name recorded with its actions.
    pub name: Arc<str>,
    /// What it may do.
    pub role: Role,
}

impl Operator {
    /// Refuses a `read` operator a call that changes something (403).
    pub fn may_operate(&self, what: &str) -> Result<(), Error> {
        match self.role {
            Role::Operate => Ok(()),
            Role::Read => Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "the operator `{}` has the read role, which cannot {what}",
                    self.name
                ),
            )),
        }
    }
}

/// The operators an admin listener accepts.
#[derive(Debug)]
pub struct Operators {
    /// `Authorization` values, each with its operator; empty: no token is needed.
    known: Vec<(Vec<u8>, Operator)>,
}

impl Operators {
    /// From `[server]`: `admin_token` is the operator `admin`; each of `admin_tokens` is its own.
    /// A token whose environment variable is gone is left out (validation names it).
    pub fn of(server: &ServerConfig) -> Self {
        let mut known = Vec::new();
        if !server.admin_token.is_empty() {
            known.push((
                bearer(&server.admin_token),
                Operator {
                    name: Arc::from(ADMIN_OPERATOR),
                    role: Role::Operate,
                },
            ));
        }
        for entry in &server.admin_tokens {
            if let Ok(token) = entry.secret() {
                let operator = Operator {
                    name: Arc::from(entry.name.as_str()),
                    role: entry.role,
                };
                known.push((bearer(&token), operator));
            }
        }
        Self { known }
    }

    /// Whether a token is needed at all (none configured: loopback only, by validation).
    pub fn open(&self) -> bool {
        self.known.is_empty()
    }

    /// The operator the request's token names; 401 for a missing or wrong one. With no token
    /// configured, every caller is `admin`.
    pub fn identify(&self, headers: &HeaderMap) -> Result<Operator, Error> {
        if self.open() {
            return Ok(Operator {
                name: Arc::from(ADMIN_OPERATOR),
                role: Role::Operate,
            });
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .map_or(&b""[..], HeaderValue::as_bytes);
        let mut found = None;
        for (expected, operator) in &self.known {
            let matched: Choice = given.ct_eq(expected);
            if bool::from(matched) {
                found = Some(operator);
            }
        }
        found.cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::Unauthorized,
                "this admin call needs Authorization: Bearer <token> of an operator",
            )
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
        })
    }
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AdminTokenConfig;

    fn headers(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[test]
    fn each_token_names_its_operator_and_role() {
        let server = ServerConfig {
            admin_token: "root-0123456789abcdef".into(),
            admin_tokens: vec![AdminTokenConfig {
                name: "bob".into(),
                token: Some("bob-0123456789abcdef".into()),
                token_env: None,
                role: Role::Read,
            }],
            ..ServerConfig::default()
        };
        let operators = Operators::of(&server);
        let admin = operators
            .identify(&headers("root-0123456789abcdef"))
            .unwrap();
        assert_eq!((&*admin.name, admin.role), ("admin", Role::Operate));
        let bob = operators
            .identify(&headers("bob-0123456789abcdef"))
            .unwrap();
        assert_eq!((&*bob.name, bob.role), ("bob", Role::Read));
        assert!(bob.may_operate("retry").is_err());
        assert!(admin.may_operate("retry").is_ok());
        for wrong in ["bob-0123456789abcde", "", "root-0123456789abcdefx"] {
            let error = operators.identify(&headers(wrong)).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Unauthorized, "{wrong:?}");
        }
        assert!(operators.identify(&HeaderMap::new()).is_err());
    }

    #[test]
    fn with_no_token_every_caller_is_admin() {
        let operators = Operators::of(&ServerConfig::default());
        let anyone = operators.identify(&HeaderMap::new()).unwrap();
        assert_eq!((&*anyone.name, anyone.role), ("admin", Role::Operate));
    }
}

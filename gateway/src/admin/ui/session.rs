//! Console sessions: a sign-in with an operator's token gives a random session id, kept in an
//! `HttpOnly`, `SameSite=Strict` cookie, and an anti-CSRF token every form carries.
//!
//! Sessions live in memory, bounded, and end after [`SESSION_TTL`]: a restart signs everyone
//! out, which is the safe side. The token itself is never kept: only the operator it named.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use subtle::ConstantTimeEq;

use super::super::Operator;

/// The cookie's name.
pub(super) const COOKIE: &str = "txgate_session";
/// How long a sign-in lasts.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at once; a sign-in past that drops the expired ones, then is refused.
const SESSIONS_MAX: usize = 4096;

/// A signed-in operator.
#[derive(Debug, Clone)]
pub(super) struct Session {
    /// Who.
    pub(super) operator: Operator,
    /// What every form of this session must carry back.
    pub(super) csrf: String,
    expires: Instant,
}

impl Session {
    /// Whether `given` is this session's anti-CSRF token (compared in constant time).
    pub(super) fn csrf_matches(&self, given: &str) -> bool {
        bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// The console's sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    live: DashMap<String, Session>,
}

impl Sessions {
    /// A new session for `operator`; its id, or `None` when too many are open.
    pub(super) fn open(&self, operator: Operator) -> Option<String> {
        if self.live.len() >= SESSIONS_MAX {
            let now = Instant::now();
            self.live.retain(|_, session| session.expires > now);
            if self.live.len() >= SESSIONS_MAX {
                return None;
            }
        }
        let id = random_hex();
        let session = Session {
            operator,
            csrf: random_hex(),
            expires: Instant::now() + SESSION_TTL,
        };
        self.live.insert(id.clone(), session);
        Some(id)
    }

    /// The live session with this id.
    pub(super) fn get(&self, id: &str) -> Option<Session> {
        let session = self.live.get(id)?.clone();
        if session.expires <= Instant::now() {
            self.live.remove(id);
            return None;
        }
        Some(session)
    }

    /// Ends a session.
    pub(super) fn close(&self, id: &str) {
        self.live.remove(id);
    }
}

/// 32 random bytes from the operating system, in hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Role;

    #[test]
    fn a_session_names_its_operator_and_checks_its_own_csrf_token() {
        let sessions = Sessions::default();
        let operator = Operator {
            name: Arc::from("alice"),
            role: Role::Read,
        };
        let id = sessions.open(operator.clone()).unwrap();
        let other = sessions.open(operator).unwrap();
        assert_ne!(id, other);
        let session = sessions.get(&id).unwrap();
        assert_eq!(&*session.operator.name, "alice");
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(&sessions.get(&other).unwrap().csrf));
        assert!(!session.csrf_matches(""));
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }
}

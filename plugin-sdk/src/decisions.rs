//! Decisions the gateway may reuse (`txgate:plugin@0.2.2`). A plugin whose `on_request` decision
//! to continue depends only on its config, the route and a few request headers says so
//! ([`reuse`]), and the gateway applies the same header changes to later requests of the route
//! with the same values of those headers, without calling the plugin: an identity check that
//! reads only the `authorization` header then costs a lookup in the gateway for a token it has
//! already let through. Since 0.2.3, [`reuse_response`] says the same of the changes an
//! `on_response` call returns when they do not depend on the response (a header every response
//! gets, an origin echoed from a request header).
//!
//! Declare only what holds. A reused decision is given as it was returned: nothing else the
//! call did (key-value writes, logs) happens again. The gateway ignores [`reuse`] when the call
//! answers the request, fails or emits an audit event, and in any hook but `on_request`; it
//! ignores [`reuse_response`] when the call fails, emits an audit event or returns a new body,
//! and in any hook but `on_response`. A reload forgets every reused decision.

use crate::Hook;
#[cfg(target_arch = "wasm32")]
use crate::guest::bindings::txgate::plugin as wit;

/// Most header names a decision may vary on.
pub const VARY_MAX: usize = 8;
/// Longest time a decision may be reused: one hour.
pub const TTL_MS_MAX: u64 = 3_600_000;

/// Why a declaration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReuseError {
    /// More than [`VARY_MAX`] names, or a name that is empty, over 64 bytes or not a lower-case
    /// header name.
    InvalidVary,
    /// The time is 0 or over [`TTL_MS_MAX`].
    InvalidTtl,
}

impl std::fmt::Display for ReuseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidVary => write!(
                f,
                "a decision varies on at most {VARY_MAX} lower-case header names"
            ),
            Self::InvalidTtl => write!(f, "a decision is reused for 1 to {TTL_MS_MAX} ms"),
        }
    }
}

impl std::error::Error for ReuseError {}

/// Declares, in `on_request`, that the `Continue` this call returns depends only on the plugin's
/// config, the route and the request headers named in `vary`, and stays right for `ttl_ms`.
pub fn reuse(vary: &[&str], ttl_ms: u64) -> Result<(), ReuseError> {
    declare(Hook::OnRequest, vary, ttl_ms)
}

/// Declares, in `on_response`, that the changes this call returns depend only on the plugin's
/// config, the route and the request headers named in `vary` (as the request went upstream),
/// not on the response, and stay right for `ttl_ms`. Since `txgate:plugin@0.2.3`.
pub fn reuse_response(vary: &[&str], ttl_ms: u64) -> Result<(), ReuseError> {
    declare(Hook::OnResponse, vary, ttl_ms)
}

/// A declaration for `hook`'s result, checked here first.
fn declare(hook: Hook, vary: &[&str], ttl_ms: u64) -> Result<(), ReuseError> {
    check(vary, ttl_ms)?;
    #[cfg(target_arch = "wasm32")]
    {
        let vary: Vec<String> = vary.iter().map(|name| name.to_string()).collect();
        let declared = match hook {
            Hook::OnResponse => wit::decisions::reuse_response(&vary, ttl_ms),
            _ => wit::decisions::reuse(&vary, ttl_ms),
        };
        declared.map_err(|error| match error {
            wit::decisions::ReuseError::InvalidVary => ReuseError::InvalidVary,
            wit::decisions::ReuseError::InvalidTtl => ReuseError::InvalidTtl,
        })
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::with_host(|host| host.declare_reuse(hook, vary, ttl_ms));
        Ok(())
    }
}

/// The gateway's rules, checked here too so a plugin's unit tests see the same refusals.
fn check(vary: &[&str], ttl_ms: u64) -> Result<(), ReuseError> {
    if ttl_ms == 0 || ttl_ms > TTL_MS_MAX {
        return Err(ReuseError::InvalidTtl);
    }
    if vary.len() > VARY_MAX || !vary.iter().all(|name| valid_name(name)) {
        return Err(ReuseError::InvalidVary);
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_!#$%&'*+.^`|~".contains(&b)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_rules_are_checked_before_the_call() {
        assert_eq!(
            reuse(&["Authorization"], 1000),
            Err(ReuseError::InvalidVary)
        );
        assert_eq!(reuse(&[""], 1000), Err(ReuseError::InvalidVary));
        assert_eq!(reuse(&["a"; 9], 1000), Err(ReuseError::InvalidVary));
        assert_eq!(reuse(&["authorization"], 0), Err(ReuseError::InvalidTtl));
        assert_eq!(
            reuse(&["authorization"], TTL_MS_MAX + 1),
            Err(ReuseError::InvalidTtl)
        );
        assert_eq!(
            reuse_response(&["Origin"], 1000),
            Err(ReuseError::InvalidVary)
        );
        assert_eq!(reuse_response(&[], 0), Err(ReuseError::InvalidTtl));
    }
}

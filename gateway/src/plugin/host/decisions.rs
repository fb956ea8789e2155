//! `txgate:plugin/decisions`: a plugin declares that its `on-request` decision, or its
//! `on-response` changes, depend only on a few request headers, for a while. The declaration is
//! kept for the call under way; the chain takes it with the call's result and remembers both
//! (`reuse.rs`). Each hook takes only its own kind: one made in the other hook is ignored.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use crate::plugin::bindings::txgate::plugin::decisions::{Host, ReuseError};
use crate::plugin::reuse::Reuse;
use crate::plugin::state::HostState;

/// Most header names a decision may vary on.
const VARY_MAX: usize = 8;
/// Longest header name.
const NAME_BYTES_MAX: usize = 64;
/// Longest time a decision may be reused.
const TTL_MS_MAX: u64 = 3_600_000;

// With `reuse_decisions = false` a declaration is still checked (the plugin learns of its
// mistakes either way), then dropped: the chain finds nothing to remember.
impl Host for HostState {
    fn reuse(&mut self, vary: Vec<String>, ttl_ms: u64) -> Result<(), ReuseError> {
        let reuse = declared(&vary, ttl_ms)?;
        self.reuse = self.shared.reuse_decisions.then_some(reuse);
        Ok(())
    }

    fn reuse_response(&mut self, vary: Vec<String>, ttl_ms: u64) -> Result<(), ReuseError> {
        let reuse = declared(&vary, ttl_ms)?;
        self.reuse_response = self.shared.reuse_decisions.then_some(reuse);
        Ok(())
    }
}

/// A declaration, checked.
fn declared(vary: &[String], ttl_ms: u64) -> Result<Reuse, ReuseError> {
    if ttl_ms == 0 || ttl_ms > TTL_MS_MAX {
        return Err(ReuseError::InvalidTtl);
    }
    if vary.len() > VARY_MAX {
        return Err(ReuseError::InvalidVary);
    }
    let names = vary
        .iter()
        .map(|name| header_name(name))
        .collect::<Option<Arc<[HeaderName]>>>()
        .ok_or(ReuseError::InvalidVary)?;
    Ok(Reuse {
        vary: names,
        ttl: Duration::from_millis(ttl_ms),
    })
}

fn header_name(name: &str) -> Option<HeaderName> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return None;
    }
    HeaderName::from_lowercase(name.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::header_name;

    #[test]
    fn names_are_short_lower_case_header_names() {
        assert!(header_name("authorization").is_some());
        assert!(header_name("x-api-key").is_some());
        assert!(header_name("Authorization").is_none());
        assert!(header_name("").is_none());
        assert!(header_name("a b").is_none());
        assert!(header_name(&"a".repeat(65)).is_none());
    }
}

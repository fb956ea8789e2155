//! Tokens this instance has already verified, so a client presenting the same token again costs
//! a hash and a lookup instead of a signature check (in wasm32, RSA and P-256 checks cost
//! milliseconds; a client keeps its token for minutes).
//!
//! What is kept is only what does not depend on the time: the signature, issuer and audience
//! held, and the claims they vouch for. `exp` and `nbf` are checked at every request against the
//! gateway's clock, so a cached token expires exactly when an uncached one would. The key is the
//! whole token as sent, compared in full (a hash only finds the slot): a token differing in any
//! byte (another signature, another header) is a different entry, and is verified in full. No
//! cryptographic hash is needed for that, and a SHA-256 of each token costs in wasm32 (about
//! 4 µs per RS256 token across two runs of `bench/plugins.sh`). Only verified tokens enter, so a
//! client cannot fill the cache with forgeries; it is bounded in entries and bytes, the oldest
//! entry leaving first. The cache belongs to the settings it was verified under (one plugin
//! instance's): a reload (new keys, new issuer) gives the route new instances and new settings,
//! so nothing verified under old settings survives it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::claims::Claims;

/// Most bytes of tokens the cache accounts for (each entry counts its token's length): a bound on
/// its memory inside the instance whatever the tokens' size.
pub(crate) const CACHE_BYTES_MAX: usize = 1024 * 1024;

/// The verified tokens of one settings version. It lives in [`crate::settings::Settings`], so it
/// goes with the settings it was verified under.
pub(crate) struct Verified {
    entries_max: usize,
    // A wasm instance runs one call at a time: the lock is never contended.
    cache: Mutex<Cache>,
}

/// Entries by token (std's SipHash with random keys: a client cannot aim tokens at one
/// bucket), and their insertion order for eviction.
#[derive(Default)]
struct Cache {
    entries: HashMap<Arc<str>, Arc<Claims>>,
    order: VecDeque<Arc<str>>,
    bytes: usize,
}

impl Verified {
    /// A cache of at most `entries_max` tokens (0: keeps nothing).
    pub(crate) fn new(entries_max: usize) -> Self {
        Self {
            entries_max,
            cache: Mutex::new(Cache::default()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic cannot leave the cache half-changed in a way that matters: recover it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether verified tokens are remembered at all (`verified_tokens_max` above 0).
    pub(crate) fn remembers(&self) -> bool {
        self.entries_max > 0
    }

    /// The claims of `token` when it was verified before.
    pub(crate) fn get(&self, token: &str) -> Option<Arc<Claims>> {
        if self.entries_max == 0 {
            return None;
        }
        self.cache().entries.get(token).cloned()
    }

    /// Keeps `claims` as what `token` verified to, the oldest entries leaving to make room.
    pub(crate) fn put(&self, token: &str, claims: Arc<Claims>) {
        let cost = token.len();
        if self.entries_max == 0 || cost > CACHE_BYTES_MAX {
            return;
        }
        let mut cache = self.cache();
        if cache.entries.contains_key(token) {
            return;
        }
        while cache.entries.len() >= self.entries_max || cache.bytes + cost > CACHE_BYTES_MAX {
            let Some(oldest) = cache.order.pop_front() else {
                break;
            };
            if cache.entries.remove(&oldest).is_some() {
                cache.bytes -= oldest.len();
            }
        }
        let key: Arc<str> = Arc::from(token);
        cache.entries.insert(key.clone(), claims);
        cache.order.push_back(key);
        cache.bytes += cost;
    }

    /// How many tokens are kept, and their bytes.
    #[cfg(test)]
    pub(crate) fn size(&self) -> (usize, usize) {
        let cache = self.cache();
        (cache.entries.len(), cache.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str) -> Arc<Claims> {
        let mut claims = Claims::new();
        claims.insert("sub".into(), sub.into());
        Arc::new(claims)
    }

    #[test]
    fn a_kept_token_is_found_and_any_other_byte_string_is_not() {
        let verified = Verified::new(8);
        verified.put("a.b.c", claims("alice"));
        assert_eq!(verified.get("a.b.c").unwrap()["sub"], "alice");
        assert!(verified.get("a.b.d").is_none());
        assert!(verified.get("a.b.c ").is_none());
    }

    #[test]
    fn the_oldest_entry_leaves_first_when_the_cache_is_full() {
        let verified = Verified::new(3);
        for n in 0..5 {
            verified.put(&format!("t.{n}.s"), claims(&n.to_string()));
        }
        assert_eq!(verified.size().0, 3);
        assert!(verified.get("t.0.s").is_none());
        assert!(verified.get("t.1.s").is_none());
        assert_eq!(verified.get("t.4.s").unwrap()["sub"], "4");
    }

    #[test]
    fn the_cache_holds_at_most_its_bytes_and_nothing_when_off() {
        let verified = Verified::new(100);
        let big = "x".repeat(CACHE_BYTES_MAX / 3 + 1);
        for n in 0..4 {
            verified.put(&format!("{big}{n}"), claims("big"));
        }
        let (entries, bytes) = verified.size();
        assert_eq!(entries, 2);
        assert!(bytes <= CACHE_BYTES_MAX);
        let off = Verified::new(0);
        off.put("off.token.sig", claims("off"));
        assert!(off.get("off.token.sig").is_none());
    }
}

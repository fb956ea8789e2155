//! Quotas: how many keys and how many bytes (keys plus values) a namespace may hold. Every
//! plugin has one for its durable keys and one for its volatile keys; the sagas have one too.
//! A write that would take a namespace past either limit is refused with `limit-reached`; one
//! that shrinks it is always allowed, so a full namespace can still be cleaned up.

use super::StoreError;

/// The limits of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Most keys.
    pub keys_max: u64,
    /// Most bytes, keys plus values.
    pub bytes_max: u64,
}

impl Quota {
    /// No practical limit (namespaces nobody configured, such as a removed plugin's).
    pub const UNLIMITED: Self = Self {
        keys_max: u64::MAX,
        bytes_max: u64::MAX,
    };
}

/// What a namespace holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Usage {
    /// Keys.
    pub(super) keys: u64,
    /// Bytes, keys plus values.
    pub(super) bytes: u64,
}

/// A change to a namespace's usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Delta {
    /// Keys added (negative: removed).
    pub(super) keys: i64,
    /// Bytes added (negative: freed).
    pub(super) bytes: i64,
}

impl Delta {
    /// The change from an entry of `old` bytes (`None`: absent) to one of `new` bytes.
    pub(super) fn between(old: Option<usize>, new: Option<usize>) -> Self {
        let size = |s: Option<usize>| s.map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
        Self {
            keys: i64::from(new.is_some()) - i64::from(old.is_some()),
            bytes: size(new) - size(old),
        }
    }

    /// Adds another delta.
    pub(super) fn add(&mut self, other: Self) {
        self.keys += other.keys;
        self.bytes += other.bytes;
    }
}

impl Usage {
    /// The usage after `delta`.
    pub(super) fn after(self, delta: Delta) -> Self {
        let moved = |value: u64, by: i64| value.saturating_add_signed(by);
        Self {
            keys: moved(self.keys, delta.keys),
            bytes: moved(self.bytes, delta.bytes),
        }
    }

    /// Refuses `delta` when it grows the namespace past its quota.
    pub(super) fn admit(
        self,
        delta: Delta,
        quota: Quota,
        namespace: &str,
    ) -> Result<(), StoreError> {
        let after = self.after(delta);
        let refuse = |what, limit| {
            Err(StoreError::LimitReached {
                namespace: namespace.to_string(),
                what,
                limit,
            })
        };
        if delta.keys > 0 && after.keys > quota.keys_max {
            return refuse("keys", quota.keys_max);
        }
        if delta.bytes > 0 && after.bytes > quota.bytes_max {
            return refuse("bytes", quota.bytes_max);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: Quota = Quota {
        keys_max: 2,
        bytes_max: 100,
    };

    #[test]
    fn growth_past_either_limit_is_refused() {
        let usage = Usage { keys: 2, bytes: 10 };
        let new_key = Delta::between(None, Some(5));
        assert!(matches!(
            usage.admit(new_key, QUOTA, "p"),
            Err(StoreError::LimitReached { what: "keys", .. })
        ));
        let usage = Usage { keys: 1, bytes: 90 };
        let bigger = Delta::between(Some(5), Some(20));
        assert!(matches!(
            usage.admit(bigger, QUOTA, "p"),
            Err(StoreError::LimitReached { what: "bytes", .. })
        ));
    }

    #[test]
    fn shrinking_a_full_namespace_is_always_allowed() {
        let full = Usage {
            keys: 2,
            bytes: 150,
        };
        assert!(
            full.admit(Delta::between(Some(80), None), QUOTA, "p")
                .is_ok()
        );
        assert!(
            full.admit(Delta::between(Some(80), Some(10)), QUOTA, "p")
                .is_ok()
        );
        assert_eq!(
            full.after(Delta::between(Some(80), None)),
            Usage { keys: 1, bytes: 70 }
        );
    }
}

//! Volatile plugin keys: a dashmap in memory, gone with the process. Each mutation is applied
//! atomically under its key's shard lock; each namespace's usage is checked against its quota
//! in the same step, so a plugin that floods new keys gets `limit-reached`, not the gateway's
//! memory. Expired keys read as absent and are swept periodically.

use std::cell::RefCell;
use std::sync::Mutex;

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::quota::{Delta, Quota, Usage};
use super::{Applied, Mutation, StoreError, apply};

#[derive(Debug, Clone)]
struct Value {
    bytes: Bytes,
    expires_at_ms: Option<u64>,
}

impl Value {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now_ms)
    }
}

/// A namespace and a key in one: the namespace's length (four bytes), the namespace, the key.
/// One allocation per key kept, and none per lookup ([`with_key`]).
type Key = Box<[u8]>;

thread_local! {
    /// The key of a lookup or an update, made again for each one.
    static LOOKUP: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the map key of `key` in `namespace`, made in this thread's buffer.
fn with_key<T>(namespace: &str, key: &str, f: impl FnOnce(&[u8]) -> T) -> T {
    LOOKUP.with_borrow_mut(|buffer| {
        buffer.clear();
        let length = u32::try_from(namespace.len()).unwrap_or(u32::MAX);
        buffer.extend_from_slice(&length.to_le_bytes());
        buffer.extend_from_slice(namespace.as_bytes());
        buffer.extend_from_slice(key.as_bytes());
        f(buffer)
    })
}

/// The namespace and the key of a map key.
fn parts(key: &[u8]) -> (&str, &[u8]) {
    let (length, rest) = key.split_at(4);
    let length = u32::from_le_bytes(length.try_into().expect("four bytes")) as usize;
    let (namespace, key) = rest.split_at(length);
    (std::str::from_utf8(namespace).unwrap_or_default(), key)
}

/// The volatile key space.
#[derive(Debug, Default)]
pub(super) struct Volatile {
    entries: DashMap<Key, Value>,
    usage: DashMap<Box<str>, Mutex<Usage>>,
    quotas: DashMap<Box<str>, Quota>,
}

fn size(key: &[u8], value: &Bytes) -> usize {
    key.len() + value.len()
}

impl Volatile {
    /// Sets a namespace's quota.
    pub(super) fn set_quota(&self, namespace: &str, quota: Quota) {
        self.quotas.insert(namespace.into(), quota);
    }

    /// What a namespace holds.
    #[cfg(test)]
    pub(super) fn usage(&self, namespace: &str) -> Usage {
        self.usage
            .get(namespace)
            .map(|u| *u.lock().expect("usage"))
            .unwrap_or_default()
    }

    /// Every namespace and what it holds (admin).
    pub(super) fn all_usage(&self) -> Vec<(String, Usage)> {
        self.usage
            .iter()
            .map(|e| (e.key().to_string(), *e.value().lock().expect("usage")))
            .collect()
    }

    /// A live value.
    pub(super) fn get(&self, namespace: &str, key: &str, now_ms: u64) -> Option<Bytes> {
        with_key(namespace, key, |map_key| {
            self.entries
                .get(map_key)
                .filter(|v| v.live(now_ms))
                .map(|v| v.bytes.clone())
        })
    }

    /// Applies a mutation atomically, within the namespace's quota.
    pub(super) fn mutate(
        &self,
        namespace: &str,
        key: &str,
        mutation: Mutation,
        now_ms: u64,
    ) -> Result<Applied, StoreError> {
        with_key(namespace, key, |map_key| {
            // A key that exists and stays (a rate limiter's, on every request) is changed in
            // place, under its shard's lock; a new key, or a removal, goes through the map's
            // entry, which takes a key of its own.
            if !removes(&mutation)
                && let Some(mut present) = self.entries.get_mut(map_key)
            {
                let (applied, change) = decide(key, Some(&*present), mutation, now_ms)?;
                if let Some((next, delta)) = change {
                    self.charge(namespace, delta)?;
                    *present = next.expect("only a removal leaves no value");
                }
                return Ok(applied);
            }
            let entry = self.entries.entry(map_key.into());
            let present = match &entry {
                Entry::Occupied(e) => Some(e.get().clone()),
                Entry::Vacant(_) => None,
            };
            let (applied, change) = decide(key, present.as_ref(), mutation, now_ms)?;
            let Some((next, delta)) = change else {
                return Ok(applied);
            };
            self.charge(namespace, delta)?;
            match (entry, next) {
                (Entry::Occupied(mut e), Some(next)) => {
                    e.insert(next);
                }
                (Entry::Occupied(e), None) => {
                    e.remove();
                }
                (Entry::Vacant(e), Some(next)) => {
                    e.insert(next);
                }
                (Entry::Vacant(_), None) => {}
            }
            Ok(applied)
        })
    }

    /// Checks `delta` against the quota and books it. A value replaced by one of the same size
    /// (a rate limiter's counter, on every request) changes nothing there, and skips the
    /// namespace's books, which every worker shares.
    fn charge(&self, namespace: &str, delta: Delta) -> Result<(), StoreError> {
        if delta.keys == 0 && delta.bytes == 0 {
            return Ok(());
        }
        let quota = self.quotas.get(namespace).map_or(Quota::UNLIMITED, |q| *q);
        let usage = self
            .usage
            .entry(namespace.into())
            .or_insert_with(|| Mutex::new(Usage::default()));
        let mut usage = usage.lock().expect("usage");
        usage.admit(delta, quota, namespace)?;
        *usage = usage.after(delta);
        Ok(())
    }

    /// Removes expired entries; returns how many.
    pub(super) fn sweep(&self, now_ms: u64) -> u64 {
        let mut removed = 0;
        self.entries.retain(|map_key, value| {
            if value.live(now_ms) {
                return true;
            }
            let (namespace, key) = parts(map_key);
            let freed = Delta::between(Some(size(key, &value.bytes)), None);
            if let Some(usage) = self.usage.get(namespace) {
                let mut usage = usage.lock().expect("usage");
                *usage = usage.after(freed);
            }
            removed += 1;
            false
        });
        removed
    }
}

/// Whether `mutation` may remove its key: only these leave no value (`store::apply`).
fn removes(mutation: &Mutation) -> bool {
    matches!(
        mutation,
        Mutation::Delete | Mutation::CompareAndSwap { new: None, .. }
    )
}

/// A change to one key: its next value (`None`: removed), and what that adds to its
/// namespace's books.
type Change = (Option<Value>, Delta);

/// What `mutation` does to the value `present` (live or expired), and the change it makes, if
/// any.
fn decide(
    key: &str,
    present: Option<&Value>,
    mutation: Mutation,
    now_ms: u64,
) -> Result<(Applied, Option<Change>), StoreError> {
    let live = present.filter(|v| v.live(now_ms));
    let (applied, change) = apply(live.map(|v| (&v.bytes, v.expires_at_ms)), mutation, now_ms)?;
    let Some(next) = change else {
        return Ok((applied, None));
    };
    // An expired value still counts until it is replaced or swept.
    let delta = Delta::between(
        present.map(|v| size(key.as_bytes(), &v.bytes)),
        next.as_ref().map(|(bytes, _)| size(key.as_bytes(), bytes)),
    );
    let next = next.map(|(bytes, expires_at_ms)| Value {
        bytes,
        expires_at_ms,
    });
    Ok((applied, Some((next, delta))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(value: &'static str, ttl_ms: Option<u64>) -> Mutation {
        Mutation::Put {
            value: Bytes::from_static(value.as_bytes()),
            ttl_ms,
        }
    }

    #[test]
    fn a_namespace_stops_at_its_byte_quota_and_others_go_on() {
        let store = Volatile::default();
        store.set_quota(
            "flood",
            Quota {
                keys_max: 100,
                bytes_max: 10,
            },
        );
        store.mutate("flood", "a", put("12345", None), 0).unwrap();
        let refused = store.mutate("flood", "b", put("123456", None), 0);
        assert!(matches!(
            refused,
            Err(StoreError::LimitReached { what: "bytes", .. })
        ));
        assert_eq!(store.get("flood", "b", 0), None, "nothing was stored");
        store.mutate("other", "b", put("123456", None), 0).unwrap();
        assert_eq!(store.usage("flood"), Usage { keys: 1, bytes: 6 });
    }

    #[test]
    fn a_value_replaced_by_one_of_its_size_passes_a_full_quota_and_books_nothing() {
        let store = Volatile::default();
        let quota = Quota {
            keys_max: 1,
            bytes_max: 6,
        };
        store.set_quota("full", quota);
        store.mutate("full", "a", put("12345", None), 0).unwrap();
        store.mutate("full", "a", put("54321", None), 0).unwrap();
        assert_eq!(store.get("full", "a", 0).as_deref(), Some(&b"54321"[..]));
        assert_eq!(store.usage("full"), Usage { keys: 1, bytes: 6 });
        let longer = store.mutate("full", "a", put("123456", None), 0);
        assert!(matches!(longer, Err(StoreError::LimitReached { .. })));
    }

    #[test]
    fn expired_values_read_as_absent_and_their_space_is_freed_by_the_sweep() {
        let store = Volatile::default();
        store.mutate("ns", "gone", put("v", Some(10)), 0).unwrap();
        store.mutate("ns", "kept", put("v", None), 0).unwrap();
        assert_eq!(store.get("ns", "gone", 20), None);
        assert_eq!(store.sweep(20), 1);
        assert_eq!(store.usage("ns"), Usage { keys: 1, bytes: 5 });
    }

    #[test]
    fn namespaces_and_keys_never_run_together() {
        let store = Volatile::default();
        store.mutate("ab", "c", put("one", None), 0).unwrap();
        store.mutate("a", "bc", put("two", None), 0).unwrap();
        assert_eq!(store.get("ab", "c", 0).as_deref(), Some(&b"one"[..]));
        assert_eq!(store.get("a", "bc", 0).as_deref(), Some(&b"two"[..]));
        assert_eq!(store.get("abc", "", 0), None);
    }

    #[test]
    fn a_swap_to_nothing_removes_the_key_and_frees_its_space() {
        let store = Volatile::default();
        store.mutate("ns", "k", put("v1", None), 0).unwrap();
        let swap = |expected: &'static str, new: &'static str| Mutation::CompareAndSwap {
            expected: Some(Bytes::from_static(expected.as_bytes())),
            new: Some(new)
                .filter(|new| !new.is_empty())
                .map(|new| Bytes::from_static(new.as_bytes())),
            ttl_ms: None,
        };
        let swapped = store.mutate("ns", "k", swap("v1", "v2"), 0).unwrap();
        assert_eq!(swapped, Applied::Swapped(true), "changed in place");
        assert_eq!(store.usage("ns"), Usage { keys: 1, bytes: 3 });
        let removed = store.mutate("ns", "k", swap("v2", ""), 0).unwrap();
        assert_eq!(removed, Applied::Swapped(true));
        assert_eq!(store.get("ns", "k", 0), None);
        assert_eq!(store.usage("ns"), Usage::default(), "booked once");
    }

    #[test]
    fn a_failed_swap_changes_nothing() {
        let store = Volatile::default();
        let swap = Mutation::CompareAndSwap {
            expected: Some(Bytes::from_static(b"x")),
            new: Some(Bytes::from_static(b"y")),
            ttl_ms: None,
        };
        assert_eq!(
            store.mutate("ns", "k", swap, 0).unwrap(),
            Applied::Swapped(false)
        );
        assert_eq!(store.usage("ns"), Usage::default());
    }
}

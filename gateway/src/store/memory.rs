//! The memory layer: a dashmap of namespaced keys that serves every read and applies every
//! mutation atomically (under the key's shard lock), with a key limit per namespace and lazy
//! expiry plus a periodic sweep.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::{Applied, BoxFuture, Durability, Mutation, Store, StoreError, now_unix_ms};

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The bytes.
    pub bytes: Bytes,
    /// Wall-clock expiry, ms since the Unix epoch.
    pub expires_at_ms: Option<u64>,
}

impl Value {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now_ms)
    }
}

/// The embedded store.
#[derive(Debug)]
pub struct EmbeddedStore {
    entries: DashMap<(Box<str>, Box<str>), Value>,
    counts: DashMap<Box<str>, AtomicUsize>,
    keys_per_namespace_max: usize,
}

impl EmbeddedStore {
    /// An empty store; each namespace holds at most `keys_per_namespace_max` keys.
    pub fn new(keys_per_namespace_max: usize) -> Self {
        Self {
            entries: DashMap::new(),
            counts: DashMap::new(),
            keys_per_namespace_max,
        }
    }

    /// Live keys in a namespace.
    pub fn len(&self, namespace: &str) -> usize {
        self.counts
            .get(namespace)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Removes expired entries; returns how many.
    pub fn sweep(&self) -> usize {
        let now = now_unix_ms();
        let mut removed = 0;
        self.entries.retain(|(namespace, _), value| {
            let keep = value.live(now);
            if !keep {
                self.count(namespace, -1);
                removed += 1;
            }
            keep
        });
        removed
    }

    fn count(&self, namespace: &str, delta: isize) {
        let counter = self
            .counts
            .entry(namespace.into())
            .or_insert_with(|| AtomicUsize::new(0));
        if delta >= 0 {
            counter.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    fn has_room(&self, namespace: &str) -> Result<(), StoreError> {
        if self.len(namespace) >= self.keys_per_namespace_max {
            return Err(StoreError::LimitReached {
                namespace: namespace.to_string(),
                limit: self.keys_per_namespace_max,
            });
        }
        Ok(())
    }

    /// Reads a live value.
    pub fn read(&self, namespace: &str, key: &str) -> Option<Value> {
        let now = now_unix_ms();
        self.entries
            .get(&(namespace.into(), key.into()))
            .filter(|v| v.live(now))
            .map(|v| v.clone())
    }

    /// Applies a mutation in memory. Returns what it did and the key's new value (`None`:
    /// absent), which is what the disk layer logs.
    pub fn apply(
        &self,
        namespace: &str,
        key: &str,
        mutation: Mutation,
    ) -> Result<(Applied, Option<Value>), StoreError> {
        let now = now_unix_ms();
        let expiry = |ttl_ms: Option<u64>| ttl_ms.map(|ttl| now.saturating_add(ttl));
        let entry = self.entries.entry((namespace.into(), key.into()));
        let current = match &entry {
            Entry::Occupied(e) if e.get().live(now) => Some(e.get().clone()),
            _ => None,
        };
        let (applied, next) = match mutation {
            Mutation::Put { value, ttl_ms } => (
                Applied::Stored,
                Some(Value {
                    bytes: value,
                    expires_at_ms: expiry(ttl_ms),
                }),
            ),
            Mutation::Delete => (Applied::Deleted(current.is_some()), None),
            Mutation::CompareAndSwap {
                expected,
                new,
                ttl_ms,
            } => {
                if current.as_ref().map(|v| &v.bytes) != expected.as_ref() {
                    return Ok((Applied::Swapped(false), current));
                }
                let next = new.map(|bytes| Value {
                    bytes,
                    expires_at_ms: expiry(ttl_ms),
                });
                (Applied::Swapped(true), next)
            }
            Mutation::Increment { delta, ttl_ms } => {
                let (number, expires_at_ms) = match &current {
                    Some(value) => (parse_counter(&value.bytes)?, value.expires_at_ms),
                    None => (0, expiry(ttl_ms)),
                };
                let sum = number.saturating_add(delta);
                let next = Value {
                    bytes: Bytes::from(sum.to_string()),
                    expires_at_ms,
                };
                (Applied::Counter(sum), Some(next))
            }
        };
        match (entry, &next) {
            (Entry::Occupied(mut e), Some(value)) => {
                e.insert(value.clone());
            }
            (Entry::Occupied(e), None) => {
                e.remove();
                self.count(namespace, -1);
            }
            (Entry::Vacant(e), Some(value)) => {
                self.has_room(namespace)?;
                e.insert(value.clone());
                self.count(namespace, 1);
            }
            (Entry::Vacant(_), None) => {}
        }
        Ok((applied, next))
    }

    /// Every live entry of a namespace.
    pub fn entries_of(&self, namespace: &str) -> Vec<(String, Bytes)> {
        let now = now_unix_ms();
        self.entries
            .iter()
            .filter(|e| &*e.key().0 == namespace && e.value().live(now))
            .map(|e| (e.key().1.to_string(), e.value().bytes.clone()))
            .collect()
    }
}

fn parse_counter(bytes: &[u8]) -> Result<i64, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(StoreError::NotANumber)
}

impl Store for EmbeddedStore {
    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> BoxFuture<'a, Option<Bytes>> {
        let value = self.read(namespace, key).map(|v| v.bytes);
        Box::pin(std::future::ready(value))
    }

    fn mutate<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        mutation: Mutation,
        _durability: Durability,
    ) -> BoxFuture<'a, Result<Applied, StoreError>> {
        let result = self
            .apply(namespace, key, mutation)
            .map(|(applied, _)| applied);
        Box::pin(std::future::ready(result))
    }

    fn scan<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Vec<(String, Bytes)>> {
        Box::pin(std::future::ready(self.entries_of(namespace)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(value: &str, ttl_ms: Option<u64>) -> Mutation {
        Mutation::Put {
            value: Bytes::from(value.to_string()),
            ttl_ms,
        }
    }

    #[test]
    fn compare_and_swap_succeeds_once_for_an_absent_key() {
        let store = EmbeddedStore::new(10);
        let claim = || Mutation::CompareAndSwap {
            expected: None,
            new: Some(Bytes::from_static(b"mine")),
            ttl_ms: None,
        };
        assert_eq!(
            store.apply("ns", "k", claim()).unwrap().0,
            Applied::Swapped(true)
        );
        assert_eq!(
            store.apply("ns", "k", claim()).unwrap().0,
            Applied::Swapped(false)
        );
    }

    #[test]
    fn increment_counts_from_zero_and_refuses_text() {
        let store = EmbeddedStore::new(10);
        let inc = |delta| Mutation::Increment {
            delta,
            ttl_ms: None,
        };
        assert_eq!(
            store.apply("ns", "c", inc(2)).unwrap().0,
            Applied::Counter(2)
        );
        assert_eq!(
            store.apply("ns", "c", inc(-5)).unwrap().0,
            Applied::Counter(-3)
        );
        store.apply("ns", "t", put("text", None)).unwrap();
        assert_eq!(store.apply("ns", "t", inc(1)), Err(StoreError::NotANumber));
    }

    #[test]
    fn expired_values_read_as_absent_and_are_swept() {
        let store = EmbeddedStore::new(10);
        store.apply("ns", "gone", put("v", Some(0))).unwrap();
        store.apply("ns", "kept", put("v", None)).unwrap();
        assert_eq!(store.read("ns", "gone"), None);
        assert_eq!(store.sweep(), 1);
        assert_eq!(store.len("ns"), 1);
    }

    #[test]
    fn namespaces_are_capped_and_separate() {
        let store = EmbeddedStore::new(1);
        store.apply("a", "k1", put("v", None)).unwrap();
        let full = store.apply("a", "k2", put("v", None));
        assert!(matches!(full, Err(StoreError::LimitReached { .. })));
        store.apply("b", "k1", put("other", None)).unwrap();
        assert_eq!(store.read("a", "k1").unwrap().bytes, "v");
        assert_eq!(store.entries_of("b").len(), 1);
    }
}

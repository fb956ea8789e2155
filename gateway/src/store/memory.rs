//! The memory layer: a dashmap of namespaced keys that serves every read and applies every
//! mutation atomically (under the key's shard lock), with a key limit per namespace and lazy
//! expiry plus a periodic sweep.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use super::record::Record;
use super::{Applied, Mutation, StoreError, now_unix_ms};

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The bytes.
    pub bytes: Bytes,
    /// Wall-clock expiry, ms since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// Whether it belongs on disk (snapshots skip volatile values).
    pub durable: bool,
}

impl Value {
    fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|at| at > now_ms)
    }
}

/// The memory layer.
#[derive(Debug)]
pub struct Memory {
    entries: DashMap<(Box<str>, Box<str>), Value>,
    counts: DashMap<Box<str>, AtomicUsize>,
    keys_per_namespace_max: usize,
}

impl Memory {
    /// An empty layer; each namespace holds at most `keys_per_namespace_max` keys.
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
        if let Some(counter) = self.counts.get(namespace) {
            if delta >= 0 {
                counter.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
            } else {
                counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
            }
            return;
        }
        let counter = self
            .counts
            .entry(namespace.into())
            .or_insert_with(|| AtomicUsize::new(0));
        counter.fetch_add(delta.max(0).unsigned_abs(), Ordering::Relaxed);
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

    /// Applies a mutation. When it changed the key and `log` is given, `log` is called with the
    /// key's new state while the key is still locked, so the log sees each key's changes in the
    /// order memory applied them; its result is returned beside what the mutation did.
    pub(super) fn apply<T>(
        &self,
        namespace: &str,
        key: &str,
        mutation: Mutation,
        durable: bool,
        log: impl FnOnce(&Record) -> T,
    ) -> Result<(Applied, Option<T>), StoreError> {
        let now = now_unix_ms();
        let expiry = |ttl_ms: Option<u64>| ttl_ms.map(|ttl| now.saturating_add(ttl));
        let entry = self.entries.entry((namespace.into(), key.into()));
        let current = match &entry {
            Entry::Occupied(e) if e.get().live(now) => Some(e.get().bytes.clone()),
            _ => None,
        };
        let value = |bytes: Bytes, expires_at_ms: Option<u64>| Value {
            bytes,
            expires_at_ms,
            durable,
        };
        let (applied, next) = match mutation {
            Mutation::Put {
                value: bytes,
                ttl_ms,
            } => (Applied::Stored, Some(value(bytes, expiry(ttl_ms)))),
            Mutation::Delete => (Applied::Deleted(current.is_some()), None),
            Mutation::CompareAndSwap {
                expected,
                new,
                ttl_ms,
            } => {
                if current != expected {
                    return Ok((Applied::Swapped(false), None));
                }
                let next = new.map(|bytes| value(bytes, expiry(ttl_ms)));
                (Applied::Swapped(true), next)
            }
            Mutation::Increment { delta, ttl_ms } => {
                let (number, expires_at_ms) = match (&current, &entry) {
                    (Some(bytes), Entry::Occupied(e)) => {
                        (parse_counter(bytes)?, e.get().expires_at_ms)
                    }
                    _ => (0, expiry(ttl_ms)),
                };
                let sum = number.saturating_add(delta);
                let next = value(Bytes::from(sum.to_string()), expires_at_ms);
                (Applied::Counter(sum), Some(next))
            }
        };
        let record = |next: &Option<Value>| Record {
            namespace: namespace.to_string(),
            key: key.to_string(),
            value: next.as_ref().map(|v| (v.bytes.clone(), v.expires_at_ms)),
        };
        let logged = match (entry, next) {
            (Entry::Occupied(mut e), Some(next)) => {
                let logged = log(&record(&Some(next.clone())));
                e.insert(next);
                Some(logged)
            }
            (Entry::Occupied(e), None) => {
                let logged = log(&record(&None));
                e.remove();
                self.count(namespace, -1);
                Some(logged)
            }
            (Entry::Vacant(e), Some(next)) => {
                self.has_room(namespace)?;
                let logged = log(&record(&Some(next.clone())));
                e.insert(next);
                self.count(namespace, 1);
                Some(logged)
            }
            (Entry::Vacant(_), None) => None,
        };
        Ok((applied, logged))
    }

    /// Loads a record during recovery (expired values are skipped).
    pub(super) fn restore(&self, record: Record) {
        let key = (
            record.namespace.clone().into_boxed_str(),
            record.key.into_boxed_str(),
        );
        match record.value {
            Some((bytes, expires_at_ms)) if expires_at_ms.is_none_or(|at| at > now_unix_ms()) => {
                let value = Value {
                    bytes,
                    expires_at_ms,
                    durable: true,
                };
                if self.entries.insert(key, value).is_none() {
                    self.count(&record.namespace, 1);
                }
            }
            _ => {
                if self.entries.remove(&key).is_some() {
                    self.count(&record.namespace, -1);
                }
            }
        }
    }

    /// Every live durable entry, as records (snapshots).
    pub(super) fn for_each_durable(&self, visit: &mut dyn FnMut(&Record)) {
        let now = now_unix_ms();
        for entry in self.entries.iter() {
            let value = entry.value();
            if value.durable && value.live(now) {
                visit(&Record {
                    namespace: entry.key().0.to_string(),
                    key: entry.key().1.to_string(),
                    value: Some((value.bytes.clone(), value.expires_at_ms)),
                });
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn put(value: &str, ttl_ms: Option<u64>) -> Mutation {
        Mutation::Put {
            value: Bytes::from(value.to_string()),
            ttl_ms,
        }
    }

    fn apply(
        memory: &Memory,
        namespace: &str,
        key: &str,
        mutation: Mutation,
    ) -> Result<Applied, StoreError> {
        memory
            .apply(namespace, key, mutation, true, |_| ())
            .map(|(a, _)| a)
    }

    #[test]
    fn compare_and_swap_succeeds_once_for_an_absent_key() {
        let memory = Memory::new(10);
        let claim = || Mutation::CompareAndSwap {
            expected: None,
            new: Some(Bytes::from_static(b"mine")),
            ttl_ms: None,
        };
        assert_eq!(
            apply(&memory, "ns", "k", claim()).unwrap(),
            Applied::Swapped(true)
        );
        assert_eq!(
            apply(&memory, "ns", "k", claim()).unwrap(),
            Applied::Swapped(false)
        );
    }

    #[test]
    fn increment_counts_from_zero_and_refuses_text() {
        let memory = Memory::new(10);
        let inc = |delta| Mutation::Increment {
            delta,
            ttl_ms: None,
        };
        assert_eq!(
            apply(&memory, "ns", "c", inc(2)).unwrap(),
            Applied::Counter(2)
        );
        assert_eq!(
            apply(&memory, "ns", "c", inc(-5)).unwrap(),
            Applied::Counter(-3)
        );
        apply(&memory, "ns", "t", put("text", None)).unwrap();
        assert_eq!(
            apply(&memory, "ns", "t", inc(1)),
            Err(StoreError::NotANumber)
        );
    }

    #[test]
    fn expired_values_read_as_absent_and_are_swept() {
        let memory = Memory::new(10);
        apply(&memory, "ns", "gone", put("v", Some(0))).unwrap();
        apply(&memory, "ns", "kept", put("v", None)).unwrap();
        assert_eq!(memory.read("ns", "gone"), None);
        assert_eq!(memory.sweep(), 1);
        assert_eq!(memory.len("ns"), 1);
    }

    #[test]
    fn namespaces_are_capped_and_separate() {
        let memory = Memory::new(1);
        apply(&memory, "a", "k1", put("v", None)).unwrap();
        let full = apply(&memory, "a", "k2", put("v", None));
        assert!(matches!(full, Err(StoreError::LimitReached { .. })));
        apply(&memory, "b", "k1", put("other", None)).unwrap();
        assert_eq!(memory.read("a", "k1").unwrap().bytes, "v");
        assert_eq!(memory.entries_of("b").len(), 1);
    }

    #[test]
    fn only_changes_reach_the_log_and_volatile_values_skip_snapshots() {
        let memory = Memory::new(10);
        let mut logged = Vec::new();
        memory
            .apply("ns", "k", put("v", None), true, |r| logged.push(r.clone()))
            .unwrap();
        let failed = Mutation::CompareAndSwap {
            expected: None,
            new: None,
            ttl_ms: None,
        };
        memory
            .apply("ns", "k", failed, true, |r| logged.push(r.clone()))
            .unwrap();
        memory
            .apply("ns", "v", put("x", None), false, |_| ())
            .unwrap();
        assert_eq!(logged.len(), 1, "a failed swap logs nothing");
        let mut snapshot = Vec::new();
        memory.for_each_durable(&mut |r| snapshot.push(r.key.clone()));
        assert_eq!(snapshot, ["k"]);
    }
}

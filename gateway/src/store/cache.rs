//! A bounded cache of recent entries: a dashmap for lookups, and a queue of insertions that
//! evicts the oldest once the cache holds its limit. It only ever holds committed values, so
//! evicting any entry is always safe: the next read goes to the database.

use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::Mutex;

use dashmap::DashMap;

/// The cache.
#[derive(Debug)]
pub struct Recent<K: Eq + Hash, V> {
    entries: DashMap<K, V>,
    order: Mutex<VecDeque<K>>,
    entries_max: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> Recent<K, V> {
    /// A cache of at most `entries_max` entries (0 caches nothing).
    pub fn new(entries_max: usize) -> Self {
        Self {
            entries: DashMap::new(),
            order: Mutex::new(VecDeque::new()),
            entries_max,
        }
    }

    /// The cached value.
    pub fn get(&self, key: &K) -> Option<V> {
        self.entries.get(key).map(|v| v.clone())
    }

    /// Caches a value, evicting the oldest entry when full.
    pub fn insert(&self, key: K, value: V) {
        if self.entries_max == 0 {
            return;
        }
        if self.entries.insert(key.clone(), value).is_some() {
            return;
        }
        let mut order = self.order.lock().expect("cache order");
        order.push_back(key);
        // The queue may hold keys removed since; each still takes a slot until it is popped, so
        // the queue, and with it the map, never outgrows the limit.
        while order.len() > self.entries_max {
            if let Some(oldest) = order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }

    /// Forgets a key.
    pub fn remove(&self, key: &K) {
        self.entries.remove(key);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entry_goes_when_the_cache_is_full() {
        let cache = Recent::new(2);
        cache.insert("a", 1);
        cache.insert("b", 2);
        cache.insert("a", 10);
        cache.insert("c", 3);
        assert_eq!(cache.get(&"a"), None);
        assert_eq!(cache.get(&"b"), Some(2));
        assert_eq!(cache.get(&"c"), Some(3));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn removed_and_reinserted_keys_never_grow_it_past_the_limit() {
        let cache = Recent::new(3);
        for round in 0..100 {
            cache.insert(round % 5, round);
            cache.remove(&(round % 5));
            cache.insert(round % 5, round);
        }
        assert!(cache.len() <= 3);
        assert!(cache.order.lock().unwrap().len() <= 3);
    }
}

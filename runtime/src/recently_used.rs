//! A map that keeps at most a fixed number of entries, forgetting the
//! least recently used one to make room: the in-memory caches of compiled
//! components, which every tenant's uploads (and every old execution's
//! module) would otherwise grow without end.

use std::collections::HashMap;

pub(crate) struct RecentlyUsed<V> {
    entries: HashMap<String, Entry<V>>,
    capacity: usize,
    /// Counts uses; an entry remembers the count at its last use.
    clock: u64,
}

struct Entry<V> {
    value: V,
    last_used: u64,
}

impl<V: Clone> RecentlyUsed<V> {
    /// A cache of `capacity` entries, at least one (so it can hand back
    /// what it was just given).
    pub(crate) fn new(capacity: usize) -> RecentlyUsed<V> {
        RecentlyUsed {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<V> {
        self.clock += 1;
        let entry = self.entries.get_mut(key)?;
        entry.last_used = self.clock;
        Some(entry.value.clone())
    }

    /// Inserts or replaces `key`, first forgetting the least recently used
    /// entry if the map is full. Inserts follow a miss, which costs a load
    /// from disk or a compilation, so the linear scan for the oldest entry
    /// is not the cost that matters.
    pub(crate) fn insert(&mut self, key: String, value: V) {
        self.clock += 1;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            key,
            Entry {
                value,
                last_used: self.clock,
            },
        );
        debug_assert!(self.entries.len() <= self.capacity);
    }

    pub(crate) fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::RecentlyUsed;

    #[test]
    fn the_least_recently_used_entry_makes_room() {
        let mut cache = RecentlyUsed::new(2);
        cache.insert("a".to_string(), 1);
        cache.insert("b".to_string(), 2);
        assert_eq!(cache.get("a"), Some(1), "a is now the most recent");
        cache.insert("c".to_string(), 3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b"), None, "b was the least recently used");
        assert_eq!(cache.get("a"), Some(1));
        assert_eq!(cache.get("c"), Some(3));
    }

    #[test]
    fn replacing_an_entry_evicts_nothing() {
        let mut cache = RecentlyUsed::new(2);
        cache.insert("a".to_string(), 1);
        cache.insert("b".to_string(), 2);
        cache.insert("a".to_string(), 10);
        assert_eq!((cache.get("a"), cache.get("b")), (Some(10), Some(2)));
        cache.remove("a");
        assert_eq!((cache.len(), cache.get("a")), (1, None));
    }
}

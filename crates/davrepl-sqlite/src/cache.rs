//! Bounded in-memory caches: whole content files ([`ContentCache`]) and, through [`Clock`],
//! the hot rows of point reads (`hot.rs`).
//!
//! A content file never changes once written (see `files.rs`), so a cached copy can never be
//! stale: that cache needs no invalidation to be correct, only a bound on its size. A hit is
//! served without a hop to the blocking pool and without copying a byte (the pieces are slices
//! of one shared buffer).
//!
//! Eviction is CLOCK (second chance): entries are kept in insertion order with a "used since
//! last looked at" bit; the oldest entry not used since is evicted first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

use bytes::Bytes;

#[derive(Debug)]
struct Slot<V> {
    value: V,
    weight: u64,
    used: bool,
    /// Which of the key's places in `order` is this slot's (older places of a replaced key
    /// are skipped when they come up).
    stamp: u64,
}

/// Values by key, up to a total weight, evicted by CLOCK. Not synchronised: its owner keeps it
/// behind a lock (and may check more state under the same lock).
#[derive(Debug)]
pub(crate) struct Clock<K, V> {
    max: u64,
    map: HashMap<K, Slot<V>>,
    order: VecDeque<(K, u64)>,
    size: u64,
    stamps: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> Clock<K, V> {
    /// At most `max` in total weight (`0`: nothing is kept).
    pub(crate) fn new(max: u64) -> Self {
        Self {
            max,
            map: HashMap::new(),
            order: VecDeque::new(),
            size: 0,
            stamps: 0,
        }
    }

    /// Whether a value of `weight` is worth keeping: an eighth of the cache at most, so one
    /// large value cannot empty it.
    pub(crate) fn admits(&self, weight: u64) -> bool {
        Self::admits_within(self.max, weight)
    }

    /// [`admits`](Self::admits) for a cache bounded by `max`.
    pub(crate) fn admits_within(max: u64, weight: u64) -> bool {
        weight > 0 && weight <= max / 8
    }

    /// The value under `key`, if kept (marked as used).
    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        let e = self.map.get_mut(key)?;
        e.used = true;
        Some(e.value.clone())
    }

    /// Keeps `value` under `key` (replacing what was there), evicting what it must; a value
    /// the cache does not [admit](Self::admits) is not kept.
    pub(crate) fn insert(&mut self, key: K, value: V, weight: u64) {
        self.remove(&key);
        if !self.admits(weight) {
            return;
        }
        while self.size + weight > self.max {
            let Some((old, stamp)) = self.order.pop_front() else {
                break;
            };
            match self.map.get_mut(&old) {
                Some(e) if e.stamp != stamp => {} // a place the key left
                Some(e) if e.used => {
                    e.used = false;
                    self.order.push_back((old, stamp));
                }
                Some(_) => self.remove(&old),
                None => {}
            }
        }
        self.stamps += 1;
        self.size += weight;
        self.order.push_back((key.clone(), self.stamps));
        self.map.insert(
            key,
            Slot {
                value,
                weight,
                used: false,
                stamp: self.stamps,
            },
        );
        // Places left behind by replaced or removed keys: dropped once they are half of it.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.stamp == *s));
        }
    }

    /// Forgets `key` (its place in the order is skipped when it comes up).
    pub(crate) fn remove(&mut self, key: &K) {
        if let Some(e) = self.map.remove(key) {
            self.size -= e.weight;
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.size = 0;
    }

    /// Whether nothing is kept.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

/// Whole content files, up to a total number of bytes.
#[derive(Debug)]
pub(crate) struct ContentCache {
    /// The bound, also outside the lock: [`admits`](Self::admits) needs no lock.
    max: u64,
    inner: Mutex<Clock<i64, Bytes>>,
}

impl ContentCache {
    /// A cache of at most `max` bytes (`0`: nothing is cached).
    pub(crate) fn new(max: u64) -> Self {
        Self {
            max,
            inner: Mutex::new(Clock::new(max)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clock<i64, Bytes>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a file of `len` bytes is worth caching.
    pub(crate) fn admits(&self, len: u64) -> bool {
        Clock::<i64, Bytes>::admits_within(self.max, len)
    }

    /// The whole content of file `id`, if cached.
    pub(crate) fn get(&self, id: i64) -> Option<Bytes> {
        self.lock().get(&id)
    }

    /// Keeps the whole content of file `id`, evicting what it must.
    pub(crate) fn insert(&self, id: i64, bytes: Bytes) {
        let len = bytes.len() as u64;
        self.lock().insert(id, bytes, len);
    }

    /// Forgets file `id` (its name was removed: a later file may reuse the number).
    pub(crate) fn remove(&self, id: i64) {
        self.lock().remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn keeps_within_its_size_and_gives_used_entries_a_second_chance() {
        let c = ContentCache::new(800);
        for id in 1..=8 {
            c.insert(id, bytes(100));
        }
        assert!(c.get(1).is_some(), "1 is used now");
        c.insert(9, bytes(100));
        assert!(c.get(1).is_some(), "a used entry survives one round");
        assert!(c.get(2).is_none(), "the oldest unused entry went");
        assert_eq!(c.lock().size(), 800);
        c.insert(10, bytes(101));
        assert!(c.get(10).is_none(), "over an eighth of the cache: not kept");
        c.remove(9);
        assert!(c.get(9).is_none());
        assert_eq!(c.lock().size(), 700);
        let off = ContentCache::new(0);
        off.insert(1, bytes(1));
        assert!(off.get(1).is_none());
    }

    #[test]
    fn replacing_a_key_keeps_one_entry_and_the_right_size() {
        let mut c: Clock<&str, u32> = Clock::new(800);
        c.insert("a", 1, 50);
        c.insert("a", 2, 70);
        assert_eq!(c.get(&"a"), Some(2));
        assert_eq!(c.size(), 70);

        for i in 0..1000 {
            c.insert("b", i, 10);
        }
        assert!(
            c.order.len() <= 2 * c.map.len() + 65,
            "left places are dropped"
        );
        assert_eq!(c.size(), 80);
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.size(), 0);
    }
}

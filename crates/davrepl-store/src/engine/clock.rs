//! A bounded map evicted by CLOCK (second chance), for the caches of backends: entries are
//! kept in insertion order with a "used since last looked at" bit, and the oldest entry not
//! used since is evicted first. A hit costs a hash look-up and sets one bit, no reordering.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

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
pub struct Clock<K, V> {
    max: u64,
    map: HashMap<K, Slot<V>>,
    order: VecDeque<(K, u64)>,
    size: u64,
    stamps: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> Clock<K, V> {
    /// At most `max` in total weight (`0`: nothing is kept).
    pub fn new(max: u64) -> Self {
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
    pub fn admits(&self, weight: u64) -> bool {
        Self::admits_within(self.max, weight)
    }

    /// [`admits`](Self::admits) for a cache bounded by `max`.
    pub fn admits_within(max: u64, weight: u64) -> bool {
        weight > 0 && weight <= max / 8
    }

    /// The value under `key`, if kept (marked as used).
    pub fn get(&mut self, key: &K) -> Option<V> {
        let e = self.map.get_mut(key)?;
        e.used = true;
        Some(e.value.clone())
    }

    /// The value under `key`, if kept, without marking it as used.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|e| &e.value)
    }

    /// Keeps `value` under `key` (replacing what was there), evicting what it must; a value
    /// the cache does not [admit](Self::admits) is not kept.
    pub fn insert(&mut self, key: K, value: V, weight: u64) {
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
    pub fn remove(&mut self, key: &K) {
        if let Some(e) = self.map.remove(key) {
            self.size -= e.weight;
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.size = 0;
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The total weight kept.
    pub fn size(&self) -> u64 {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! A cache of whole content files in memory. A content file never changes once written (see
//! `files.rs`), so a cached copy can never be stale: the cache needs no invalidation to be
//! correct, only a bound on its size. A hit is served without a hop to the blocking pool and
//! without copying a byte (the pieces are slices of one shared buffer).
//!
//! Eviction is CLOCK (second chance): entries are kept in insertion order with a "used since
//! last looked at" bit; the oldest entry not used since is evicted first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

#[derive(Debug)]
struct Entry {
    bytes: Bytes,
    used: bool,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<i64, Entry>,
    order: VecDeque<i64>,
    size: u64,
}

/// Whole content files, up to a total number of bytes.
#[derive(Debug)]
pub(crate) struct ContentCache {
    max: u64,
    inner: Mutex<Inner>,
}

impl ContentCache {
    /// A cache of at most `max` bytes (`0`: nothing is cached).
    pub(crate) fn new(max: u64) -> Self {
        Self {
            max,
            inner: Mutex::default(),
        }
    }

    /// Whether a file of `len` bytes is worth caching: an eighth of the cache at most, so one
    /// large download cannot empty it.
    pub(crate) fn admits(&self, len: u64) -> bool {
        len > 0 && len <= self.max / 8
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole content of file `id`, if cached.
    pub(crate) fn get(&self, id: i64) -> Option<Bytes> {
        let mut inner = self.lock();
        let e = inner.map.get_mut(&id)?;
        e.used = true;
        Some(e.bytes.clone())
    }

    /// Keeps the whole content of file `id`, evicting what it must.
    pub(crate) fn insert(&self, id: i64, bytes: Bytes) {
        let len = bytes.len() as u64;
        if !self.admits(len) {
            return;
        }
        let mut inner = self.lock();
        if inner.map.contains_key(&id) {
            return;
        }
        while inner.size + len > self.max {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            match inner.map.get_mut(&old) {
                Some(e) if e.used => {
                    e.used = false;
                    inner.order.push_back(old);
                }
                Some(_) => {
                    if let Some(e) = inner.map.remove(&old) {
                        inner.size -= e.bytes.len() as u64;
                    }
                }
                None => {}
            }
        }
        inner.size += len;
        inner.order.push_back(id);
        inner.map.insert(id, Entry { bytes, used: false });
    }

    /// Forgets file `id` (its name was removed: a later file may reuse the number).
    pub(crate) fn remove(&self, id: i64) {
        let mut inner = self.lock();
        if let Some(e) = inner.map.remove(&id) {
            inner.size -= e.bytes.len() as u64;
            inner.order.retain(|&x| x != id);
        }
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
        let size = c.lock().size;
        assert_eq!(size, 800);
        c.insert(10, bytes(101));
        assert!(c.get(10).is_none(), "over an eighth of the cache: not kept");
        c.remove(9);
        assert!(c.get(9).is_none());
        assert_eq!(c.lock().size, 700);
        let off = ContentCache::new(0);
        off.insert(1, bytes(1));
        assert!(off.get(1).is_none());
    }
}

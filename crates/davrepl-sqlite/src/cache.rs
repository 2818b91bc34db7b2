//! The bounded cache of whole content files ([`ContentCache`]), kept by a [`Clock`] (the
//! engine's, shared with the hot rows of point reads, `hot.rs`).
//!
//! A content file never changes once written (see `files.rs`), so a cached copy can never be
//! stale: that cache needs no invalidation to be correct, only a bound on its size. A hit is
//! served without a hop to the blocking pool and without copying a byte (the pieces are slices
//! of one shared buffer).

use std::sync::Mutex;

use bytes::Bytes;
pub(crate) use davrepl_store::engine::Clock;

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
}

//! Hot rows: the point reads of the recent past (the rows a HEAD, GET or PROPFIND of one
//! resource looked up, with the short content and the dead properties it read), kept in memory so that the next HEAD or GET of the same resource
//! runs its step without a read transaction.
//!
//! Every write of a store goes through its one writer thread, so the writer knows when the
//! database changes, and the cache is exact, never merely "fresh enough":
//!
//! - an **epoch** counter is odd while the writer commits and even otherwise; the writer makes
//!   it odd just before `COMMIT`, and after it (committed or not) empties the cache and makes
//!   it even again, under the cache's lock, before any of the group's writers is answered;
//! - a step is served from the cache only if every row it asks for is cached and the epoch is
//!   the same even number at each look-up: no commit began in between, so what it saw is the
//!   latest committed state, as one snapshot would show it;
//! - a read that goes to the database notes the epoch before its snapshot begins, and keeps
//!   what it read only if the epoch is still that even number when it is done (under the
//!   lock): no commit began since, so its snapshot is the latest committed state.
//!
//! A write acknowledged to a client has emptied the cache before the acknowledgement, so no
//! read that starts after it can see an older state. A step that asks for anything else (dead
//! properties, locks, listings, the log) or for a row that is not cached runs on the database
//! instead, as if the cache did not exist. The store must not be written by another process
//! (see [`SqliteStore::open`](crate::SqliteStore::open)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use davrepl_store::engine::{self, LockScan, LogQuery, PageQuery, Pieces, Record, Rows, Tombstone};
use davrepl_store::{
    DeadProp, ErrorKind, Lock, PurgeReport, ReplUid, ResourceKind, ResourcePath, Seq, StoreError,
    StoreId, StoreResult,
};

use crate::cache::Clock;
use crate::files::Content;
use crate::rows::Tx;

type Rec = Record<Option<i64>>;

/// Rough bytes an entry takes besides its path and content (the record, the map's slot and
/// its place in the eviction order).
const ENTRY_OVERHEAD: u64 = 256;

/// Content longer than this is not kept with its row (it still is a content file's, whole,
/// in the content cache when it is a file).
const MAX_CONTENT: u64 = 64 * 1024;

/// One cached row, with its whole content and its dead properties when the read that cached
/// it read them.
#[derive(Clone)]
struct Hot {
    record: Rec,
    content: Option<Bytes>,
    props: Option<Arc<[DeadProp]>>,
}

/// What a read on the database looked up, to be cached if nothing committed meanwhile.
#[derive(Default)]
pub(crate) struct Seen {
    records: Vec<(ResourcePath, Rec)>,
    contents: Vec<(i64, Bytes)>,
    props: Vec<(ReplUid, Arc<[DeadProp]>)>,
}

impl Seen {
    /// A row [`Rows::get`] found.
    pub(crate) fn record(&mut self, path: &ResourcePath, record: &Rec) {
        self.records.push((path.clone(), record.clone()));
    }

    /// The dead properties of `rid`, as a read read them.
    pub(crate) fn props(&mut self, rid: ReplUid, props: &[DeadProp]) {
        self.props.push((rid, props.into()));
    }

    /// The whole content of `davrepl_content` row `id`, as a read read it.
    pub(crate) fn content(&mut self, id: i64, whole: &Bytes) {
        if whole.len() as u64 <= MAX_CONTENT {
            self.contents.push((id, whole.clone()));
        }
    }
}

/// The cache of one store (shared by its readers and its writer thread).
pub(crate) struct HotRows {
    /// `false` when the cache is off: reads then record nothing.
    on: bool,
    epoch: AtomicU64,
    rows: Mutex<Clock<ResourcePath, Hot>>,
}

impl std::fmt::Debug for HotRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotRows")
            .field("epoch", &self.epoch.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl HotRows {
    /// A cache of about `max` bytes (`0`: off).
    pub(crate) fn new(max: u64) -> Self {
        Self {
            on: max > 0,
            epoch: AtomicU64::new(0),
            rows: Mutex::new(Clock::new(max)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clock<ResourcePath, Hot>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a commit under way until the guard is dropped (after the commit, whatever its
    /// outcome), which empties the cache.
    pub(crate) fn committing(&self) -> Committing<'_> {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        Committing(self)
    }

    /// Runs `step` on the cached rows if it can be answered from them alone; `None` when it
    /// cannot (and its result, whatever it was, is dropped).
    pub(crate) fn serve<T>(
        &self,
        id: StoreId,
        step: impl FnOnce(&mut dyn Rows<Payload = Option<i64>>) -> StoreResult<T>,
    ) -> Option<StoreResult<T>> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        if !self.on || epoch % 2 == 1 || self.lock().is_empty() {
            return None;
        }
        let mut rows = Cached {
            hot: self,
            epoch,
            id,
            missed: false,
            contents: Vec::new(),
            props: Vec::new(),
        };
        let out = step(&mut rows);
        (!rows.missed).then_some(out)
    }

    /// Runs `f` on a database read, noting what its rows look-ups found, and caches that if
    /// no commit began meanwhile.
    pub(crate) fn record<T>(&self, t: &mut Tx<'_>, f: impl FnOnce(&mut Tx<'_>) -> T) -> T {
        // Before the snapshot: it begins with the read's first statement, inside `f`.
        if !self.on {
            return f(t);
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        t.seen = Some(Seen::default());
        let out = f(t);
        let Some(seen) = t.seen.take() else {
            return out;
        };
        if epoch % 2 == 1 || seen.records.is_empty() {
            return out;
        }
        let mut rows = self.lock();
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return out;
        }
        for (path, record) in seen.records {
            let mut content = match Content::of(record.payload) {
                Some(Content::Row(id)) => seen
                    .contents
                    .iter()
                    .find(|(c, _)| *c == id)
                    .map(|(_, b)| b.clone()),
                _ => None,
            };
            let mut props = seen
                .props
                .iter()
                .find(|(rid, _)| *rid == record.rid)
                .map(|(_, p)| p.clone());
            // What an earlier read of the same row cached and this one did not read.
            if let Some(old) = rows.get(&path).filter(|h| same_row(&h.record, &record)) {
                content = content.or(old.content);
                props = props.or(old.props);
            }
            let weight = ENTRY_OVERHEAD
                + path.as_str().len() as u64
                + content.as_ref().map_or(0, |b| b.len() as u64)
                + props.as_ref().map_or(0, |p| {
                    p.iter()
                        .map(|d| (d.name.ns.len() + d.name.local.len() + d.value.len()) as u64 + 64)
                        .sum()
                });
            let hot = Hot {
                record,
                content,
                props,
            };
            rows.insert(path, hot, weight);
        }
        out
    }
}

/// Whether two reads of a row (in the same epoch) read the same row: always so while the
/// cache is exact; compared anyway, as cheap insurance.
fn same_row(a: &Rec, b: &Rec) -> bool {
    a.rid == b.rid && a.version == b.version && a.payload == b.payload
}

/// A commit under way; dropping it empties the cache and ends the commit's epoch.
pub(crate) struct Committing<'a>(&'a HotRows);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        let mut rows = self.0.lock();
        rows.clear();
        self.0.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// The rows a step sees when served from the cache: only [`Rows::get`] (and what derives
/// from it) and [`Rows::content`] of a row it got; anything else is a miss.
struct Cached<'a> {
    hot: &'a HotRows,
    epoch: u64,
    id: StoreId,
    missed: bool,
    /// Content of the rows got so far.
    contents: Vec<(i64, Bytes)>,
    /// Dead properties of the rows got so far.
    props: Vec<(ReplUid, Arc<[DeadProp]>)>,
}

impl Cached<'_> {
    fn miss<T>(&mut self) -> StoreResult<T> {
        self.missed = true;
        Err(StoreError::new(
            ErrorKind::Unavailable,
            "not in the hot-row cache",
        ))
    }
}

impl Rows for Cached<'_> {
    type Payload = Option<i64>;

    fn store_id(&self) -> StoreId {
        self.id
    }

    fn get(&mut self, path: &ResourcePath) -> StoreResult<Option<Rec>> {
        let found = {
            let mut rows = self.hot.lock();
            if self.hot.epoch.load(Ordering::SeqCst) == self.epoch {
                rows.get(path)
            } else {
                None
            }
        };
        match found {
            Some(h) => {
                if let (Some(Content::Row(id)), Some(b)) =
                    (Content::of(h.record.payload), h.content)
                {
                    self.contents.push((id, b));
                }
                if let Some(p) = h.props {
                    self.props.push((h.record.rid, p));
                }
                Ok(Some(h.record))
            }
            // An absent row is not cached: its absence is read from the database.
            None => self.miss(),
        }
    }

    fn content(&mut self, payload: &Option<i64>, (start, end): (u64, u64)) -> StoreResult<Pieces> {
        match Content::of(*payload) {
            Some(Content::Row(id)) => match self.contents.iter().find(|(c, _)| *c == id) {
                Some((_, whole)) => Ok(Some(vec![crate::rows::span(whole, start, end)])),
                None => self.miss(),
            },
            // Files never change once written: streamed after the step, as from a snapshot.
            Some(Content::File(_)) => Ok(None),
            None => Ok(Some(Vec::new())),
        }
    }

    fn kind(&mut self, path: &ResourcePath) -> StoreResult<Option<ResourceKind>> {
        Ok(self.get(path)?.map(|r| r.kind))
    }

    fn descendants(&mut self, _: &ResourcePath) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        self.miss()
    }
    fn put(&mut self, _: &ResourcePath, _: &Rec) -> StoreResult<()> {
        self.miss()
    }
    fn remove(&mut self, _: &ResourcePath) -> StoreResult<()> {
        self.miss()
    }
    fn tombstone(&mut self, _: Tombstone) -> StoreResult<()> {
        self.miss()
    }
    fn counters(&mut self) -> StoreResult<&mut engine::Counters> {
        self.miss()
    }
    fn props(&mut self, rid: ReplUid) -> StoreResult<Vec<DeadProp>> {
        match self.props.iter().find(|(r, _)| *r == rid) {
            Some((_, p)) => Ok(p.to_vec()),
            None => self.miss(),
        }
    }
    fn set_props(&mut self, _: ReplUid, _: &[DeadProp]) -> StoreResult<()> {
        self.miss()
    }
    fn duplicate(&mut self, _: &Option<i64>) -> StoreResult<Option<i64>> {
        self.miss()
    }
    fn release(&mut self, _: Option<i64>) -> StoreResult<()> {
        self.miss()
    }
    fn page(&mut self, _: &PageQuery) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        self.miss()
    }
    fn changed(&mut self, _: &LogQuery) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        self.miss()
    }
    fn removed(&mut self, _: &LogQuery) -> StoreResult<Vec<Tombstone>> {
        self.miss()
    }
    fn purge(&mut self, _: SystemTime) -> StoreResult<PurgeReport> {
        self.miss()
    }
    // The trait's defaults answer these without reading rows ("no locks", "no
    // subscription"): true of a backend that keeps none, not of this one.
    fn may_hold_locks(&mut self) -> StoreResult<bool> {
        self.miss()
    }
    fn locks(&mut self, _: &LockScan) -> StoreResult<Vec<Lock>> {
        self.miss()
    }
    fn put_lock(&mut self, _: &Lock) -> StoreResult<()> {
        self.miss()
    }
    fn remove_lock(&mut self, _: &Lock) -> StoreResult<()> {
        self.miss()
    }
    fn sweep_locks(&mut self, _: SystemTime) -> StoreResult<u64> {
        self.miss()
    }
    fn subscription(&mut self, _: u64) -> StoreResult<Option<davrepl_store::Subscription>> {
        self.miss()
    }
    fn put_subscription(&mut self, _: &davrepl_store::Subscription) -> StoreResult<()> {
        self.miss()
    }
    fn remove_subscription(&mut self, _: u64) -> StoreResult<()> {
        self.miss()
    }
    fn sweep_subscriptions(&mut self, _: SystemTime) -> StoreResult<()> {
        self.miss()
    }
    fn next_seq(&mut self) -> StoreResult<Seq> {
        self.miss()
    }
    fn horizon(&mut self) -> StoreResult<Seq> {
        self.miss()
    }
    fn current_seq(&mut self) -> StoreResult<Seq> {
        self.miss()
    }
    fn next_rid(&mut self) -> StoreResult<u64> {
        self.miss()
    }
    fn low_water(&mut self) -> StoreResult<Seq> {
        self.miss()
    }
    fn set_content_version(&mut self, _: &ResourcePath, _: Seq) -> StoreResult<()> {
        self.miss()
    }
}

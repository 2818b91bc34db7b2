//! The storage engine: every rule of the model, written once, over a backend that only reads
//! and writes rows.
//!
//! A backend implements [`Rows`] for the inside of one atomic step (a locked in-memory state, a
//! database transaction, or a prefetched view whose mutations are flushed in one batch) and
//! calls the functions here for each write. The engine decides everything the contract
//! specifies: condition evaluation, parent checks, tree walks for DELETE/COPY/MOVE, sequence
//! assignment, tombstones (one per resource that leaves a path, before its new upsert),
//! contenttag bumps of the parent collections, and what a write returns.
//!
//! The trait is synchronous on purpose: a synchronous backend (SQLite in its writer thread, a
//! locked map) implements it directly, and an asynchronous one fetches the rows an operation
//! needs first ([`Condition::paths`], the target, its parent and the subtrees involved), runs
//! the engine on that view and applies the recorded changes in one round trip.

mod clock;
mod lock;
mod read;
pub mod sql;
mod store;
mod subscription;
mod write;

pub use clock::Clock;
pub use store::{Atomic, AtomicOf, Backend, Engine, Incoming, Plan, Staged, Step};

pub use write::{
    DigestsOf, NewContent, copy, create_collection, delete, patch_props, put, record_digests,
    rename,
};

use std::time::SystemTime;

use crate::condition::{Condition, Tokens};
use crate::digest::Digests;
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::lock::Lock;
use crate::path::ResourcePath;
use crate::tags::{ReplUid, Seq, StoreId};
use bytes::Bytes;

use crate::types::{
    ByteRange, ChangeKind, DeadProp, Depth, ListOptions, Meta, PurgeReport, ResourceKind,
};

/// One resource as a backend stores it. `payload` is the backend's handle on the content (the
/// bytes themselves, a blob id, a file name); the engine only moves it around, duplicates it
/// for COPY and releases it when nothing points at it any more.
#[derive(Debug, Clone)]
pub struct Record<P> {
    /// Repl-uid.
    pub rid: ReplUid,
    /// Item or collection.
    pub kind: ResourceKind,
    /// Sequence number of its last change: its row in the change log.
    pub version: Seq,
    /// Sequence number of the last change of its content (items) or membership (collections).
    pub content_version: Seq,
    /// Content length in bytes.
    pub len: u64,
    /// Content type, if recorded.
    pub content_type: Option<String>,
    /// Creation time.
    pub created: SystemTime,
    /// Last modification time.
    pub modified: SystemTime,
    /// Digests of the content (items written since digests are kept).
    pub digests: Option<Digests>,
    /// The backend's handle on the content.
    pub payload: P,
}

impl<P: Default> Record<P> {
    /// A new, empty collection with repl-uid `rid`, created `now` (its versions are set when
    /// it is stored).
    pub fn collection(rid: ReplUid, now: SystemTime) -> Self {
        Self {
            rid,
            kind: ResourceKind::Collection,
            version: 0,
            content_version: 0,
            len: 0,
            content_type: None,
            created: now,
            modified: now,
            digests: None,
            payload: P::default(),
        }
    }
}

impl<P> Record<P> {
    /// The metadata the contract hands out for this record at `path`.
    pub fn meta(&self, store: StoreId, path: &ResourcePath) -> Meta {
        self.meta_with(store, path, self.content_type.clone())
    }

    /// [`meta`](Self::meta) and the payload, taking the record apart instead of copying
    /// from it.
    pub fn into_meta(mut self, store: StoreId, path: &ResourcePath) -> (Meta, P) {
        let content_type = self.content_type.take();
        (self.meta_with(store, path, content_type), self.payload)
    }

    fn meta_with(&self, store: StoreId, path: &ResourcePath, content_type: Option<String>) -> Meta {
        Meta {
            path: path.clone(),
            kind: self.kind,
            store,
            rid: self.rid,
            version: self.version,
            content_version: self.content_version,
            len: self.len,
            content_type,
            created: self.created,
            modified: self.modified,
            digests: self.digests,
        }
    }
}

/// Content read within a step ([`Rows::content`]): its pieces in order, or `None` when it is
/// to be streamed afterwards.
pub type Pieces = Option<Vec<Bytes>>;

/// The counters of a store, read and saved with its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// The last change sequence number handed out.
    pub seq: Seq,
    /// The last repl-uid counter handed out.
    pub rid: u64,
    /// Tombstones at or below this sequence number may have been purged.
    pub low_water: Seq,
    /// Bytes of content the store holds (the sum of every item's length).
    pub bytes: u64,
}

/// A page of a listing, as [`Rows::page`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageQuery {
    /// The collection listed.
    pub root: ResourcePath,
    /// [`Depth::One`] or [`Depth::Infinity`].
    pub depth: Depth,
    /// Only paths after this one.
    pub after: Option<ResourcePath>,
    /// At most this many rows.
    pub limit: usize,
}

/// A read of the change log, as [`Rows::changed`] and [`Rows::removed`] read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogQuery {
    /// The scope collection.
    pub scope: ResourcePath,
    /// How deep below it.
    pub depth: Depth,
    /// Only changes after this sequence number.
    pub since: Seq,
    /// At most this many rows.
    pub limit: usize,
}

impl PageQuery {
    /// Whether `p` belongs in this listing (after `after` or not).
    pub fn contains(&self, p: &ResourcePath) -> bool {
        match self.depth {
            Depth::One => p.parent().as_ref() == Some(&self.root),
            _ => p.is_strictly_within(&self.root),
        }
    }
}

impl LogQuery {
    /// Whether a row at `p` is in scope for [`Rows::changed`]: strictly inside the scope, as
    /// deep as the query reaches.
    pub fn contains(&self, p: &ResourcePath) -> bool {
        match self.depth {
            Depth::Zero => false,
            Depth::One => p.parent().as_ref() == Some(&self.scope),
            Depth::Infinity => p.is_strictly_within(&self.scope),
        }
    }

    /// Whether a tombstone at `p` is in scope for [`Rows::removed`] (for depth 0: at the
    /// scope's own path).
    pub fn contains_removed(&self, p: &ResourcePath) -> bool {
        self.contains(p) || (self.depth == Depth::Zero && *p == self.scope)
    }
}

/// Which lock rows a step reads ([`Rows::locks`]): those rooted exactly at one of `at`, and
/// those rooted strictly below one of `below`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LockScan {
    /// Exact lock roots.
    pub at: Vec<ResourcePath>,
    /// Subtrees whose every lock is read (the subtree's root itself through `at`).
    pub below: Vec<ResourcePath>,
}

impl LockScan {
    /// Whether a lock rooted at `root` is in the scan.
    pub fn contains(&self, root: &ResourcePath) -> bool {
        self.at.contains(root) || self.below.iter().any(|b| root.is_strictly_within(b))
    }

    /// Adds every lock that could cover `path`: rooted at it or at any of its ancestors.
    pub fn add_covering(&mut self, path: &ResourcePath) {
        let mut next = Some(path.clone());
        while let Some(p) = next {
            next = p.parent();
            if !self.at.contains(&p) {
                self.at.push(p);
            }
        }
    }

    /// Adds every lock that covers `path` or lies below it.
    pub fn add_tree(&mut self, path: &ResourcePath) {
        self.add_covering(path);
        if !self.below.iter().any(|b| path.is_within(b)) {
            self.below.push(path.clone());
        }
    }

    /// Whether every lock `other` reads is read by this scan too.
    pub fn includes(&self, other: &LockScan) -> bool {
        other.at.iter().all(|p| self.contains(p))
            && other
                .below
                .iter()
                .all(|b| self.below.iter().any(|mine| b.is_within(mine)))
    }
}

/// A resource leaving a path (deleted, or moved away): its row in the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// Its sequence number.
    pub seq: Seq,
    /// The repl-uid of the resource that left.
    pub rid: ReplUid,
    /// The path it left.
    pub path: ResourcePath,
    /// Whether it was a collection.
    pub kind: ResourceKind,
    /// When.
    pub at: SystemTime,
}

impl Tombstone {
    /// The change this row reports.
    pub fn change(&self) -> ChangeKind {
        ChangeKind::Removed {
            rid: self.rid,
            path: self.path.clone(),
            kind: self.kind,
        }
    }
}

/// Row-level access inside one atomic step. Implementations do I/O only; they make no decision
/// the contract cares about.
pub trait Rows {
    /// The backend's content handle; `Default` is the handle of a collection (no content).
    type Payload: Clone + Default;

    /// The store's identity.
    fn store_id(&self) -> StoreId;
    /// The resource at `path`, if any.
    fn get(&mut self, path: &ResourcePath) -> StoreResult<Option<Record<Self::Payload>>>;
    /// Every resource strictly below `root`, in path order.
    fn descendants(
        &mut self,
        root: &ResourcePath,
    ) -> StoreResult<Vec<(ResourcePath, Record<Self::Payload>)>>;
    /// Creates or replaces the resource at `path` (its change-log row is its `version`).
    fn put(&mut self, path: &ResourcePath, record: &Record<Self::Payload>) -> StoreResult<()>;
    /// Removes the resource row at `path` (its log row goes with it).
    fn remove(&mut self, path: &ResourcePath) -> StoreResult<()>;
    /// Records that a resource left a path.
    fn tombstone(&mut self, t: Tombstone) -> StoreResult<()>;
    /// The store's counters as this step sees them; a write step's changes to them are
    /// saved with its rows.
    fn counters(&mut self) -> StoreResult<&mut Counters>;
    /// Dead properties of `rid`, in name order.
    fn props(&mut self, rid: ReplUid) -> StoreResult<Vec<DeadProp>>;
    /// Replaces the dead properties of `rid`.
    fn set_props(&mut self, rid: ReplUid, props: &[DeadProp]) -> StoreResult<()>;
    /// A second handle on the same content, for a copy.
    fn duplicate(&mut self, payload: &Self::Payload) -> StoreResult<Self::Payload>;
    /// The content behind `payload` is no longer referenced.
    fn release(&mut self, payload: Self::Payload) -> StoreResult<()>;

    /// Up to `q.limit` resources below `q.root` (direct members for [`Depth::One`], every
    /// descendant otherwise) whose paths sort after `q.after`, in path order.
    fn page(&mut self, q: &PageQuery) -> StoreResult<Vec<(ResourcePath, Record<Self::Payload>)>>;
    /// Up to `q.limit` resources strictly inside `q.scope` (direct members for
    /// [`Depth::One`], every descendant for [`Depth::Infinity`], none for [`Depth::Zero`])
    /// whose last change is after `q.since`, in sequence order.
    fn changed(&mut self, q: &LogQuery) -> StoreResult<Vec<(ResourcePath, Record<Self::Payload>)>>;
    /// Up to `q.limit` tombstones after `q.since` in the same scope as
    /// [`changed`](Self::changed) (for [`Depth::Zero`]: at the scope's own path), in sequence
    /// order.
    fn removed(&mut self, q: &LogQuery) -> StoreResult<Vec<Tombstone>>;
    /// Removes the tombstones recorded before `before` and raises the low-water mark to the
    /// highest sequence number removed.
    fn purge(&mut self, before: SystemTime) -> StoreResult<PurgeReport>;
    /// The bytes `start..=end` of the content behind `payload`, if the backend reads them
    /// within this step; `None` to have them streamed afterwards by [`Backend::stream`]
    /// (large content).
    fn content(&mut self, payload: &Self::Payload, span: (u64, u64)) -> StoreResult<Pieces>;

    /// Whether the store may hold any lock row now; `false` lets a step skip reading them. The
    /// default says yes; a backend that knows it holds none answers cheaply.
    fn may_hold_locks(&mut self) -> StoreResult<bool> {
        Ok(true)
    }

    /// Lock rows rooted where `scan` says, expired ones included, in any order. The default
    /// reads none: a backend without lock rows holds no locks (and does not claim
    /// [`Capabilities::locking`](crate::Capabilities)).
    fn locks(&mut self, scan: &LockScan) -> StoreResult<Vec<Lock>> {
        let _ = scan;
        Ok(Vec::new())
    }

    /// Creates a lock row, or replaces the one with the same token (a refresh).
    fn put_lock(&mut self, lock: &Lock) -> StoreResult<()> {
        let _ = lock;
        Err(crate::lock::not_kept())
    }

    /// Removes a lock row.
    fn remove_lock(&mut self, lock: &Lock) -> StoreResult<()> {
        let _ = lock;
        Err(crate::lock::not_kept())
    }

    /// Removes every lock row that expired at or before `now`; returns how many (0 when the
    /// backend does not count them).
    fn sweep_locks(&mut self, now: SystemTime) -> StoreResult<u64> {
        let _ = now;
        Ok(0)
    }

    /// The subscription with `id`, expired or not. The default: none (a backend that keeps no
    /// subscriptions, and does not claim [`Capabilities::subscriptions`](crate::Capabilities)).
    fn subscription(&mut self, id: u64) -> StoreResult<Option<crate::Subscription>> {
        let _ = id;
        Ok(None)
    }

    /// Creates or replaces (by id) a subscription.
    fn put_subscription(&mut self, sub: &crate::Subscription) -> StoreResult<()> {
        let _ = sub;
        Err(crate::subscription::not_kept())
    }

    /// Removes a subscription.
    fn remove_subscription(&mut self, id: u64) -> StoreResult<()> {
        let _ = id;
        Err(crate::subscription::not_kept())
    }

    /// Removes every subscription that expired at or before `now`.
    fn sweep_subscriptions(&mut self, now: SystemTime) -> StoreResult<()> {
        let _ = now;
        Ok(())
    }

    /// The next change sequence number (one more than every number handed out before).
    fn next_seq(&mut self) -> StoreResult<Seq> {
        let c = self.counters()?;
        c.seq += 1;
        Ok(c.seq)
    }

    /// The highest sequence number of a visible change ([`ReplStore::horizon`](crate::ReplStore::horizon)).
    /// The default: [`current_seq`](Self::current_seq), right for a backend whose changes become
    /// visible in number order.
    fn horizon(&mut self) -> StoreResult<Seq> {
        self.current_seq()
    }

    /// The last sequence number handed out (in a write step that made changes); otherwise the
    /// watermark: every change numbered at or below it is visible, and no change can still
    /// appear at or below it.
    fn current_seq(&mut self) -> StoreResult<Seq> {
        Ok(self.counters()?.seq)
    }

    /// A fresh repl-uid counter.
    fn next_rid(&mut self) -> StoreResult<u64> {
        let c = self.counters()?;
        c.rid += 1;
        Ok(c.rid)
    }

    /// The low-water mark: tombstones at or below it may have been purged.
    fn low_water(&mut self) -> StoreResult<Seq> {
        Ok(self.counters()?.low_water)
    }

    /// The kind of the resource at `path`, if any. Provided; a backend may answer it without
    /// loading the whole record.
    fn kind(&mut self, path: &ResourcePath) -> StoreResult<Option<ResourceKind>> {
        Ok(self.get(path)?.map(|r| r.kind))
    }

    /// Sets the content version of the collection at `path` (if it exists), nothing else.
    /// Provided as read-then-put; a backend may do it in place.
    fn set_content_version(&mut self, path: &ResourcePath, seq: Seq) -> StoreResult<()> {
        if let Some(mut r) = self.get(path)? {
            r.content_version = seq;
            self.put(path, &r)?;
        }
        Ok(())
    }
}

/// Evaluates `cond` for a request on `target`, looking up the tokens of each path it names
/// (`None` for a path with no resource); `locked(path, token)` says whether a lock in force
/// with that token covers the path. For reads, which do not run on [`Rows`]; writes use
/// `check`.
pub fn evaluate(
    target: &ResourcePath,
    cond: &Condition,
    mut lookup: impl FnMut(&ResourcePath) -> StoreResult<Option<Tokens>>,
    locked: impl FnMut(&ResourcePath, &str) -> bool,
) -> StoreResult<()> {
    if cond.is_empty() {
        return Ok(());
    }
    let mut states = Vec::new();
    for p in cond.paths(target) {
        let tokens = lookup(&p)?;
        states.push((p, tokens));
    }
    let found = |p: &ResourcePath| {
        states
            .iter()
            .find(|(q, _)| q == p)
            .and_then(|(_, t)| t.clone())
    };
    if cond.evaluate_locked(target, found, locked) {
        Ok(())
    } else {
        Err(StoreError::precondition_failed())
    }
}

/// Evaluates `cond` for a request on `target` against the current rows and the locks `held`
/// (read by the step with a scan that covers every path the condition names).
pub(crate) fn check<R: Rows + ?Sized>(
    rows: &mut R,
    target: &ResourcePath,
    cond: &Condition,
    held: &lock::Held,
) -> StoreResult<()> {
    let store = rows.store_id();
    evaluate(
        target,
        cond,
        |p| Ok(rows.get(p)?.map(|r| r.meta(store, p).tokens())),
        |p, t| held.holds(p, t),
    )
}

/// Whether a listing of the resource at `path` (of `kind`) with `opts` has anything to look
/// at: [`ErrorKind::NotCollection`] for an item, `false` for depth 0 or a limit of 0.
pub fn listable(kind: ResourceKind, path: &ResourcePath, opts: &ListOptions) -> StoreResult<bool> {
    if kind != ResourceKind::Collection {
        return Err(StoreError::new(
            ErrorKind::NotCollection,
            format!("{path} is not a collection"),
        ));
    }
    Ok(opts.depth != Depth::Zero && opts.limit > 0)
}

/// Checks a byte range against a content length: the inclusive `(start, end)` to read, or
/// [`ErrorKind::InvalidInput`] when the range does not fit.
pub fn resolve_range(len: u64, range: Option<ByteRange>) -> StoreResult<(u64, u64)> {
    match range {
        None => Ok((0, len.saturating_sub(1))),
        Some(r) if r.start <= r.end && r.end < len => Ok((r.start, r.end)),
        Some(_) => Err(StoreError::new(
            ErrorKind::InvalidInput,
            "byte range out of bounds",
        )),
    }
}

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

pub mod sql;

use std::time::SystemTime;

use crate::condition::{Condition, Tokens};
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::path::ResourcePath;
use crate::tags::{ReplUid, Seq, StoreId};
use crate::types::{
    ByteRange, ChangeKind, DeadProp, Depth, ListOptions, Meta, PropPatch, ResourceKind,
    TransferOptions, WriteOutcome,
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
    /// The backend's handle on the content.
    pub payload: P,
}

impl<P> Record<P> {
    /// The metadata the contract hands out for this record at `path`.
    pub fn meta(&self, store: StoreId, path: &ResourcePath) -> Meta {
        Meta {
            path: path.clone(),
            kind: self.kind,
            store,
            rid: self.rid,
            version: self.version,
            content_version: self.content_version,
            len: self.len,
            content_type: self.content_type.clone(),
            created: self.created,
            modified: self.modified,
        }
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
    /// The backend's content handle.
    type Payload: Clone;

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
    /// The next change sequence number (one more than every number handed out before).
    fn next_seq(&mut self) -> StoreResult<Seq>;
    /// The last sequence number handed out.
    fn current_seq(&mut self) -> StoreResult<Seq>;
    /// A fresh repl-uid counter.
    fn next_rid(&mut self) -> StoreResult<u64>;
    /// Dead properties of `rid`, in name order.
    fn props(&mut self, rid: ReplUid) -> StoreResult<Vec<DeadProp>>;
    /// Replaces the dead properties of `rid`.
    fn set_props(&mut self, rid: ReplUid, props: &[DeadProp]) -> StoreResult<()>;
    /// A second handle on the same content, for a copy.
    fn duplicate(&mut self, payload: &Self::Payload) -> StoreResult<Self::Payload>;
    /// The content behind `payload` is no longer referenced.
    fn release(&mut self, payload: Self::Payload) -> StoreResult<()>;

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
/// (`None` for a path with no resource). For reads, which do not run on [`Rows`]; writes use
/// [`check`].
pub fn evaluate(
    target: &ResourcePath,
    cond: &Condition,
    mut lookup: impl FnMut(&ResourcePath) -> StoreResult<Option<Tokens>>,
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
    if cond.evaluate(target, found) {
        Ok(())
    } else {
        Err(StoreError::precondition_failed())
    }
}

/// Evaluates `cond` for a request on `target` against the current rows.
pub fn check<R: Rows>(rows: &mut R, target: &ResourcePath, cond: &Condition) -> StoreResult<()> {
    let store = rows.store_id();
    evaluate(target, cond, |p| {
        Ok(rows.get(p)?.map(|r| r.meta(store, p).tokens()))
    })
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

/// The parent of `path`, which must be an existing collection.
fn check_parent<R: Rows>(rows: &mut R, path: &ResourcePath) -> StoreResult<ResourcePath> {
    let parent = path
        .parent()
        .ok_or_else(|| StoreError::new(ErrorKind::RootImmutable, "the root cannot be replaced"))?;
    match rows.kind(&parent)? {
        Some(ResourceKind::Collection) => Ok(parent),
        _ => Err(StoreError::new(
            ErrorKind::ParentMissing,
            format!("parent collection {parent} does not exist"),
        )),
    }
}

fn get<R: Rows>(rows: &mut R, path: &ResourcePath) -> StoreResult<Record<R::Payload>> {
    rows.get(path)?.ok_or_else(|| StoreError::not_found(path))
}

/// Stores `record` at `path` as a new change: the next sequence number becomes its version (and
/// the content version of an item, or of a new collection).
fn upsert<R: Rows>(
    rows: &mut R,
    path: &ResourcePath,
    mut record: Record<R::Payload>,
    now: SystemTime,
) -> StoreResult<Record<R::Payload>> {
    let seq = rows.next_seq()?;
    record.version = seq;
    if record.kind == ResourceKind::Item || record.content_version == 0 {
        record.content_version = seq;
    }
    record.modified = now;
    rows.put(path, &record)?;
    Ok(record)
}

/// Marks the membership of `parent` as changed at `seq` (its contenttag moves; it is not a
/// change of the parent itself).
fn touch<R: Rows>(rows: &mut R, parent: &ResourcePath, seq: Seq) -> StoreResult<()> {
    rows.set_content_version(parent, seq)
}

/// `root` (if it exists) and everything below it, root first.
fn subtree<R: Rows>(
    rows: &mut R,
    root: &ResourcePath,
) -> StoreResult<Vec<(ResourcePath, Record<R::Payload>)>> {
    let Some(top) = rows.get(root)? else {
        return Ok(Vec::new());
    };
    let mut out = vec![(root.clone(), top)];
    out.extend(rows.descendants(root)?);
    Ok(out)
}

/// Removes `root` and everything below it, a tombstone for each, and moves the parent's
/// contenttag. Returns the root's old state.
fn remove_tree<R: Rows>(
    rows: &mut R,
    root: &ResourcePath,
    now: SystemTime,
) -> StoreResult<Option<Meta>> {
    let store = rows.store_id();
    let mut first = None;
    for (p, r) in subtree(rows, root)? {
        if first.is_none() {
            first = Some(r.meta(store, &p));
        }
        rows.remove(&p)?;
        rows.set_props(r.rid, &[])?;
        let seq = rows.next_seq()?;
        rows.tombstone(Tombstone {
            seq,
            rid: r.rid,
            path: p,
            kind: r.kind,
            at: now,
        })?;
        rows.release(r.payload)?;
    }
    if let Some(parent) = root.parent() {
        let seq = rows.current_seq()?;
        touch(rows, &parent, seq)?;
    }
    Ok(first)
}

fn outcome<R: Rows>(
    rows: &mut R,
    path: &ResourcePath,
    created: bool,
    transformed: bool,
) -> StoreResult<WriteOutcome> {
    let store = rows.store_id();
    Ok(WriteOutcome {
        meta: get(rows, path)?.meta(store, path),
        created,
        transformed,
    })
}

/// PUT: creates or replaces the item at `path` with content `payload` of `len` bytes.
/// `transformed` is passed through to the outcome. On error the payload is released.
pub fn put<R: Rows>(
    rows: &mut R,
    path: &ResourcePath,
    payload: R::Payload,
    len: u64,
    content_type: Option<String>,
    cond: &Condition,
    transformed: bool,
) -> StoreResult<WriteOutcome> {
    let checked = (|| {
        let parent = check_parent(rows, path)?;
        check(rows, path, cond)?;
        let existing = rows.get(path)?;
        if existing
            .as_ref()
            .is_some_and(|r| r.kind == ResourceKind::Collection)
        {
            return Err(StoreError::new(
                ErrorKind::IsCollection,
                format!("{path} is a collection"),
            ));
        }
        Ok((parent, existing))
    })();
    let (parent, existing) = match checked {
        Ok(v) => v,
        Err(e) => {
            rows.release(payload)?;
            return Err(e);
        }
    };
    let now = SystemTime::now();
    let created = existing.is_none();
    let record = match existing {
        Some(old) => {
            rows.release(old.payload.clone())?;
            Record {
                len,
                content_type,
                payload,
                ..old
            }
        }
        None => Record {
            rid: ReplUid::new(rows.store_id(), rows.next_rid()?),
            kind: ResourceKind::Item,
            version: 0,
            content_version: 0,
            len,
            content_type,
            created: now,
            modified: now,
            payload,
        },
    };
    let record = upsert(rows, path, record, now)?;
    touch(rows, &parent, record.version)?;
    outcome(rows, path, created, transformed)
}

/// MKCOL: a new, empty collection at `path`, whose content is `empty`.
pub fn create_collection<R: Rows>(
    rows: &mut R,
    path: &ResourcePath,
    cond: &Condition,
    empty: R::Payload,
) -> StoreResult<WriteOutcome> {
    if rows.kind(path)?.is_some() {
        return Err(StoreError::new(
            ErrorKind::AlreadyExists,
            format!("{path} already exists"),
        ));
    }
    let parent = check_parent(rows, path)?;
    check(rows, path, cond)?;
    let now = SystemTime::now();
    let record = Record {
        rid: ReplUid::new(rows.store_id(), rows.next_rid()?),
        kind: ResourceKind::Collection,
        version: 0,
        content_version: 0,
        len: 0,
        content_type: None,
        created: now,
        modified: now,
        payload: empty,
    };
    let record = upsert(rows, path, record, now)?;
    touch(rows, &parent, record.version)?;
    outcome(rows, path, true, false)
}

/// DELETE: `path` and everything below it.
pub fn delete<R: Rows>(rows: &mut R, path: &ResourcePath, cond: &Condition) -> StoreResult<Meta> {
    if path.is_root() {
        return Err(StoreError::new(
            ErrorKind::RootImmutable,
            "the root cannot be deleted",
        ));
    }
    get(rows, path)?;
    check(rows, path, cond)?;
    remove_tree(rows, path, SystemTime::now())?.ok_or_else(|| StoreError::not_found(path))
}

/// Checks a COPY or MOVE and clears an existing destination when allowed. Returns whether the
/// destination existed.
fn prepare_transfer<R: Rows>(
    rows: &mut R,
    from: &ResourcePath,
    to: &ResourcePath,
    opts: &TransferOptions,
    moving: bool,
    now: SystemTime,
) -> StoreResult<bool> {
    crate::types::check_transfer_paths(from, to, moving)?;
    get(rows, from)?;
    check(rows, from, &opts.condition)?;
    check_parent(rows, to)?;
    let exists = rows.kind(to)?.is_some();
    if exists {
        if !opts.overwrite {
            return Err(StoreError::new(
                ErrorKind::DestinationExists,
                "the destination exists and Overwrite is F",
            ));
        }
        if from.is_within(to) {
            return Err(StoreError::new(
                ErrorKind::DestinationInsideSource,
                "the destination is an ancestor of the source",
            ));
        }
        remove_tree(rows, to, now)?;
    }
    Ok(exists)
}

/// COPY: new repl-uids for every copy; `Depth: 0` copies a collection without its members.
pub fn copy<R: Rows>(
    rows: &mut R,
    from: &ResourcePath,
    to: &ResourcePath,
    opts: &TransferOptions,
) -> StoreResult<WriteOutcome> {
    let now = SystemTime::now();
    let existed = prepare_transfer(rows, from, to, opts, false, now)?;
    let mut sources = subtree(rows, from)?;
    if opts.depth != Depth::Infinity {
        sources.truncate(1);
    }
    for (src, record) in sources {
        let Some(dst) = src.rebase(from, to) else {
            continue;
        };
        let props = rows.props(record.rid)?;
        let copy = Record {
            rid: ReplUid::new(rows.store_id(), rows.next_rid()?),
            version: 0,
            content_version: 0,
            created: now,
            payload: rows.duplicate(&record.payload)?,
            ..record
        };
        let copy = upsert(rows, &dst, copy, now)?;
        rows.set_props(copy.rid, &props)?;
    }
    if let Some(parent) = to.parent() {
        let seq = rows.current_seq()?;
        touch(rows, &parent, seq)?;
    }
    outcome(rows, to, !existed, false)
}

/// MOVE: every resource below `from` goes to the same place below `to`, keeping its repl-uid,
/// its content and its dead properties; a tombstone at each old path comes before the upsert.
pub fn rename<R: Rows>(
    rows: &mut R,
    from: &ResourcePath,
    to: &ResourcePath,
    opts: &TransferOptions,
) -> StoreResult<WriteOutcome> {
    let now = SystemTime::now();
    let existed = prepare_transfer(rows, from, to, opts, true, now)?;
    for (src, record) in subtree(rows, from)? {
        let Some(dst) = src.rebase(from, to) else {
            continue;
        };
        rows.remove(&src)?;
        let seq = rows.next_seq()?;
        rows.tombstone(Tombstone {
            seq,
            rid: record.rid,
            path: src,
            kind: record.kind,
            at: now,
        })?;
        upsert(rows, &dst, record, now)?;
    }
    let seq = rows.current_seq()?;
    for parent in [from.parent(), to.parent()].into_iter().flatten() {
        touch(rows, &parent, seq)?;
    }
    outcome(rows, to, !existed, false)
}

/// PROPPATCH: applies `patch` in order, all or nothing.
pub fn patch_props<R: Rows>(
    rows: &mut R,
    path: &ResourcePath,
    patch: Vec<PropPatch>,
    cond: &Condition,
) -> StoreResult<WriteOutcome> {
    let record = get(rows, path)?;
    check(rows, path, cond)?;
    let mut props = rows.props(record.rid)?;
    for op in patch {
        match op {
            PropPatch::Set(p) => match props.iter_mut().find(|q| q.name == p.name) {
                Some(q) => q.value = p.value,
                None => props.push(p),
            },
            PropPatch::Remove(name) => props.retain(|q| q.name != name),
        }
    }
    props.sort_by(|a, b| a.name.cmp(&b.name));
    rows.set_props(record.rid, &props)?;
    let record = upsert(rows, path, record, SystemTime::now())?;
    if let Some(parent) = path.parent() {
        touch(rows, &parent, record.version)?;
    }
    outcome(rows, path, false, false)
}

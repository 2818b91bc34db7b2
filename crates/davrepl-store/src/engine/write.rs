//! The write rules: PUT, MKCOL, DELETE, COPY, MOVE and PROPPATCH as row operations.

use std::time::SystemTime;

use super::lock::{self, Held, Touch};
use super::{Record, Rows, Tombstone, check};
use crate::condition::Condition;
use crate::digest::Digests;
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::path::ResourcePath;
use crate::tags::{ReplUid, Seq};
use crate::types::{Depth, Meta, PropPatch, ResourceKind, TransferOptions, WriteOutcome};

/// The parent of `path`, which must be an existing collection.
pub(super) fn check_parent<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
) -> StoreResult<ResourcePath> {
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

/// Reads the lock rows of `scan` and evaluates `cond` for a request on `target` against the
/// rows and those locks; returns the locks for the lock check.
fn check_with_locks<R: Rows + ?Sized>(
    rows: &mut R,
    target: &ResourcePath,
    cond: &Condition,
    scan: impl FnOnce() -> super::LockScan,
    now: SystemTime,
) -> StoreResult<Held> {
    let held = Held::read(rows, scan, now)?;
    check(rows, target, cond, &held)?;
    Ok(held)
}

fn get<R: Rows + ?Sized>(rows: &mut R, path: &ResourcePath) -> StoreResult<Record<R::Payload>> {
    rows.get(path)?.ok_or_else(|| StoreError::not_found(path))
}

/// Stores `record` at `path` as a new change: the next sequence number becomes its version (and
/// the content version of an item, or of a new collection), `modified` its modification time.
fn upsert<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    mut record: Record<R::Payload>,
    modified: SystemTime,
) -> StoreResult<Record<R::Payload>> {
    let seq = rows.next_seq()?;
    record.version = seq;
    if record.kind == ResourceKind::Item || record.content_version == 0 {
        record.content_version = seq;
    }
    record.modified = modified;
    rows.put(path, &record)?;
    Ok(record)
}

/// Marks the membership of `parent` as changed at `seq` (its contenttag moves; it is not a
/// change of the parent itself).
fn touch<R: Rows + ?Sized>(rows: &mut R, parent: &ResourcePath, seq: Seq) -> StoreResult<()> {
    rows.set_content_version(parent, seq)
}

/// `root` (if it exists) and everything below it, root first.
fn subtree<R: Rows + ?Sized>(
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
fn remove_tree<R: Rows + ?Sized>(
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
        let c = rows.counters()?;
        c.bytes = c.bytes.saturating_sub(r.len);
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

fn outcome<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    created: bool,
    transformed: bool,
) -> StoreResult<WriteOutcome> {
    let store = rows.store_id();
    Ok(WriteOutcome {
        meta: get(rows, path)?.into_meta(store, path).0,
        created,
        transformed,
    })
}

/// An item's new content, as a PUT brings it.
#[derive(Debug)]
#[non_exhaustive]
pub struct NewContent<P> {
    /// The backend's handle on the content.
    pub payload: P,
    /// Its length in bytes.
    pub len: u64,
    /// Its content type.
    pub content_type: Option<String>,
    /// Its digests, if known.
    pub digests: Option<Digests>,
    /// The modification time to record (else the time of the write).
    pub modified: Option<SystemTime>,
    /// The backend changed the content (reported in the outcome).
    pub transformed: bool,
    /// Refuse the write ([`ErrorKind::QuotaExceeded`]) if the store would then hold more
    /// bytes than this.
    pub quota: Option<u64>,
}

impl<P> NewContent<P> {
    /// `len` bytes behind `payload`, nothing else known.
    pub fn new(payload: P, len: u64) -> Self {
        Self {
            payload,
            len,
            content_type: None,
            digests: None,
            modified: None,
            transformed: false,
            quota: None,
        }
    }
}

/// The error of a write that would take the store over `quota` bytes.
fn over_quota(quota: u64) -> StoreError {
    StoreError::new(
        ErrorKind::QuotaExceeded,
        format!("the store's quota of {quota} bytes would be exceeded"),
    )
}

/// PUT: creates or replaces the item at `path` with `content`. On error the payload is
/// released.
pub fn put<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    content: NewContent<R::Payload>,
    cond: &Condition,
) -> StoreResult<WriteOutcome> {
    let checked = (|| {
        let parent = check_parent(rows, path)?;
        let scan = || lock::scan(&[path], &[], path, cond);
        let held = check_with_locks(rows, path, cond, scan, SystemTime::now())?;
        let existing = rows.get(path)?;
        let touch = match &existing {
            Some(r) if r.kind == ResourceKind::Collection => {
                return Err(StoreError::new(
                    ErrorKind::IsCollection,
                    format!("{path} is a collection"),
                ));
            }
            Some(_) => Touch::Resource(path),
            None => Touch::Member(path),
        };
        lock::guard(&held, cond, &[touch])?;
        Ok((parent, existing))
    })();
    match checked {
        Ok((parent, existing)) => store_item(rows, path, &parent, existing, content),
        Err(e) => {
            rows.release(content.payload)?;
            Err(e)
        }
    }
}

/// Stores an item at `path` (below the collection `parent`, replacing `existing`) once every
/// check has passed.
pub(super) fn store_item<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    parent: &ResourcePath,
    existing: Option<Record<R::Payload>>,
    content: NewContent<R::Payload>,
) -> StoreResult<WriteOutcome> {
    let now = SystemTime::now();
    let created = existing.is_none();
    let NewContent {
        payload,
        len,
        content_type,
        digests,
        modified,
        transformed,
        quota,
    } = content;
    let old_len = existing.as_ref().map_or(0, |r| r.len);
    let bytes = rows
        .counters()?
        .bytes
        .saturating_sub(old_len)
        .saturating_add(len);
    if let Some(q) = quota
        && len > old_len
        && bytes > q
    {
        rows.release(payload)?;
        return Err(over_quota(q));
    }
    rows.counters()?.bytes = bytes;
    let record = match existing {
        Some(old) => {
            rows.release(old.payload.clone())?;
            Record {
                len,
                content_type,
                digests,
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
            digests,
            payload,
        },
    };
    let record = upsert(rows, path, record, modified.unwrap_or(now))?;
    touch(rows, parent, record.version)?;
    outcome(rows, path, created, transformed)
}

/// MKCOL: a new, empty collection at `path`.
pub fn create_collection<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    cond: &Condition,
) -> StoreResult<WriteOutcome> {
    if rows.kind(path)?.is_some() {
        return Err(StoreError::new(
            ErrorKind::AlreadyExists,
            format!("{path} already exists"),
        ));
    }
    let parent = check_parent(rows, path)?;
    let now = SystemTime::now();
    let scan = || lock::scan(&[path], &[], path, cond);
    let held = check_with_locks(rows, path, cond, scan, now)?;
    lock::guard(&held, cond, &[Touch::Member(path)])?;
    let rid = ReplUid::new(rows.store_id(), rows.next_rid()?);
    let record = upsert(rows, path, Record::collection(rid, now), now)?;
    touch(rows, &parent, record.version)?;
    outcome(rows, path, true, false)
}

/// DELETE: `path` and everything below it.
pub fn delete<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    cond: &Condition,
) -> StoreResult<Meta> {
    if path.is_root() {
        return Err(StoreError::new(
            ErrorKind::RootImmutable,
            "the root cannot be deleted",
        ));
    }
    get(rows, path)?;
    let now = SystemTime::now();
    let scan = || lock::scan(&[], &[path], path, cond);
    let held = check_with_locks(rows, path, cond, scan, now)?;
    lock::guard(&held, cond, &[Touch::Tree(path)])?;
    let old = remove_tree(rows, path, now)?.ok_or_else(|| StoreError::not_found(path))?;
    lock::removed(rows, &held, path)?;
    Ok(old)
}

/// The lock rows a COPY or MOVE reads.
pub(super) fn transfer_scan(
    from: &ResourcePath,
    to: &ResourcePath,
    cond: &Condition,
    moving: bool,
) -> super::LockScan {
    if moving {
        lock::scan(&[], &[from, to], from, cond)
    } else {
        lock::scan(&[from], &[to], from, cond)
    }
}

/// Checks a COPY or MOVE and clears an existing destination when allowed. Returns whether the
/// destination existed, and the locks read.
fn prepare_transfer<R: Rows + ?Sized>(
    rows: &mut R,
    from: &ResourcePath,
    to: &ResourcePath,
    opts: &TransferOptions,
    moving: bool,
    now: SystemTime,
) -> StoreResult<(bool, Held)> {
    crate::types::check_transfer_paths(from, to, moving)?;
    get(rows, from)?;
    let scan = || transfer_scan(from, to, &opts.condition, moving);
    let held = check_with_locks(rows, from, &opts.condition, scan, now)?;
    check_parent(rows, to)?;
    let exists = rows.kind(to)?.is_some();
    let mut touches = vec![if exists {
        Touch::Tree(to)
    } else {
        Touch::Member(to)
    }];
    if moving {
        touches.push(Touch::Tree(from));
    }
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
        lock::guard(&held, &opts.condition, &touches)?;
        if !moving {
            check_copy_quota(rows, from, Some(to), opts)?;
        }
        remove_tree(rows, to, now)?;
        lock::removed(rows, &held, to)?;
    } else {
        lock::guard(&held, &opts.condition, &touches)?;
        if !moving {
            check_copy_quota(rows, from, None, opts)?;
        }
    }
    Ok((exists, held))
}

/// Refuses a COPY of `from` (replacing the subtree at `replaced`) that would take the store
/// over `opts.quota`, before anything changes.
fn check_copy_quota<R: Rows + ?Sized>(
    rows: &mut R,
    from: &ResourcePath,
    replaced: Option<&ResourcePath>,
    opts: &TransferOptions,
) -> StoreResult<()> {
    let Some(q) = opts.quota else { return Ok(()) };
    let mut sources = subtree(rows, from)?;
    if opts.depth != Depth::Infinity {
        sources.truncate(1);
    }
    let incoming: u64 = sources.iter().map(|(_, r)| r.len).sum();
    let freed: u64 = match replaced {
        Some(to) => subtree(rows, to)?.iter().map(|(_, r)| r.len).sum(),
        None => 0,
    };
    let bytes = rows.counters()?.bytes.saturating_sub(freed);
    if incoming > freed && bytes.saturating_add(incoming) > q {
        return Err(over_quota(q));
    }
    Ok(())
}

/// COPY: new repl-uids for every copy; `Depth: 0` copies a collection without its members.
pub fn copy<R: Rows + ?Sized>(
    rows: &mut R,
    from: &ResourcePath,
    to: &ResourcePath,
    opts: &TransferOptions,
) -> StoreResult<WriteOutcome> {
    let now = SystemTime::now();
    let (existed, _) = prepare_transfer(rows, from, to, opts, false, now)?;
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
        let c = rows.counters()?;
        c.bytes = c.bytes.saturating_add(copy.len);
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
pub fn rename<R: Rows + ?Sized>(
    rows: &mut R,
    from: &ResourcePath,
    to: &ResourcePath,
    opts: &TransferOptions,
) -> StoreResult<WriteOutcome> {
    let now = SystemTime::now();
    let (existed, held) = prepare_transfer(rows, from, to, opts, true, now)?;
    lock::removed(rows, &held, from)?;
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

/// PROPPATCH: applies `patch` in order, all or nothing, and records `modified` as the
/// modification time when given.
pub fn patch_props<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    patch: Vec<PropPatch>,
    cond: &Condition,
    modified: Option<SystemTime>,
) -> StoreResult<WriteOutcome> {
    let record = get(rows, path)?;
    let scan = || lock::scan(&[path], &[], path, cond);
    let held = check_with_locks(rows, path, cond, scan, SystemTime::now())?;
    lock::guard(&held, cond, &[Touch::Resource(path)])?;
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
    let record = upsert(rows, path, record, modified.unwrap_or_else(SystemTime::now))?;
    if let Some(parent) = path.parent() {
        touch(rows, &parent, record.version)?;
    }
    outcome(rows, path, false, false)
}

/// Records the digests `of` names with its item if the item still holds the content they are
/// of (the same repl-uid and content version), added to those it has: no new version and no
/// change-log row, since neither the content nor its tags change. Returns whether anything was
/// recorded.
pub fn record_digests<R: Rows + ?Sized>(rows: &mut R, of: &DigestsOf) -> StoreResult<bool> {
    let Some(mut record) = rows.get(&of.path)? else {
        return Ok(false);
    };
    if record.kind != ResourceKind::Item
        || record.rid != of.rid
        || record.content_version != of.content_version
    {
        return Ok(false);
    }
    let merged = record.digests.unwrap_or_default().or(of.digests).known();
    if merged == record.digests {
        return Ok(false);
    }
    record.digests = merged;
    rows.put(&of.path, &record)?;
    Ok(true)
}

/// Digests computed from an item's content, for [`record_digests`].
#[derive(Debug, Clone)]
pub struct DigestsOf {
    /// The item.
    pub path: ResourcePath,
    /// Its repl-uid when the content was read.
    pub rid: ReplUid,
    /// Its content version when the content was read.
    pub content_version: Seq,
    /// What was computed.
    pub digests: Digests,
}

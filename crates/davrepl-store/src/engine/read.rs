//! The read rules: what HEAD, PROPFIND, a listing page, a content read and a change page
//! return, assembled from row reads inside one consistent step.

use bytes::Bytes;

use super::{LogQuery, PageQuery, Record, Rows, evaluate, listable, resolve_range};
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::path::ResourcePath;
use crate::tags::{ReplUid, Seq};
use crate::types::{
    Change, ChangeKind, ChangePage, ChangesQuery, Depth, Entry, GetOptions, ListOptions, Listing,
    Meta, ResourceKind,
};

fn must<R: Rows + ?Sized>(rows: &mut R, path: &ResourcePath) -> StoreResult<Record<R::Payload>> {
    rows.get(path)?.ok_or_else(|| StoreError::not_found(path))
}

/// Metadata of one resource.
pub(super) fn head<R: Rows + ?Sized>(rows: &mut R, path: &ResourcePath) -> StoreResult<Meta> {
    Ok(must(rows, path)?.meta(rows.store_id(), path))
}

/// Metadata and dead properties of one resource.
pub(super) fn entry<R: Rows + ?Sized>(rows: &mut R, path: &ResourcePath) -> StoreResult<Entry> {
    let r = must(rows, path)?;
    Ok(Entry {
        meta: r.meta(rows.store_id(), path),
        props: rows.props(r.rid)?,
    })
}

/// The page query of a listing: one row more than asked, to know whether more follow.
pub(super) fn page_query(path: &ResourcePath, opts: &ListOptions) -> PageQuery {
    PageQuery {
        root: path.clone(),
        depth: opts.depth,
        after: opts.after.clone(),
        limit: opts.limit.saturating_add(1),
    }
}

/// One page of a listing, in path order.
pub(super) fn list<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    opts: &ListOptions,
) -> StoreResult<Listing> {
    if !listable(must(rows, path)?.kind, path, opts)? {
        return Ok(Listing::default());
    }
    let mut found = rows.page(&page_query(path, opts))?;
    let more = found.len() > opts.limit;
    found.truncate(opts.limit);
    let store = rows.store_id();
    let mut entries = Vec::with_capacity(found.len());
    for (p, r) in found {
        let props = if opts.with_props {
            rows.props(r.rid)?
        } else {
            Vec::new()
        };
        entries.push(Entry {
            meta: r.meta(store, &p),
            props,
        });
    }
    let next = if more {
        entries.last().map(|e| e.meta.path.clone())
    } else {
        None
    };
    Ok(Listing { entries, next })
}

/// What a content read found inside its step: the state, the backend's handle on the bytes,
/// the inclusive range to send, and the bytes themselves when the backend read them already.
pub(super) struct Found<P> {
    pub(super) meta: Meta,
    pub(super) payload: P,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) bytes: Option<Vec<Bytes>>,
}

/// Checks a content read (an item, the condition, the range) and reads small content.
pub(super) fn content<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    opts: &GetOptions,
) -> StoreResult<Found<R::Payload>> {
    let r = must(rows, path)?;
    if r.kind == ResourceKind::Collection {
        return Err(StoreError::new(
            ErrorKind::IsCollection,
            format!("{path} is a collection"),
        ));
    }
    let store = rows.store_id();
    let held = if opts.condition.needs_locks() {
        let scan = || super::lock::scan(&[], &[], path, &opts.condition);
        super::lock::Held::read(rows, scan, std::time::SystemTime::now())?
    } else {
        super::lock::Held::default()
    };
    evaluate(
        path,
        &opts.condition,
        |p| Ok(rows.get(p)?.map(|r| r.meta(store, p).tokens())),
        |p, t| held.holds(p, t),
    )?;
    let (start, end) = resolve_range(r.len, opts.range)?;
    let bytes = if r.len == 0 {
        Some(Vec::new())
    } else {
        rows.content(&r.payload, (start, end))?
    };
    let (meta, payload) = r.into_meta(store, path);
    Ok(Found {
        meta,
        payload,
        start,
        end,
        bytes,
    })
}

/// The log queries of a change page: one row more than asked from each.
pub(super) fn log_query(q: &ChangesQuery) -> LogQuery {
    LogQuery {
        scope: q.scope.clone(),
        depth: q.depth,
        since: q.since,
        limit: q.limit.saturating_add(1),
    }
}

/// A page of the change log in scope: live rows and tombstones merged in sequence order, cut
/// at the limit, with the watermark up to which the page is complete.
pub(super) fn changes<R: Rows + ?Sized>(rows: &mut R, q: &ChangesQuery) -> StoreResult<ChangePage> {
    let store = rows.store_id();
    let lq = log_query(q);
    // Only changes at or below the watermark: on a store whose writers commit out of number
    // order, a visible change above it may still have an older one below it in flight. (Each
    // log read is in number order, so dropping its top rows leaves a complete prefix.)
    let upto = rows.current_seq()?;
    let mut found: Vec<(Seq, ChangeKind, Option<ReplUid>)> = Vec::new();
    if (q.depth == Depth::Zero || q.include_scope)
        && let Some(r) = rows.get(&q.scope)?.filter(|r| r.version > q.since)
    {
        found.push((
            r.version,
            ChangeKind::Upsert(r.meta(store, &q.scope)),
            Some(r.rid),
        ));
    }
    for (p, r) in rows.changed(&lq)? {
        found.push((
            r.version,
            ChangeKind::Upsert(r.meta(store, &p)),
            Some(r.rid),
        ));
    }
    if q.include_removed {
        for t in rows.removed(&lq)? {
            found.push((t.seq, t.change(), None));
        }
    }
    found.retain(|f| f.0 <= upto);
    found.sort_by_key(|f| f.0);
    let more = found.len() > q.limit;
    found.truncate(q.limit);
    let watermark = if more {
        found.last().map_or(q.since, |f| f.0)
    } else {
        // Never below where the caller already is: a watermark a store computes from the
        // writers in flight may dip for a moment, and nothing at or below `since` is new.
        upto.max(q.since)
    };
    let mut changes = Vec::with_capacity(found.len());
    for (seq, kind, rid) in found {
        let props = match rid {
            Some(rid) if q.with_props => rows.props(rid)?,
            _ => Vec::new(),
        };
        changes.push(Change { seq, kind, props });
    }
    Ok(ChangePage {
        changes,
        watermark,
        more,
        low_water: rows.low_water()?,
    })
}

//! What a step's view knows: rows fetched from the database in one pipelined round trip per
//! [`Wants`], and what a run of the engine found missing ([`Need`]).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use davrepl_store::chunks::slice_chunk;
use davrepl_store::engine::sql::{self, Columns, Param};
use davrepl_store::engine::sql::{LockColumns, SubscriptionColumns};
use davrepl_store::engine::{
    Counters, LockScan, LogQuery, PageQuery, Plan, Record, Tombstone, resolve_range,
};
use davrepl_store::{
    ByteRange, DeadProp, Lock, PropName, ResourceKind, ResourcePath, StoreId, StoreResult,
};
use deadpool_postgres::ClientWrapper;
use futures_util::future::try_join_all;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::{CHUNK, INLINE_READ, hot, pg_err};

pub(crate) type Rec = Record<Option<i64>>;

/// What to fetch: the engine's plan, plus what a run found missing beyond it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Wants {
    pub(crate) plan: Plan,
    /// Fresh blob ids, this many (besides those of `plan.copies_of`).
    pub(crate) blobs: i64,
    /// Bytes `start..=end` of a blob.
    pub(crate) content: Option<(i64, u64, u64)>,
    /// How many tombstones were recorded before this time, and the highest of their numbers.
    pub(crate) purge: Option<i64>,
    /// Dead properties of these repl-uid counters.
    pub(crate) props_rids: Vec<i64>,
    /// Lock rows (a read's, from its plan; a write's only when its counters row says the
    /// store holds any, see `View::may_hold_locks`).
    pub(crate) locks: Option<LockScan>,
    /// The watermark (a write's counters leave it out).
    pub(crate) watermark: bool,
}

impl From<Plan> for Wants {
    fn from(plan: Plan) -> Self {
        Self {
            locks: plan.locks.clone(),
            plan,
            ..Self::default()
        }
    }
}

/// What a run asked for and did not find.
#[derive(Debug)]
pub(crate) enum Need {
    Path(ResourcePath),
    Tree(ResourcePath),
    Props,
    Blobs,
    Page(PageQuery),
    Log(LogQuery),
    Content(i64, u64, u64),
    Purge(i64),
    Counters,
    Watermark,
    Locks(LockScan),
    Subscription(u64),
}

impl Need {
    /// What to fetch to satisfy this need (and, for properties, every other row's).
    pub(crate) fn wants(self, known: &Known) -> Wants {
        let mut w = Wants::default();
        match self {
            Need::Path(p) => w.plan.paths.push(p),
            Need::Tree(p) => w.plan.trees.push(p),
            Need::Props => {
                // Every known row without properties: a listing or change page needs them all.
                let rows = known.rows.values().flatten();
                let paged = known.pages.values().chain(known.changed.values()).flatten();
                let all = rows.chain(paged.map(|(_, r)| r)).map(rid);
                let mut rids: Vec<i64> = all.filter(|r| !known.props.contains_key(r)).collect();
                rids.sort_unstable();
                rids.dedup();
                w.props_rids = rids;
            }
            Need::Blobs => w.blobs = 16,
            Need::Page(q) => w.plan.pages.push(q),
            Need::Log(q) => w.plan.logs.push(q),
            Need::Content(b, s, e) => w.content = Some((b, s, e)),
            Need::Purge(cutoff) => w.purge = Some(cutoff),
            Need::Counters => w.plan.counters = true,
            Need::Watermark => w.watermark = true,
            Need::Locks(scan) => w.locks = Some(scan),
            Need::Subscription(id) => w.plan.subscriptions.push(id),
        }
        w
    }
}

pub(crate) fn rid(r: &Rec) -> i64 {
    sql::int(r.rid.counter())
}

/// Rows fetched so far: what every run of the engine starts from.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// Single rows by path (`None`: known to be absent).
    pub(crate) rows: BTreeMap<ResourcePath, Option<Rec>>,
    /// Subtrees whose every row is in `rows`.
    pub(crate) trees: Vec<ResourcePath>,
    /// Complete dead-property lists by repl-uid counter.
    pub(crate) props: HashMap<i64, Vec<DeadProp>>,
    /// Fresh blob ids.
    pub(crate) blobs: Vec<i64>,
    pub(crate) pages: HashMap<PageQuery, Vec<(ResourcePath, Rec)>>,
    pub(crate) changed: HashMap<LogQuery, Vec<(ResourcePath, Rec)>>,
    pub(crate) removed: HashMap<LogQuery, Vec<Tombstone>>,
    pub(crate) content: HashMap<(i64, u64, u64), Vec<Bytes>>,
    /// `(cutoff, count, max)` of the tombstones a purge would remove.
    pub(crate) purge: Option<(i64, i64, Option<i64>)>,
    /// The counters (locked, for a write).
    pub(crate) counters: Option<Counters>,
    /// Lock scans fetched, and the locks they found (each once).
    pub(crate) lock_scans: Vec<LockScan>,
    pub(crate) locks: Vec<Lock>,
    /// How many lock rows the store holds, when the counters row was read.
    pub(crate) lock_count: Option<i64>,
    /// A write holds the counters-row lock (it runs alone).
    pub(crate) exclusive: bool,
    /// A write's first number (see [`SPAN_BITS`](crate::SPAN_BITS)).
    pub(crate) first: Option<u64>,
    /// A read's horizon (see [`ReplStore::horizon`](davrepl_store::ReplStore::horizon)).
    pub(crate) horizon: Option<u64>,
    /// A write's watermark, fetched only if it asks (see `WRITE_COUNTERS`).
    pub(crate) watermark: Option<u64>,
    /// Subscriptions by id (`None`: known to be absent).
    pub(crate) subscriptions: HashMap<u64, Option<davrepl_store::Subscription>>,
    /// Whether to note the item a GET reads in `seen` (the hot-item cache wants it).
    pub(crate) note_seen: bool,
    /// The item a GET read, for the hot-item cache.
    pub(crate) seen: Option<hot::Seen>,
}

/// Up to this many single rows are fetched with one lookup each, more with one array query.
const FEW_PATHS: usize = 4;

/// The columns of a resource row ([`columns`] reads them), from the view.
macro_rules! resource_select {
    () => {
        concat!(
            "SELECT path, rid, kind, version, content_version, len, content_type, created,",
            " modified, blob, digests FROM davrepl_resources"
        )
    };
}
const FETCH_PATHS: &str = concat!(resource_select!(), " WHERE path = ANY($1)");
/// The locks of a [`LockScan`] in one statement: rooted at one of `$1`, or strictly inside
/// one of the ranges `($2[i], $3[i])`. The table holds few rows; its plan is a scan either way.
const FETCH_LOCKS: &str = "SELECT token, root, deep, exclusive, owner, principal, timeout, expires
    FROM davrepl_locks WHERE root = ANY($1) OR EXISTS (
        SELECT 1 FROM unnest($2::text[], $3::text[]) AS t(lo, hi) WHERE root > t.lo AND root < t.hi)";
const FETCH_TREES: &str = concat!(
    "SELECT path, rid, kind, version, content_version, len, content_type, created, modified,",
    " blob, digests FROM davrepl_resources r JOIN unnest($1::text[], $2::text[]) AS t(lo, hi)",
    " ON r.path > t.lo AND r.path < t.hi"
);
const FETCH_PROPS: &str =
    "SELECT p.rid, p.ns, p.local, p.value FROM davrepl_props p WHERE p.rid IN (
    SELECT rid FROM davrepl_resources WHERE path = ANY($1)
    UNION ALL
    SELECT r.rid FROM davrepl_resources r JOIN unnest($2::text[], $3::text[]) AS t(lo, hi)
        ON r.path > t.lo AND r.path < t.hi
) ORDER BY p.rid, p.ns, p.local";
const FETCH_BLOB_IDS: &str =
    "SELECT nextval('davrepl_blob_ids') FROM generate_series(1, $1::int8 + (
    SELECT count(*) FROM davrepl_resources
    WHERE blob IS NOT NULL AND (path = $2 OR (path > $3 AND path < $4))
))";

/// [`sql::GET`] of up to [`FEW_PATHS`] paths, by how many (none for zero).
const GET_FEW: [Option<&str>; FEW_PATHS + 1] = [
    None,
    Some(sql::GET),
    Some(concat!(resource_select!(), " WHERE path IN ($1, $2)")),
    Some(concat!(resource_select!(), " WHERE path IN ($1, $2, $3)")),
    Some(concat!(
        resource_select!(),
        " WHERE path IN ($1, $2, $3, $4)"
    )),
];

/// One item's row and, when it is small enough (`len <= $2`), its chunks `$3..=$4`: a GET's
/// whole prefetch in one statement with one index lookup of the path. The row comes back once
/// per chunk (in no particular order), or once with no chunk.
///
/// It reads the table, not the `davrepl_resources` view: a collection's row there lacks its
/// touch counts (so [`Known::content_of`] keeps no collection), and an item's needs none. For
/// a statement this small, setting up the plan is most of its cost, and the view's
/// touch-count aggregate (set up whether a row needs it or not) and a sort of the chunks
/// were a quarter of the server's work in a GET. The last column is the statement's snapshot,
/// under which the hot-item cache keeps what it read (see `hot.rs`).
const ITEM_WITH_CONTENT: &str = concat!(
    "SELECT r.path, r.rid, r.kind, r.version, r.content_version, r.len, r.content_type,",
    " r.created, r.modified, r.blob, r.digests, c.n, c.data, pg_current_snapshot()::text",
    " FROM davrepl_resource_rows r",
    " LEFT JOIN LATERAL (SELECT n, data FROM davrepl_chunks",
    " WHERE blob = r.blob AND r.len <= $2 AND n >= $3 AND n <= $4) c ON true",
    " WHERE r.path = $1"
);

fn columns(r: &Row) -> StoreResult<Columns> {
    Columns::read(
        |i| r.try_get(i),
        |i| r.try_get(i),
        |i| r.try_get(i),
        |i| r.try_get(i),
        |i| r.try_get(i),
    )
    .map_err(pg_err)
}

fn record(id: StoreId, r: &Row) -> StoreResult<(ResourcePath, Rec)> {
    let c = columns(r)?;
    Ok((sql::stored_path(&c.path)?, c.record(id)))
}

fn tombstone(id: StoreId, r: &Row) -> StoreResult<Tombstone> {
    let get = |i| r.try_get::<_, i64>(i).map_err(pg_err);
    let path = r.try_get(2).map_err(pg_err)?;
    sql::tombstone(id, (get(0)?, get(1)?, path, get(3)?, get(4)?))
}

/// Each tree's `(lo, hi)` range bounds as two arrays.
fn ranges(trees: &[ResourcePath]) -> (Vec<String>, Vec<String>) {
    trees.iter().map(sql::below).unzip()
}

fn strings(paths: &[ResourcePath]) -> Vec<String> {
    paths.iter().map(|p| p.as_str().to_owned()).collect()
}

type Owned = Vec<Box<dyn ToSql + Sync + Send>>;

fn owned(params: Vec<Param>) -> Owned {
    params
        .into_iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match p {
                Param::Text(s) => Box::new(s),
                Param::Int(n) => Box::new(n),
                Param::OptText(s) => Box::new(s),
            }
        })
        .collect()
}

/// One query of a fetch, and what its rows are.
enum Answer {
    Rows,
    Props,
    Blobs,
    Page(PageQuery),
    Changed(LogQuery),
    Removed(LogQuery),
    Content(i64, u64, u64),
    ContentOf(Option<ByteRange>),
    Purge(i64),
    Counters,
    Watermark,
    Locks,
    Subscription(u64),
}

/// The statements that fetch a [`Wants`], built once per attempt: the caller looks at how
/// many there are (one alone needs no transaction) before sending them.
pub(crate) struct Queries(Vec<(Answer, &'static str, Owned)>);

impl Queries {
    /// The queries that fetch `w`.
    pub(crate) fn of(w: &Wants) -> Self {
        Self(queries(w))
    }

    /// How many statements they are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The queries that fetch `w`, each with its parameters.
fn queries(w: &Wants) -> Vec<(Answer, &'static str, Owned)> {
    let p = &w.plan;
    let mut out: Vec<(Answer, &'static str, Owned)> = Vec::new();
    let mut paths = strings(&p.paths);
    paths.extend(strings(&p.trees));
    paths.sort_unstable();
    paths.dedup();
    if let Some((item, _)) = &p.content {
        // Its row comes with its content.
        paths.retain(|q| q != item.as_str());
    }
    if paths.len() <= FEW_PATHS {
        // One statement with a parameter per path (a write reads its target and the parent):
        // its cached generic plan is an index scan, where an array's plan depends on the
        // array's length and is made again for most calls.
        if let Some(query) = GET_FEW.get(paths.len()).copied().flatten() {
            let params: Owned = paths.into_iter().map(|p| Box::new(p) as _).collect();
            out.push((Answer::Rows, query, params));
        }
    } else {
        out.push((Answer::Rows, FETCH_PATHS, vec![Box::new(paths)]));
    }
    if !p.trees.is_empty() {
        let (lo, hi) = ranges(&p.trees);
        out.push((Answer::Rows, FETCH_TREES, vec![Box::new(lo), Box::new(hi)]));
    }
    if !w.props_rids.is_empty() {
        let by_rid = "SELECT rid, ns, local, value FROM davrepl_props WHERE rid = ANY($1)";
        out.push((Answer::Props, by_rid, vec![Box::new(w.props_rids.clone())]));
    }
    if !p.props_of.is_empty() || !p.props_below.is_empty() {
        let (lo, hi) = ranges(&p.props_below);
        let params: Owned = vec![Box::new(strings(&p.props_of)), Box::new(lo), Box::new(hi)];
        out.push((Answer::Props, FETCH_PROPS, params));
    }
    if w.blobs > 0 || p.copies_of.is_some() {
        let root = p.copies_of.clone().unwrap_or_else(ResourcePath::root);
        let (lo, hi) = match &p.copies_of {
            Some(r) => sql::below(r),
            None => (String::new(), String::new()),
        };
        let exact = if p.copies_of.is_some() {
            root.as_str()
        } else {
            ""
        };
        let params: Owned = vec![
            Box::new(w.blobs),
            Box::new(exact.to_owned()),
            Box::new(lo),
            Box::new(hi),
        ];
        out.push((Answer::Blobs, FETCH_BLOB_IDS, params));
    }
    for q in &p.pages {
        let (query, params) = sql::page_query(q);
        out.push((Answer::Page(q.clone()), query, owned(params)));
    }
    for q in &p.logs {
        if let Some((query, params)) = sql::changed_query(q) {
            out.push((Answer::Changed(q.clone()), query, owned(params)));
        }
        let (query, params) = sql::removed_query(q);
        out.push((Answer::Removed(q.clone()), query, owned(params)));
    }
    if let Some((blob, start, end)) = w.content {
        let (first, last) = sql::chunk_span(start, end, CHUNK);
        let params: Owned = vec![Box::new(blob), Box::new(first), Box::new(last)];
        out.push((Answer::Content(blob, start, end), sql::CHUNKS, params));
    }
    if let Some((path, range)) = &p.content {
        // A range is fetched if it is small; a whole item only if the item is.
        let (len, (first, last)) = match range {
            Some(r) if r.end.saturating_sub(r.start) < INLINE_READ => {
                (i64::MAX, sql::chunk_span(r.start, r.end, CHUNK))
            }
            Some(_) => (-1, (0, -1)),
            None => (
                sql::int(INLINE_READ),
                sql::chunk_span(0, INLINE_READ, CHUNK),
            ),
        };
        let params: Owned = vec![
            Box::new(path.as_str().to_owned()),
            Box::new(len),
            Box::new(first),
            Box::new(last),
        ];
        out.push((Answer::ContentOf(*range), ITEM_WITH_CONTENT, params));
    }
    if p.counters {
        out.push((Answer::Counters, crate::LOAD_COUNTERS, Vec::new()));
    }
    if w.watermark {
        out.push((Answer::Watermark, crate::WATERMARK, Vec::new()));
    }
    for &id in &p.subscriptions {
        let id_param: Owned = vec![Box::new(sql::int(id))];
        out.push((Answer::Subscription(id), sql::SUBSCRIPTION, id_param));
    }
    if let Some(scan) = &w.locks {
        let (lo, hi) = ranges(&scan.below);
        let params: Owned = vec![Box::new(strings(&scan.at)), Box::new(lo), Box::new(hi)];
        out.push((Answer::Locks, FETCH_LOCKS, params));
    }
    if let Some(cutoff) = w.purge {
        out.push((
            Answer::Purge(cutoff),
            sql::PURGE_COUNT,
            vec![Box::new(cutoff)],
        ));
    }
    out
}

impl Known {
    /// Fetches `w` with one pipelined batch of queries on `tx`.
    pub(crate) async fn fetch(
        &mut self,
        tx: &ClientWrapper,
        id: StoreId,
        w: &Wants,
        Queries(queries): Queries,
    ) -> StoreResult<()> {
        let statements = try_join_all(queries.iter().map(|(_, q, _)| tx.prepare_cached(q)))
            .await
            .map_err(pg_err)?;
        let answers = try_join_all(statements.iter().zip(&queries).map(|(st, (_, _, params))| {
            let params: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            async move { tx.query(st, &params).await }
        }))
        .await
        .map_err(pg_err)?;
        let p = &w.plan;
        for path in p.paths.iter().chain(&p.trees) {
            self.rows.entry(path.clone()).or_insert(None);
        }
        self.trees.extend(p.trees.iter().cloned());
        self.lock_scans.extend(w.locks.iter().cloned());
        let mut props: Vec<(i64, DeadProp)> = Vec::new();
        for ((answer, _, _), rows) in queries.into_iter().zip(answers) {
            match answer {
                Answer::Rows => {
                    for r in &rows {
                        let (path, rec) = record(id, r)?;
                        self.rows.insert(path, Some(rec));
                    }
                }
                Answer::Props => {
                    for r in &rows {
                        props.push((r.try_get(0).map_err(pg_err)?, prop(r)?));
                    }
                }
                Answer::Blobs => {
                    for r in &rows {
                        self.blobs.push(r.try_get(0).map_err(pg_err)?);
                    }
                }
                Answer::Page(q) => {
                    let found = Self::remember(id, &rows)?;
                    self.pages.insert(q, found);
                }
                Answer::Changed(q) => {
                    let found = Self::remember(id, &rows)?;
                    self.changed.insert(q, found);
                }
                Answer::Removed(q) => {
                    let found: StoreResult<Vec<_>> =
                        rows.iter().map(|r| tombstone(id, r)).collect();
                    self.removed.insert(q, found?);
                }
                Answer::Content(blob, start, end) => {
                    let (first, _) = sql::chunk_span(start, end, CHUNK);
                    let mut pieces = Vec::with_capacity(rows.len());
                    for (i, r) in rows.iter().enumerate() {
                        let data = r.try_get(0).map_err(pg_err)?;
                        let n = (first + i as i64) as u64;
                        pieces.push(slice_chunk(n, CHUNK, data, start, end));
                    }
                    self.content.insert((blob, start, end), pieces);
                }
                Answer::ContentOf(range) => self.content_of(id, &rows, range)?,
                Answer::Counters => {
                    let r = rows.first().ok_or_else(|| pg_missing("the counters row"))?;
                    self.counters = Some(crate::counters(r)?);
                    self.lock_count = Some(crate::lock_count(r)?);
                    self.horizon = Some(crate::last_counter(r)?);
                }
                Answer::Watermark => {
                    let r = rows.first().ok_or_else(|| pg_missing("the counters row"))?;
                    let w: i64 = r.try_get(0).map_err(pg_err)?;
                    self.watermark = Some(w as u64);
                }
                Answer::Locks => {
                    for r in &rows {
                        let cols =
                            LockColumns::read(|i| r.try_get(i), |i| r.try_get(i), |i| r.try_get(i))
                                .map_err(pg_err)?;
                        let lock = cols.lock()?;
                        if !self.locks.iter().any(|l| l.token == lock.token) {
                            self.locks.push(lock);
                        }
                    }
                }
                Answer::Subscription(id) => {
                    let found = match rows.first() {
                        Some(r) => Some(
                            SubscriptionColumns::read(
                                |i| r.try_get(i),
                                |i| r.try_get(i),
                                |i| r.try_get(i),
                            )
                            .map_err(pg_err)?
                            .subscription()?,
                        ),
                        None => None,
                    };
                    self.subscriptions.insert(id, found);
                }
                Answer::Purge(cutoff) => {
                    let r = rows.first().ok_or_else(|| pg_missing("count"))?;
                    let count = r.try_get(0).map_err(pg_err)?;
                    self.purge = Some((cutoff, count, r.try_get(1).map_err(pg_err)?));
                }
            }
        }
        // Every row in a props scope has a complete list, empty when it has no properties.
        let in_scope = |path: &ResourcePath| {
            p.props_of.contains(path) || p.props_below.iter().any(|t| path.is_strictly_within(t))
        };
        for (path, r) in &self.rows {
            if let Some(r) = r
                && in_scope(path)
            {
                self.props.entry(rid(r)).or_default();
            }
        }
        for rid in &w.props_rids {
            self.props.entry(*rid).or_default();
        }
        for (rid, prop) in props {
            self.props.entry(rid).or_default().push(prop);
        }
        Ok(())
    }

    /// Keeps the chunks of a content prefetch when they cover exactly the range a read of
    /// that item will ask for.
    fn content_of(
        &mut self,
        id: StoreId,
        rows: &[Row],
        range: Option<ByteRange>,
    ) -> StoreResult<()> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let (path, rec) = record(id, first)?;
        if rec.kind == ResourceKind::Collection {
            // Read without its touch counts: not known yet (not absent either), so the engine
            // asks for the row and it is fetched from the view.
            self.rows.remove(&path);
            return Ok(());
        }
        let blob = rec.payload;
        let len = rec.len;
        if self.note_seen {
            let snapshot: Option<String> = first.try_get(13).map_err(pg_err)?;
            self.seen = snapshot.map(|s| hot::Seen {
                snapshot: s.into(),
                path: path.clone(),
                item: hot::Item {
                    rec: rec.clone(),
                    whole: None,
                },
            });
        }
        self.rows.insert(path, Some(rec));
        let (Some(blob), Ok((start, end))) = (blob, resolve_range(len, range)) else {
            return Ok(()); // a range the read refuses itself
        };
        let (from, to) = sql::chunk_span(start, end, CHUNK);
        let mut chunks = Vec::with_capacity(rows.len());
        for r in rows {
            let Some(n) = r.try_get::<_, Option<i64>>(11).map_err(pg_err)? else {
                return Ok(()); // too large to prefetch, or empty: read on demand
            };
            chunks.push((n, r));
        }
        chunks.sort_unstable_by_key(|(n, _)| *n);
        let mut pieces = Vec::with_capacity(chunks.len());
        for (i, (n, r)) in chunks.into_iter().enumerate() {
            if n != from + i as i64 || n > to {
                return Ok(()); // not exactly the chunks wanted: fetched again on demand
            }
            pieces.push(slice_chunk(
                n as u64,
                CHUNK,
                r.try_get(12).map_err(pg_err)?,
                start,
                end,
            ));
        }
        if pieces.len() as i64 == to - from + 1 {
            if let (Some(seen), [whole]) = (&mut self.seen, pieces.as_slice())
                && whole.len() as u64 == len
                && len <= hot::MAX_CONTENT
            {
                seen.item.whole = Some(whole.clone());
            }
            self.content.insert((blob, start, end), pieces);
        }
        Ok(())
    }

    /// What a HEAD or GET of `path` needs, from a cached item.
    pub(crate) fn of_item(path: &ResourcePath, item: hot::Item, range: Option<ByteRange>) -> Self {
        let mut known = Self::default();
        if let (Some(blob), Some(whole)) = (item.rec.payload, item.whole)
            && let Ok((start, end)) = resolve_range(item.rec.len, range)
            && item.rec.len > 0
            && whole.len() as u64 == item.rec.len
        {
            let piece = whole.slice(start as usize..=end as usize);
            known.content.insert((blob, start, end), vec![piece]);
        }
        known.rows.insert(path.clone(), Some(item.rec));
        known
    }

    /// Rows a page or log query returned.
    fn remember(id: StoreId, rows: &[Row]) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        rows.iter().map(|r| record(id, r)).collect()
    }
}

fn prop(r: &Row) -> StoreResult<DeadProp> {
    Ok(DeadProp {
        name: PropName::new(
            r.try_get::<_, String>(1).map_err(pg_err)?,
            r.try_get::<_, String>(2).map_err(pg_err)?,
        ),
        value: r.try_get(3).map_err(pg_err)?,
    })
}

fn pg_missing(what: &str) -> davrepl_store::StoreError {
    davrepl_store::StoreError::new(
        davrepl_store::ErrorKind::Internal,
        format!("{what} returned nothing"),
    )
}

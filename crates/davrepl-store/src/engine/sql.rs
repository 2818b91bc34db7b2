//! What the SQL backends (SQLite and PostgreSQL) share: the table layout, the text of every
//! query both run, the row codec, and the assembly of listing and change pages from the rows
//! those queries return.
//!
//! Queries are written once, with PostgreSQL's `$n` placeholders; [`sqlite`] turns them into
//! SQLite's `?n` form (same numbering). Both schemas name their tables `davrepl_resources`,
//! `davrepl_props`, `davrepl_tombstones` and `davrepl_chunks` with the same columns; path
//! columns compare as bytes (SQLite's default, `COLLATE "C"` on PostgreSQL), which the range
//! queries rely on. Timestamps are nanoseconds since the Unix epoch; a resource's payload is
//! its blob id (`NULL` for collections).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Record;
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::path::ResourcePath;
use crate::tags::{ReplUid, Seq, StoreId};
use crate::types::{ByteRange, Listing, ResourceKind};
use crate::types::{Change, ChangeKind, ChangePage, ChangesQuery, DeadProp, Depth, Entry, Meta};

macro_rules! cols {
    () => {
        "path, rid, kind, version, content_version, len, content_type, created, modified, blob"
    };
}

/// The columns of `davrepl_resources` that [`Columns`] holds, in its order.
pub const COLUMNS: &str = cols!();

/// The resource at `$1`.
pub const GET: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM davrepl_resources WHERE path = $1"
);
/// Every resource in the descendant range `($1, $2)` of a path, in path order.
pub const DESCENDANTS: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM davrepl_resources WHERE path > $1 AND path < $2 ORDER BY path"
);
/// Direct members of `$1` after path `$2`, in path order, at most `$3`.
pub const CHILDREN_AFTER: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM davrepl_resources WHERE parent = $1 AND path > $2 ORDER BY path LIMIT $3"
);
/// Descendants in the range `($1, $2)` after path `$3`, in path order, at most `$4`.
pub const DESCENDANTS_AFTER: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM davrepl_resources WHERE path > $1 AND path < $2 AND path > $3 ORDER BY path LIMIT $4"
);
/// Direct members of `$1` changed after `$2`, in log order, at most `$3`.
pub const CHANGED_CHILDREN: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM davrepl_resources WHERE parent = $1 AND version > $2 ORDER BY version LIMIT $3"
);
/// Descendants in the range `($1, $2)` changed after `$3`, in log order, at most `$4`.
pub const CHANGED_DESCENDANTS: &str = concat!(
    "SELECT ",
    cols!(),
    " FROM davrepl_resources WHERE path > $1 AND path < $2 AND version > $3 ORDER BY version LIMIT $4"
);
/// Tombstones at path `$1` after `$2`, at most `$3`.
pub const REMOVED_AT: &str = "SELECT seq, rid, path, kind FROM davrepl_tombstones WHERE path = $1 AND seq > $2 ORDER BY seq LIMIT $3";
/// Tombstones of direct members of `$1` after `$2`, at most `$3`.
pub const REMOVED_CHILDREN: &str = "SELECT seq, rid, path, kind FROM davrepl_tombstones WHERE parent = $1 AND seq > $2 ORDER BY seq LIMIT $3";
/// Tombstones in the range `($1, $2)` after `$3`, at most `$4`.
pub const REMOVED_DESCENDANTS: &str = "SELECT seq, rid, path, kind FROM davrepl_tombstones WHERE path > $1 AND path < $2 AND seq > $3 ORDER BY seq LIMIT $4";
/// Dead properties of repl-uid counter `$1`, in name order.
pub const PROPS: &str =
    "SELECT ns, local, value FROM davrepl_props WHERE rid = $1 ORDER BY ns, local";
/// How many tombstones were recorded before `$1`, and the highest of their numbers.
pub const PURGE_COUNT: &str = "SELECT count(*), max(seq) FROM davrepl_tombstones WHERE at < $1";
/// Removes the tombstones recorded before `$1`.
pub const PURGE: &str = "DELETE FROM davrepl_tombstones WHERE at < $1";
/// Chunks `$2..=$3` of blob `$1`, in order.
pub const CHUNKS: &str =
    "SELECT data FROM davrepl_chunks WHERE blob = $1 AND n >= $2 AND n <= $3 ORDER BY n";
/// Every chunk of blob `$1`.
pub const DROP_BLOB: &str = "DELETE FROM davrepl_chunks WHERE blob = $1";

/// A query in SQLite's placeholder form (`?n` for `$n`; no query here has another `$`).
pub fn sqlite(sql: &str) -> String {
    sql.replace('$', "?")
}

/// The range `(start, end)` exclusive at both ends that holds exactly the paths strictly below
/// `root`, for the `path > $1 AND path < $2` queries above.
pub fn below(root: &ResourcePath) -> (String, String) {
    // No stored path ends with `/`, so `> "/a/"` equals `>= "/a/"`; for the root, `> "/"`
    // leaves the root itself out.
    root.descendant_range()
}

/// A limit plus one (to see whether more follow), as a SQL integer.
pub fn fetch_limit(limit: usize) -> i64 {
    i64::try_from(limit)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1)
}

/// A sequence number as a SQL integer (saturating; sequence numbers never get near it).
pub fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The code of a kind in the `kind` columns.
pub fn kind_code(k: ResourceKind) -> i64 {
    match k {
        ResourceKind::Collection => 0,
        ResourceKind::Item => 1,
    }
}

/// The kind of a `kind` column code.
pub fn kind_of(code: i64) -> ResourceKind {
    if code == 0 {
        ResourceKind::Collection
    } else {
        ResourceKind::Item
    }
}

/// A time as stored: nanoseconds since the epoch, saturating.
pub fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A stored time.
pub fn time(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

/// A stored path; a path that does not parse means a damaged database.
pub fn stored_path(s: &str) -> StoreResult<ResourcePath> {
    ResourcePath::parse(s)
        .map_err(|e| StoreError::new(ErrorKind::Internal, format!("corrupt path {s:?}: {e}")))
}

/// One `davrepl_resources` row, column by column ([`COLUMNS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Columns {
    pub path: String,
    pub rid: i64,
    pub kind: i64,
    pub version: i64,
    pub content_version: i64,
    pub len: i64,
    pub content_type: Option<String>,
    pub created: i64,
    pub modified: i64,
    pub blob: Option<i64>,
}

impl Columns {
    /// Reads a row through the driver's typed getters (`|i| row.get(i)`), in [`COLUMNS`] order.
    pub fn read<E>(
        int: impl Fn(usize) -> Result<i64, E>,
        opt_int: impl Fn(usize) -> Result<Option<i64>, E>,
        text: impl Fn(usize) -> Result<String, E>,
        opt_text: impl Fn(usize) -> Result<Option<String>, E>,
    ) -> Result<Self, E> {
        Ok(Self {
            path: text(0)?,
            rid: int(1)?,
            kind: int(2)?,
            version: int(3)?,
            content_version: int(4)?,
            len: int(5)?,
            content_type: opt_text(6)?,
            created: int(7)?,
            modified: int(8)?,
            blob: opt_int(9)?,
        })
    }

    /// The row of `record` at `path`.
    pub fn of(path: &ResourcePath, r: &Record<Option<i64>>) -> Self {
        Self {
            path: path.as_str().to_owned(),
            rid: int(r.rid.counter()),
            kind: kind_code(r.kind),
            version: int(r.version),
            content_version: int(r.content_version),
            len: int(r.len),
            content_type: r.content_type.clone(),
            created: nanos(r.created),
            modified: nanos(r.modified),
            blob: r.payload,
        }
    }

    /// Whether the row is a collection.
    pub fn is_collection(&self) -> bool {
        kind_of(self.kind) == ResourceKind::Collection
    }

    /// The row as the engine sees it.
    pub fn record(&self, store: StoreId) -> Record<Option<i64>> {
        Record {
            rid: ReplUid::new(store, self.rid as u64),
            kind: kind_of(self.kind),
            version: self.version as u64,
            content_version: self.content_version as u64,
            len: self.len as u64,
            content_type: self.content_type.clone(),
            created: time(self.created),
            modified: time(self.modified),
            payload: self.blob,
        }
    }

    /// The metadata the contract hands out for this row.
    pub fn meta(&self, store: StoreId) -> StoreResult<Meta> {
        Ok(self.record(store).meta(store, &stored_path(&self.path)?))
    }
}

/// A removal as a change, from the columns `seq, rid, path, kind` of a tombstone.
pub fn removed(store: StoreId, rid: i64, path: &str, kind: i64) -> StoreResult<ChangeKind> {
    Ok(ChangeKind::Removed {
        rid: ReplUid::new(store, rid as u64),
        path: stored_path(path)?,
        kind: kind_of(kind),
    })
}

/// One row of a change page before its dead properties are attached.
#[derive(Debug)]
pub struct Pending {
    /// Its sequence number.
    pub seq: Seq,
    /// What changed.
    pub kind: ChangeKind,
    /// For an upsert, the repl-uid counter whose properties belong to it.
    pub rid: Option<i64>,
}

/// The queries of one change page: the live rows and the tombstones in scope after `since`,
/// each with the parameters it takes (`Text` or `Int`).
#[derive(Debug)]
pub struct ChangePlan {
    /// Whether the scope's own row is wanted (read it with [`GET`]).
    pub scope_row: bool,
    /// Live rows (`None` for a depth-0 query).
    pub live: Option<(&'static str, Vec<Param>)>,
    /// Tombstones (`None` unless removals were asked for).
    pub removed: Option<(&'static str, Vec<Param>)>,
}

/// A query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// A `TEXT` value.
    Text(String),
    /// An `INTEGER`/`BIGINT` value.
    Int(i64),
}

impl ChangePlan {
    /// The queries that answer `q`.
    pub fn new(q: &ChangesQuery) -> Self {
        let since = Param::Int(int(q.since));
        let fetch = Param::Int(fetch_limit(q.limit));
        let scope = Param::Text(q.scope.as_str().to_owned());
        let (start, end) = below(&q.scope);
        let range = |sql| {
            let p = vec![
                Param::Text(start.clone()),
                Param::Text(end.clone()),
                since.clone(),
                fetch.clone(),
            ];
            Some((sql, p))
        };
        let direct = |sql| Some((sql, vec![scope.clone(), since.clone(), fetch.clone()]));
        let live = match q.depth {
            Depth::Zero => None,
            Depth::One => direct(CHANGED_CHILDREN),
            Depth::Infinity => range(CHANGED_DESCENDANTS),
        };
        let removed = match q.depth {
            _ if !q.include_removed => None,
            Depth::Zero => direct(REMOVED_AT),
            Depth::One => direct(REMOVED_CHILDREN),
            Depth::Infinity => range(REMOVED_DESCENDANTS),
        };
        Self {
            scope_row: q.depth == Depth::Zero || q.include_scope,
            live,
            removed,
        }
    }
}

/// Merges the rows of a [`ChangePlan`] into log order and cuts them at the query's limit.
/// Returns the rows to report, whether more follow, and the watermark of the page (`current`,
/// the last number handed out, when nothing is left).
pub fn cut_changes(
    mut rows: Vec<Pending>,
    q: &ChangesQuery,
    current: Seq,
) -> (Vec<Pending>, bool, Seq) {
    rows.sort_by_key(|r| r.seq);
    let more = rows.len() > q.limit;
    rows.truncate(q.limit);
    let watermark = if more {
        rows.last().map_or(q.since, |r| r.seq)
    } else {
        current
    };
    (rows, more, watermark)
}

/// A change page from cut rows and the dead properties of their upserts (by repl-uid counter).
pub fn change_page(
    rows: Vec<Pending>,
    mut props: HashMap<i64, Vec<DeadProp>>,
    more: bool,
    watermark: Seq,
    low_water: Seq,
) -> ChangePage {
    let changes = rows
        .into_iter()
        .map(|r| Change {
            seq: r.seq,
            kind: r.kind,
            props: r.rid.and_then(|rid| props.remove(&rid)).unwrap_or_default(),
        })
        .collect();
    ChangePage {
        changes,
        watermark,
        more,
        low_water,
    }
}

/// A listing page from up to `limit + 1` rows in path order and the dead properties of the
/// rows (by repl-uid counter).
pub fn listing(
    store: StoreId,
    mut found: Vec<Columns>,
    limit: usize,
    mut props: HashMap<i64, Vec<DeadProp>>,
) -> StoreResult<Listing> {
    let more = found.len() > limit;
    found.truncate(limit);
    let entries = found
        .iter()
        .map(|c| {
            Ok(Entry {
                meta: c.meta(store)?,
                props: props.remove(&c.rid).unwrap_or_default(),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let next = if more {
        entries.last().map(|e| e.meta.path.clone())
    } else {
        None
    };
    Ok(Listing { entries, next })
}

/// The query and parameters of one listing page below `path`.
pub fn listing_query(
    path: &ResourcePath,
    depth: Depth,
    after: Option<&ResourcePath>,
    limit: usize,
) -> (&'static str, Vec<Param>) {
    let after = Param::Text(after.map_or_else(String::new, |a| a.as_str().to_owned()));
    let fetch = Param::Int(fetch_limit(limit));
    if depth == Depth::One {
        let parent = Param::Text(path.as_str().to_owned());
        (CHILDREN_AFTER, vec![parent, after, fetch])
    } else {
        let (start, end) = below(path);
        (
            DESCENDANTS_AFTER,
            vec![Param::Text(start), Param::Text(end), after, fetch],
        )
    }
}

/// The chunks a read of `len` bytes (optionally one range) touches: `(start, end, first
/// chunk, last chunk)`, `last < first` for empty content. Errors on a range out of bounds.
pub fn chunk_span(
    len: u64,
    range: Option<ByteRange>,
    chunk: usize,
) -> StoreResult<(u64, u64, i64, i64)> {
    let (start, end) = super::resolve_range(len, range)?;
    let first = int(start / chunk as u64);
    let last = if len == 0 {
        -1
    } else {
        int(end / chunk as u64)
    };
    Ok((start, end, first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_placeholders_keep_numbers() {
        assert_eq!(
            sqlite("SELECT a FROM t WHERE x = $1 AND y > $12"),
            "SELECT a FROM t WHERE x = ?1 AND y > ?12"
        );
    }

    #[test]
    fn below_excludes_the_root_and_siblings() {
        let (s, e) = below(&ResourcePath::root());
        assert!("/" <= s.as_str() && "/a" > s.as_str() && "/a" < e.as_str());
        let (s, e) = below(&ResourcePath::parse("/a").unwrap());
        for inside in ["/a/b", "/a/b/c", "/a/~"] {
            assert!(inside > s.as_str() && inside < e.as_str(), "{inside}");
        }
        for outside in ["/a", "/a-b", "/a0", "/ab", "/b"] {
            assert!(!(outside > s.as_str() && outside < e.as_str()), "{outside}");
        }
    }

    #[test]
    fn columns_round_trip_a_record() {
        let store = StoreId::random();
        let path = ResourcePath::parse("/x/y").unwrap();
        let c = Columns {
            path: path.as_str().into(),
            rid: 7,
            kind: 1,
            version: 9,
            content_version: 9,
            len: 3,
            content_type: Some("text/plain".into()),
            created: 1_000,
            modified: 2_000,
            blob: Some(4),
        };
        assert_eq!(Columns::of(&path, &c.record(store)), c);
    }

    #[test]
    fn changes_are_cut_in_log_order() {
        let store = StoreId::random();
        let q = ChangesQuery::new(ResourcePath::root(), Depth::One, 0, 2);
        let row = |seq| Pending {
            seq,
            kind: removed(store, 1, "/a", 1).unwrap(),
            rid: None,
        };
        let (rows, more, wm) = cut_changes(vec![row(5), row(2), row(3)], &q, 9);
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
        assert!(more);
        assert_eq!(wm, 3);
        let (rows, more, wm) = cut_changes(vec![row(5)], &q, 9);
        assert_eq!((rows.len(), more, wm), (1, false, 9));
    }

    #[test]
    fn spans_cover_the_range() {
        assert_eq!(chunk_span(0, None, 4).unwrap(), (0, 0, 0, -1));
        assert_eq!(chunk_span(10, None, 4).unwrap(), (0, 9, 0, 2));
        let r = ByteRange { start: 5, end: 6 };
        assert_eq!(chunk_span(10, Some(r), 4).unwrap(), (5, 6, 1, 1));
        let bad = ByteRange { start: 5, end: 10 };
        assert!(chunk_span(10, Some(bad), 4).is_err());
    }
}

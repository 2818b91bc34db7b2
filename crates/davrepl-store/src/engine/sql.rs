//! What the SQL backends (SQLite and PostgreSQL) share: the table layout, the text of every
//! query both run for the engine's row reads, and the row codec.
//!
//! Queries are written once, with PostgreSQL's `$n` placeholders; [`sqlite`] turns them into
//! SQLite's `?n` form (same numbering). Both schemas name their tables `davrepl_resources`,
//! `davrepl_props`, `davrepl_tombstones` and `davrepl_chunks` with the same columns; path
//! columns compare as bytes (SQLite's default, `COLLATE "C"` on PostgreSQL), which the range
//! queries rely on. Timestamps are nanoseconds since the Unix epoch; a resource's payload is
//! its blob id (`NULL` for collections).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{LogQuery, PageQuery, Record, Tombstone};
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::path::ResourcePath;
use crate::tags::{ReplUid, StoreId};
use crate::types::{Depth, Meta, ResourceKind};

macro_rules! cols {
    () => {
        "path, rid, kind, version, content_version, len, content_type, created, modified, blob, digests"
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
pub const REMOVED_AT: &str = "SELECT seq, rid, path, kind, at FROM davrepl_tombstones WHERE path = $1 AND seq > $2 ORDER BY seq LIMIT $3";
/// Tombstones of direct members of `$1` after `$2`, at most `$3`.
pub const REMOVED_CHILDREN: &str = "SELECT seq, rid, path, kind, at FROM davrepl_tombstones WHERE parent = $1 AND seq > $2 ORDER BY seq LIMIT $3";
/// Tombstones in the range `($1, $2)` after `$3`, at most `$4`.
pub const REMOVED_DESCENDANTS: &str = "SELECT seq, rid, path, kind, at FROM davrepl_tombstones WHERE path > $1 AND path < $2 AND seq > $3 ORDER BY seq LIMIT $4";
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

/// The store id and collblob secret as stored (`BLOB`/`BYTEA` columns).
pub fn identity(id: Vec<u8>, secret: Vec<u8>) -> StoreResult<(StoreId, crate::Secret)> {
    let corrupt = |what: &str| StoreError::new(ErrorKind::Internal, format!("corrupt {what}"));
    let id = id.try_into().map_err(|_| corrupt("store id"))?;
    let secret = secret.try_into().map_err(|_| corrupt("secret"))?;
    Ok((StoreId(id), secret))
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
    /// [`Digests`](crate::Digests) in their stored form.
    pub digests: Option<Vec<u8>>,
}

impl Columns {
    /// Reads a row through the driver's typed getters (`|i| row.get(i)`), in [`COLUMNS`] order.
    pub fn read<E>(
        int: impl Fn(usize) -> Result<i64, E>,
        opt_int: impl Fn(usize) -> Result<Option<i64>, E>,
        text: impl Fn(usize) -> Result<String, E>,
        opt_text: impl Fn(usize) -> Result<Option<String>, E>,
        opt_blob: impl Fn(usize) -> Result<Option<Vec<u8>>, E>,
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
            digests: opt_blob(10)?,
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
            digests: r.digests.map(|d| d.to_bytes()),
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
            digests: self.digests.as_deref().and_then(crate::Digests::from_bytes),
            payload: self.blob,
        }
    }

    /// The metadata the contract hands out for this row.
    pub fn meta(&self, store: StoreId) -> StoreResult<Meta> {
        Ok(self.record(store).meta(store, &stored_path(&self.path)?))
    }
}

/// A tombstone from the columns `seq, rid, path, kind, at`.
pub fn tombstone(
    store: StoreId,
    (seq, rid, path, kind, at): (i64, i64, String, i64, i64),
) -> StoreResult<Tombstone> {
    Ok(Tombstone {
        seq: seq as u64,
        rid: ReplUid::new(store, rid as u64),
        path: stored_path(&path)?,
        kind: kind_of(kind),
        at: time(at),
    })
}

/// A query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// A `TEXT` value.
    Text(String),
    /// An `INTEGER`/`BIGINT` value.
    Int(i64),
    /// A `TEXT` value that may be `NULL`.
    OptText(Option<String>),
}

fn text(s: &str) -> Param {
    Param::Text(s.to_owned())
}

/// The query and parameters that answer [`Rows::page`](super::Rows::page).
pub fn page_query(q: &PageQuery) -> (&'static str, Vec<Param>) {
    let after = Param::Text(
        q.after
            .as_ref()
            .map_or_else(String::new, |a| a.as_str().into()),
    );
    let limit = Param::Int(int(q.limit as u64));
    if q.depth == Depth::One {
        (CHILDREN_AFTER, vec![text(q.root.as_str()), after, limit])
    } else {
        let (start, end) = below(&q.root);
        let range = vec![Param::Text(start), Param::Text(end), after, limit];
        (DESCENDANTS_AFTER, range)
    }
}

fn log_query(q: &LogQuery, direct: &'static str, deep: &'static str) -> (&'static str, Vec<Param>) {
    let (since, limit) = (Param::Int(int(q.since)), Param::Int(int(q.limit as u64)));
    if q.depth == Depth::Infinity {
        let (start, end) = below(&q.scope);
        (
            deep,
            vec![Param::Text(start), Param::Text(end), since, limit],
        )
    } else {
        (direct, vec![text(q.scope.as_str()), since, limit])
    }
}

/// The query that answers [`Rows::changed`](super::Rows::changed); `None` for depth 0.
pub fn changed_query(q: &LogQuery) -> Option<(&'static str, Vec<Param>)> {
    (q.depth != Depth::Zero).then(|| log_query(q, CHANGED_CHILDREN, CHANGED_DESCENDANTS))
}

/// The query that answers [`Rows::removed`](super::Rows::removed).
pub fn removed_query(q: &LogQuery) -> (&'static str, Vec<Param>) {
    let direct = match q.depth {
        Depth::Zero => REMOVED_AT,
        _ => REMOVED_CHILDREN,
    };
    log_query(q, direct, REMOVED_DESCENDANTS)
}

/// The chunks (of `chunk` bytes) that hold bytes `start..=end`: `(first, last)`.
pub fn chunk_span(start: u64, end: u64, chunk: usize) -> (i64, i64) {
    (int(start / chunk as u64), int(end / chunk as u64))
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
            digests: Some(crate::Digests::of(b"abc").to_bytes()),
        };
        assert_eq!(Columns::of(&path, &c.record(store)), c);
    }

    #[test]
    fn queries_follow_the_depth() {
        let scope = ResourcePath::parse("/a").unwrap();
        let q = |depth| LogQuery {
            scope: scope.clone(),
            depth,
            since: 3,
            limit: 10,
        };
        assert!(changed_query(&q(Depth::Zero)).is_none());
        assert_eq!(changed_query(&q(Depth::One)).unwrap().0, CHANGED_CHILDREN);
        assert_eq!(removed_query(&q(Depth::Zero)).0, REMOVED_AT);
        let (sql, params) = removed_query(&q(Depth::Infinity));
        assert_eq!(sql, REMOVED_DESCENDANTS);
        assert_eq!(params[2..], [Param::Int(3), Param::Int(10)]);
        assert_eq!(chunk_span(5, 6, 4), (1, 1));
        assert_eq!(chunk_span(0, 9, 4), (0, 2));
    }
}

/// The columns of `davrepl_locks` that [`LockColumns`] holds, in its order.
macro_rules! lock_cols {
    () => {
        "token, root, deep, exclusive, owner, principal, timeout, expires"
    };
}

/// Locks rooted at `$1`.
pub const LOCKS_AT: &str = concat!(
    "SELECT ",
    lock_cols!(),
    " FROM davrepl_locks WHERE root = $1"
);
/// Locks rooted strictly between `$1` and `$2` (a [`below`] range).
pub const LOCKS_BELOW: &str = concat!(
    "SELECT ",
    lock_cols!(),
    " FROM davrepl_locks WHERE root > $1 AND root < $2"
);
/// Creates a lock, or (same token) refreshes its timeout.
pub const PUT_LOCK: &str = concat!(
    "INSERT INTO davrepl_locks (",
    lock_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    " ON CONFLICT (token) DO UPDATE SET timeout = excluded.timeout, expires = excluded.expires"
);
/// Removes the lock with token `$1`.
pub const REMOVE_LOCK: &str = "DELETE FROM davrepl_locks WHERE token = $1";
/// Removes the locks that expired at or before `$1`.
pub const SWEEP_LOCKS: &str = "DELETE FROM davrepl_locks WHERE expires <= $1";

/// One `davrepl_locks` row, column by column.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct LockColumns {
    pub token: String,
    pub root: String,
    pub deep: i64,
    pub exclusive: i64,
    pub owner: Option<String>,
    pub principal: Option<String>,
    /// Seconds.
    pub timeout: i64,
    pub expires: i64,
}

impl LockColumns {
    /// Reads a row through the driver's typed getters, in column order.
    pub fn read<E>(
        int: impl Fn(usize) -> Result<i64, E>,
        text: impl Fn(usize) -> Result<String, E>,
        opt_text: impl Fn(usize) -> Result<Option<String>, E>,
    ) -> Result<Self, E> {
        Ok(Self {
            token: text(0)?,
            root: text(1)?,
            deep: int(2)?,
            exclusive: int(3)?,
            owner: opt_text(4)?,
            principal: opt_text(5)?,
            timeout: int(6)?,
            expires: int(7)?,
        })
    }

    /// The row of `lock`.
    pub fn of(lock: &crate::lock::Lock) -> Self {
        Self {
            token: lock.token.clone(),
            root: lock.root.as_str().to_owned(),
            deep: i64::from(lock.deep),
            exclusive: i64::from(lock.scope == crate::lock::LockScope::Exclusive),
            owner: lock.owner.clone(),
            principal: lock.principal.clone(),
            timeout: int(lock.timeout.as_secs()),
            expires: nanos(lock.expires),
        }
    }

    /// The lock this row stores.
    pub fn lock(self) -> StoreResult<crate::lock::Lock> {
        use crate::lock::LockScope;
        Ok(crate::lock::Lock {
            token: self.token,
            root: stored_path(&self.root)?,
            deep: self.deep != 0,
            scope: if self.exclusive != 0 {
                LockScope::Exclusive
            } else {
                LockScope::Shared
            },
            owner: self.owner,
            principal: self.principal,
            timeout: Duration::from_secs(u64::try_from(self.timeout).unwrap_or(0)),
            expires: time(self.expires),
        })
    }

    /// The row's values as [`Param`]s for [`PUT_LOCK`].
    pub fn params(&self) -> Vec<Param> {
        vec![
            Param::Text(self.token.clone()),
            Param::Text(self.root.clone()),
            Param::Int(self.deep),
            Param::Int(self.exclusive),
            Param::OptText(self.owner.clone()),
            Param::OptText(self.principal.clone()),
            Param::Int(self.timeout),
            Param::Int(self.expires),
        ]
    }
}

/// The queries that read the lock rows of `scan`, with their parameters.
pub fn lock_queries(scan: &super::LockScan) -> Vec<(&'static str, Vec<Param>)> {
    let mut out: Vec<(&'static str, Vec<Param>)> = scan
        .at
        .iter()
        .map(|p| (LOCKS_AT, vec![Param::Text(p.as_str().to_owned())]))
        .collect();
    for b in &scan.below {
        let (lo, hi) = below(b);
        out.push((LOCKS_BELOW, vec![Param::Text(lo), Param::Text(hi)]));
    }
    out
}

/// The subscription with id `$1`.
pub const SUBSCRIPTION: &str = "SELECT id, path, members, types, principal, lifetime, expires, \
     cursor, acked FROM davrepl_subscriptions WHERE id = $1";
/// Creates or replaces a subscription.
pub const PUT_SUBSCRIPTION: &str = "INSERT INTO davrepl_subscriptions \
     (id, path, members, types, principal, lifetime, expires, cursor, acked) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (id) DO UPDATE SET lifetime = excluded.lifetime, expires = excluded.expires, \
     cursor = excluded.cursor, acked = excluded.acked";
/// Removes the subscription with id `$1`.
pub const REMOVE_SUBSCRIPTION: &str = "DELETE FROM davrepl_subscriptions WHERE id = $1";
/// Removes the subscriptions that expired at or before `$1`.
pub const SWEEP_SUBSCRIPTIONS: &str = "DELETE FROM davrepl_subscriptions WHERE expires <= $1";

/// One `davrepl_subscriptions` row, column by column.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SubscriptionColumns {
    pub id: i64,
    pub path: String,
    pub members: i64,
    pub types: i64,
    pub principal: Option<String>,
    /// Seconds.
    pub lifetime: i64,
    pub expires: i64,
    pub cursor: i64,
    pub acked: i64,
}

impl SubscriptionColumns {
    /// Reads a row through the driver's typed getters, in column order.
    pub fn read<E>(
        int: impl Fn(usize) -> Result<i64, E>,
        text: impl Fn(usize) -> Result<String, E>,
        opt_text: impl Fn(usize) -> Result<Option<String>, E>,
    ) -> Result<Self, E> {
        Ok(Self {
            id: int(0)?,
            path: text(1)?,
            members: int(2)?,
            types: int(3)?,
            principal: opt_text(4)?,
            lifetime: int(5)?,
            expires: int(6)?,
            cursor: int(7)?,
            acked: int(8)?,
        })
    }

    /// The row of `s`.
    pub fn of(s: &crate::Subscription) -> Self {
        Self {
            id: int(s.id),
            path: s.path.as_str().to_owned(),
            members: i64::from(s.members),
            types: i64::from(s.types.bits()),
            principal: s.principal.clone(),
            lifetime: int(s.lifetime.as_secs()),
            expires: nanos(s.expires),
            cursor: int(s.cursor),
            acked: nanos(s.acked),
        }
    }

    /// The subscription this row stores.
    pub fn subscription(self) -> StoreResult<crate::Subscription> {
        Ok(crate::Subscription {
            id: u64::try_from(self.id).unwrap_or(0),
            path: stored_path(&self.path)?,
            members: self.members != 0,
            types: crate::NotificationTypes::from_bits(u8::try_from(self.types).unwrap_or(0)),
            principal: self.principal,
            lifetime: Duration::from_secs(u64::try_from(self.lifetime).unwrap_or(0)),
            expires: time(self.expires),
            cursor: u64::try_from(self.cursor).unwrap_or(0),
            acked: time(self.acked),
        })
    }

    /// The row's values as [`Param`]s for [`PUT_SUBSCRIPTION`].
    pub fn params(&self) -> Vec<Param> {
        vec![
            Param::Int(self.id),
            Param::Text(self.path.clone()),
            Param::Int(self.members),
            Param::Int(self.types),
            Param::OptText(self.principal.clone()),
            Param::Int(self.lifetime),
            Param::Int(self.expires),
            Param::Int(self.cursor),
            Param::Int(self.acked),
        ]
    }
}

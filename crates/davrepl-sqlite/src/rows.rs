//! The engine's rows on SQLite: `davrepl_resources`, `davrepl_props`, `davrepl_tombstones` and
//! `davrepl_content` inside the writer thread's group transaction (or a reader's snapshot). The
//! payload of a record is its `blob` column: a `davrepl_content` row, or a content file
//! ([`Content`]).

use std::time::SystemTime;

use bytes::Bytes;
use davrepl_store::engine::sql::{self, Columns, Param};
use davrepl_store::engine::sql::{LockColumns, SubscriptionColumns};
use davrepl_store::engine::{self, LockScan, LogQuery, PageQuery, Pieces, Record, Rows, Tombstone};
use davrepl_store::{
    DeadProp, Lock, PropName, PurgeReport, ReplUid, ResourceKind, ResourcePath, Seq, StoreId,
    StoreResult,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::files::{Content, Files, StagedFile, io_err};
use crate::writer::Counters;
use crate::{Upload, db_err};

type Rec = Record<Option<i64>>;

fn values(params: &[Param]) -> impl Iterator<Item = Value> + '_ {
    params.iter().map(|p| match p {
        Param::Text(s) => Value::Text(s.clone()),
        Param::Int(n) => Value::Integer(*n),
        Param::OptText(s) => s.clone().map_or(Value::Null, Value::Text),
    })
}

/// One transaction (on a connection inside it), the counters it allocates from (read when
/// first needed), and what it did to content files.
pub(crate) struct Tx<'a> {
    pub(crate) tx: &'a Connection,
    pub(crate) c: Option<Counters>,
    pub(crate) id: StoreId,
    pub(crate) files: &'a Files,
    pub(crate) fx: FileEffects,
    /// What this read looked up, when the hot-row cache wants it (`hot.rs`).
    pub(crate) seen: Option<crate::hot::Seen>,
}

/// What a write did to content files, for the writer to finish once the fate of its
/// transaction is known.
#[derive(Debug, Default)]
pub(crate) struct FileEffects {
    /// Names this write linked (a COPY): removed if the write does not commit.
    pub(crate) linked: Vec<i64>,
    /// Uploaded files this write refers to: kept once it has committed, removed otherwise.
    pub(crate) adopted: Vec<StagedFile>,
    /// Names this write stopped referring to: removed once it has committed.
    pub(crate) released: Vec<i64>,
    /// New names the write refers to: the directory must be synced before the commit.
    pub(crate) new_names: bool,
}

impl FileEffects {
    /// Adds a committed job's effects to its group's.
    pub(crate) fn absorb(&mut self, other: FileEffects) {
        self.linked.extend(other.linked);
        self.adopted.extend(other.adopted);
        self.released.extend(other.released);
        self.new_names |= other.new_names;
    }
}

/// Runs `f` inside one read transaction on `conn` (a consistent snapshot), then ends it.
pub(crate) fn read_tx<T>(
    conn: &Connection,
    id: StoreId,
    files: &Files,
    f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>,
) -> StoreResult<T> {
    if !conn.is_autocommit() {
        // A read that panicked left its transaction open.
        conn.execute_batch("ROLLBACK").map_err(db_err)?;
    }
    conn.prepare_cached("BEGIN")
        .and_then(|mut st| st.execute([]))
        .map_err(db_err)?;
    let mut t = Tx {
        tx: conn,
        c: None,
        id,
        files,
        fx: FileEffects::default(),
        seen: None,
    };
    let out = f(&mut t);
    let _ = conn
        .prepare_cached("ROLLBACK")
        .and_then(|mut st| st.execute([]));
    out
}

/// Bytes `start..=end` of `whole` (cut at its end).
pub(crate) fn span(whole: &Bytes, start: u64, end: u64) -> Bytes {
    let to = usize::try_from(end.saturating_add(1))
        .unwrap_or(usize::MAX)
        .min(whole.len());
    let from = usize::try_from(start).unwrap_or(usize::MAX).min(to);
    whole.slice(from..to)
}

pub(crate) fn columns(r: &rusqlite::Row<'_>) -> rusqlite::Result<Columns> {
    Columns::read(
        |i| r.get(i),
        |i| r.get(i),
        |i| r.get(i),
        |i| r.get(i),
        |i| r.get(i),
    )
}

impl Tx<'_> {
    /// Runs a shared query (`$n` placeholders) and reads its rows as resources.
    pub(crate) fn columns(
        &self,
        query: &str,
        params: impl rusqlite::Params,
    ) -> StoreResult<Vec<Columns>> {
        let mut st = self
            .tx
            .prepare_cached(&sql::sqlite(query))
            .map_err(db_err)?;
        st.query_map(params, columns)
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)
    }

    pub(crate) fn node(&self, path: &ResourcePath) -> StoreResult<Option<Columns>> {
        self.tx
            .prepare_cached(&sql::sqlite(sql::GET))
            .and_then(|mut st| st.query_row([path.as_str()], columns).optional())
            .map_err(db_err)
    }

    pub(crate) fn dead_props(&self, rid: i64) -> StoreResult<Vec<DeadProp>> {
        let mut st = self
            .tx
            .prepare_cached(&sql::sqlite(sql::PROPS))
            .map_err(db_err)?;
        let rows = st
            .query_map([rid], |r| {
                Ok(DeadProp {
                    name: PropName::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    value: r.get(2)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)
    }

    /// Makes staged content part of this write: short content becomes a `davrepl_content`
    /// row, a content file is referred to as it is. Empty content needs neither.
    pub(crate) fn adopt(&mut self, u: Upload) -> StoreResult<Option<i64>> {
        match u {
            Upload::Short(b) if b.is_empty() => Ok(None),
            Upload::Short(b) => {
                let id = self.next_blob()?;
                self.tx
                    .prepare_cached("INSERT INTO davrepl_content (id, data) VALUES (?1, ?2)")
                    .and_then(|mut st| st.execute(params![id, &b[..]]))
                    .map_err(db_err)?;
                Ok(Some(Content::Row(id).column()))
            }
            Upload::File(staged) => {
                let id = staged.id();
                self.fx.adopted.push(staged);
                self.fx.new_names = true;
                Ok(Some(Content::File(id).column()))
            }
        }
    }

    /// Bytes `start..=end` of the `davrepl_content` row `id`.
    pub(crate) fn short_content(&mut self, id: i64, start: u64, end: u64) -> StoreResult<Bytes> {
        let data = self
            .tx
            .prepare_cached("SELECT data FROM davrepl_content WHERE id = ?1")
            .and_then(|mut st| st.query_row([id], |r| r.get::<_, Vec<u8>>(0)))
            .map_err(db_err)?;
        let whole = Bytes::from(data);
        if let Some(seen) = &mut self.seen {
            seen.content(id, &whole);
        }
        Ok(span(&whole, start, end))
    }

    /// Runs a shared query whose rows are tombstones.
    fn tombstones(&self, query: &str, params: &[Param]) -> StoreResult<Vec<Tombstone>> {
        let mut st = self
            .tx
            .prepare_cached(&sql::sqlite(query))
            .map_err(db_err)?;
        let rows = st
            .query_map(params_from_iter(values(params)), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(db_err)?;
        rows.map(|r| sql::tombstone(self.id, r.map_err(db_err)?))
            .collect()
    }

    fn records(&self, query: &str, params: &[Param]) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        self.columns(query, params_from_iter(values(params)))?
            .into_iter()
            .map(|c| Ok((sql::stored_path(&c.path)?, c.record(self.id))))
            .collect()
    }

    /// The counters, read from the database the first time a read asks.
    pub(crate) fn counters_mut(&mut self) -> StoreResult<&mut Counters> {
        match &mut self.c {
            Some(c) => Ok(c),
            slot => Ok(slot.insert(Counters::load(self.tx)?)),
        }
    }

    pub(crate) fn next_blob(&mut self) -> StoreResult<i64> {
        let c = self.counters_mut()?;
        c.blob += 1;
        Ok(c.blob)
    }
}

impl Rows for Tx<'_> {
    type Payload = Option<i64>;

    fn store_id(&self) -> StoreId {
        self.id
    }

    fn get(&mut self, path: &ResourcePath) -> StoreResult<Option<Record<Option<i64>>>> {
        let found = self.node(path)?.map(|c| c.record(self.id));
        if let (Some(seen), Some(r)) = (&mut self.seen, &found) {
            seen.record(path, r);
        }
        Ok(found)
    }

    fn descendants(
        &mut self,
        root: &ResourcePath,
    ) -> StoreResult<Vec<(ResourcePath, Record<Option<i64>>)>> {
        let (start, end) = sql::below(root);
        self.columns(sql::DESCENDANTS, params![start, end])?
            .into_iter()
            .map(|c| Ok((sql::stored_path(&c.path)?, c.record(self.id))))
            .collect()
    }

    fn put(&mut self, path: &ResourcePath, r: &Record<Option<i64>>) -> StoreResult<()> {
        let c = Columns::of(path, r);
        let parent = path.parent().map(|p| p.as_str().to_owned());
        self.tx
            .prepare_cached(
                "INSERT INTO davrepl_resources (path, parent, rid, kind, version, content_version, len, content_type, created, modified, blob, digests)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT(path) DO UPDATE SET rid = ?3, kind = ?4, version = ?5, content_version = ?6,
                   len = ?7, content_type = ?8, created = ?9, modified = ?10, blob = ?11, digests = ?12",
            )
            .and_then(|mut st| {
                st.execute(params![
                    c.path,
                    parent,
                    c.rid,
                    c.kind,
                    c.version,
                    c.content_version,
                    c.len,
                    c.content_type,
                    c.created,
                    c.modified,
                    c.blob,
                    c.digests
                ])
            })
            .map_err(db_err)?;
        Ok(())
    }

    fn remove(&mut self, path: &ResourcePath) -> StoreResult<()> {
        self.tx
            .execute(
                "DELETE FROM davrepl_resources WHERE path = ?1",
                [path.as_str()],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn tombstone(&mut self, t: Tombstone) -> StoreResult<()> {
        let parent = t.path.parent().map(|p| p.as_str().to_owned());
        self.tx
            .execute(
                "INSERT INTO davrepl_tombstones (seq, rid, path, parent, kind, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    sql::int(t.seq),
                    sql::int(t.rid.counter()),
                    t.path.as_str(),
                    parent,
                    sql::kind_code(t.kind),
                    sql::nanos(t.at)
                ],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn counters(&mut self) -> StoreResult<&mut engine::Counters> {
        Ok(&mut self.counters_mut()?.log)
    }

    fn props(&mut self, rid: ReplUid) -> StoreResult<Vec<DeadProp>> {
        let props = self.dead_props(sql::int(rid.counter()))?;
        if let Some(seen) = &mut self.seen {
            seen.props(rid, &props);
        }
        Ok(props)
    }

    fn set_props(&mut self, rid: ReplUid, props: &[DeadProp]) -> StoreResult<()> {
        let rid = sql::int(rid.counter());
        self.tx
            .execute("DELETE FROM davrepl_props WHERE rid = ?1", [rid])
            .map_err(db_err)?;
        for p in props {
            self.tx
                .execute(
                    "INSERT INTO davrepl_props (rid, ns, local, value) VALUES (?1, ?2, ?3, ?4)",
                    params![rid, p.name.ns, p.name.local, p.value],
                )
                .map_err(db_err)?;
        }
        Ok(())
    }

    fn duplicate(&mut self, payload: &Option<i64>) -> StoreResult<Option<i64>> {
        match Content::of(*payload) {
            None => Ok(None),
            Some(Content::Row(old)) => {
                let id = self.next_blob()?;
                self.tx
                    .prepare_cached(
                        "INSERT INTO davrepl_content (id, data) SELECT ?1, data FROM davrepl_content WHERE id = ?2",
                    )
                    .and_then(|mut st| st.execute(params![id, old]))
                    .map_err(db_err)?;
                Ok(Some(Content::Row(id).column()))
            }
            Some(Content::File(old)) => {
                let id = self
                    .files
                    .link(old)
                    .map_err(|e| io_err("cannot link a content file", e))?;
                self.fx.linked.push(id);
                self.fx.new_names = true;
                Ok(Some(Content::File(id).column()))
            }
        }
    }

    fn release(&mut self, payload: Option<i64>) -> StoreResult<()> {
        match Content::of(payload) {
            None => {}
            Some(Content::Row(id)) => {
                self.tx
                    .prepare_cached("DELETE FROM davrepl_content WHERE id = ?1")
                    .and_then(|mut st| st.execute([id]))
                    .map_err(db_err)?;
            }
            Some(Content::File(id)) => self.fx.released.push(id),
        }
        Ok(())
    }

    fn page(&mut self, q: &PageQuery) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        let (query, params) = sql::page_query(q);
        self.records(query, &params)
    }

    fn changed(&mut self, q: &LogQuery) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        match sql::changed_query(q) {
            Some((query, params)) => self.records(query, &params),
            None => Ok(Vec::new()),
        }
    }

    fn removed(&mut self, q: &LogQuery) -> StoreResult<Vec<Tombstone>> {
        let (query, params) = sql::removed_query(q);
        self.tombstones(query, &params)
    }

    fn purge(&mut self, before: SystemTime) -> StoreResult<PurgeReport> {
        let cutoff = sql::nanos(before);
        let (count, max): (i64, Option<i64>) = self
            .tx
            .query_row(&sql::sqlite(sql::PURGE_COUNT), [cutoff], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(db_err)?;
        self.tx
            .execute(&sql::sqlite(sql::PURGE), [cutoff])
            .map_err(db_err)?;
        let low_water = &mut self.counters_mut()?.log.low_water;
        if let Some(m) = max {
            *low_water = (*low_water).max(m as u64);
        }
        Ok(PurgeReport {
            removed: count as u64,
            low_water: *low_water,
        })
    }

    fn subscription(&mut self, id: u64) -> StoreResult<Option<davrepl_store::Subscription>> {
        let found = self
            .tx
            .prepare_cached(&sql::sqlite(sql::SUBSCRIPTION))
            .and_then(|mut st| {
                st.query_row([sql::int(id)], |r| {
                    SubscriptionColumns::read(|i| r.get(i), |i| r.get(i), |i| r.get(i))
                })
                .optional()
            })
            .map_err(db_err)?;
        found.map(SubscriptionColumns::subscription).transpose()
    }

    fn put_subscription(&mut self, sub: &davrepl_store::Subscription) -> StoreResult<()> {
        let params = SubscriptionColumns::of(sub).params();
        self.tx
            .prepare_cached(&sql::sqlite(sql::PUT_SUBSCRIPTION))
            .and_then(|mut st| st.execute(params_from_iter(values(&params))))
            .map_err(db_err)?;
        Ok(())
    }

    fn remove_subscription(&mut self, id: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached(&sql::sqlite(sql::REMOVE_SUBSCRIPTION))
            .and_then(|mut st| st.execute([sql::int(id)]))
            .map_err(db_err)?;
        Ok(())
    }

    fn sweep_subscriptions(&mut self, now: SystemTime) -> StoreResult<()> {
        self.tx
            .execute(&sql::sqlite(sql::SWEEP_SUBSCRIPTIONS), [sql::nanos(now)])
            .map_err(db_err)?;
        Ok(())
    }

    fn locks(&mut self, scan: &LockScan) -> StoreResult<Vec<Lock>> {
        let mut out = Vec::new();
        for (query, params) in sql::lock_queries(scan) {
            let mut st = self
                .tx
                .prepare_cached(&sql::sqlite(query))
                .map_err(db_err)?;
            let rows = st
                .query_map(params_from_iter(values(&params)), |r| {
                    LockColumns::read(|i| r.get(i), |i| r.get(i), |i| r.get(i))
                })
                .map_err(db_err)?;
            for row in rows {
                out.push(row.map_err(db_err)?.lock()?);
            }
        }
        Ok(out)
    }

    fn put_lock(&mut self, lock: &Lock) -> StoreResult<()> {
        let params = LockColumns::of(lock).params();
        self.tx
            .prepare_cached(&sql::sqlite(sql::PUT_LOCK))
            .and_then(|mut st| st.execute(params_from_iter(values(&params))))
            .map_err(db_err)?;
        Ok(())
    }

    fn remove_lock(&mut self, lock: &Lock) -> StoreResult<()> {
        self.tx
            .prepare_cached(&sql::sqlite(sql::REMOVE_LOCK))
            .and_then(|mut st| st.execute([lock.token.as_str()]))
            .map_err(db_err)?;
        Ok(())
    }

    fn sweep_locks(&mut self, now: SystemTime) -> StoreResult<u64> {
        let n = self
            .tx
            .execute(&sql::sqlite(sql::SWEEP_LOCKS), [sql::nanos(now)])
            .map_err(db_err)?;
        Ok(n as u64)
    }

    fn content(&mut self, blob: &Option<i64>, (start, end): (u64, u64)) -> StoreResult<Pieces> {
        match Content::of(*blob) {
            Some(Content::Row(id)) => Ok(Some(vec![self.short_content(id, start, end)?])),
            // Files are streamed after the step; a missing payload is empty content.
            Some(Content::File(_)) => Ok(None),
            None => Ok(Some(Vec::new())),
        }
    }

    fn kind(&mut self, path: &ResourcePath) -> StoreResult<Option<ResourceKind>> {
        self.tx
            .prepare_cached("SELECT kind FROM davrepl_resources WHERE path = ?1")
            .and_then(|mut st| {
                st.query_row([path.as_str()], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .map(|k| k.map(sql::kind_of))
            .map_err(db_err)
    }

    fn set_content_version(&mut self, path: &ResourcePath, seq: Seq) -> StoreResult<()> {
        self.tx
            .execute(
                "UPDATE davrepl_resources SET content_version = ?1 WHERE path = ?2",
                params![sql::int(seq), path.as_str()],
            )
            .map_err(db_err)?;
        Ok(())
    }
}

//! The engine's rows on SQLite: `davrepl_resources`, `davrepl_props`, `davrepl_tombstones` and
//! `davrepl_chunks` inside the writer thread's group transaction (or a reader's snapshot). The
//! payload of a record is its blob id.

use std::time::SystemTime;

use davrepl_store::chunks::{self, slice_chunk};
use davrepl_store::engine::sql::{self, Columns, Param};
use davrepl_store::engine::sql::{LockColumns, SubscriptionColumns};
use davrepl_store::engine::{self, LockScan, LogQuery, PageQuery, Pieces, Record, Rows, Tombstone};
use davrepl_store::{
    DeadProp, Lock, PropName, PurgeReport, ReplUid, ResourceKind, ResourcePath, Seq, StoreId,
    StoreResult,
};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, params, params_from_iter};

use crate::writer::Counters;
use crate::{CHUNK, INLINE_READ, db_err};

type Rec = Record<Option<i64>>;

fn values(params: &[Param]) -> impl Iterator<Item = Value> + '_ {
    params.iter().map(|p| match p {
        Param::Text(s) => Value::Text(s.clone()),
        Param::Int(n) => Value::Integer(*n),
        Param::OptText(s) => s.clone().map_or(Value::Null, Value::Text),
    })
}

/// One transaction and the counters it allocates from.
pub(crate) struct Tx<'a> {
    pub(crate) tx: &'a Transaction<'a>,
    pub(crate) c: Counters,
    pub(crate) id: StoreId,
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

    /// Stores chunk `n` of blob `blob`.
    pub(crate) fn insert_chunk(&self, blob: i64, n: i64, data: &[u8]) -> StoreResult<()> {
        self.tx
            .prepare_cached("INSERT INTO davrepl_chunks (blob, n, data) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![blob, n, data]))
            .map_err(db_err)?;
        Ok(())
    }

    /// Makes staged content part of this write: the rest chunk goes in, and the payload is
    /// the staged blob (or a new one, for content shorter than a chunk).
    pub(crate) fn adopt(&mut self, u: &chunks::Staged) -> StoreResult<Option<i64>> {
        let blob = match u.blob {
            Some(b) => b,
            None => self.next_blob(),
        };
        if let Some(rest) = &u.rest {
            self.insert_chunk(blob, u.chunks, rest)?;
        }
        Ok(Some(blob))
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

    pub(crate) fn next_blob(&mut self) -> i64 {
        self.c.blob += 1;
        self.c.blob
    }
}

impl Rows for Tx<'_> {
    type Payload = Option<i64>;

    fn store_id(&self) -> StoreId {
        self.id
    }

    fn get(&mut self, path: &ResourcePath) -> StoreResult<Option<Record<Option<i64>>>> {
        Ok(self.node(path)?.map(|c| c.record(self.id)))
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
        Ok(&mut self.c.log)
    }

    fn props(&mut self, rid: ReplUid) -> StoreResult<Vec<DeadProp>> {
        self.dead_props(sql::int(rid.counter()))
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
        let Some(old) = *payload else { return Ok(None) };
        let b = self.next_blob();
        self.tx
            .execute(
                "INSERT INTO davrepl_chunks (blob, n, data) SELECT ?1, n, data FROM davrepl_chunks WHERE blob = ?2",
                params![b, old],
            )
            .map_err(db_err)?;
        Ok(Some(b))
    }

    fn release(&mut self, payload: Option<i64>) -> StoreResult<()> {
        if let Some(b) = payload {
            self.tx
                .execute(&sql::sqlite(sql::DROP_BLOB), [b])
                .map_err(db_err)?;
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
        let low_water = &mut self.c.log.low_water;
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
        if end - start >= INLINE_READ {
            return Ok(None);
        }
        let (first, last) = sql::chunk_span(start, end, CHUNK);
        let mut st = self
            .tx
            .prepare_cached(&sql::sqlite(sql::CHUNKS))
            .map_err(db_err)?;
        let chunks = st
            .query_map(params![blob, first, last], |r| r.get::<_, Vec<u8>>(0))
            .map_err(db_err)?;
        let mut out = Vec::new();
        for (i, data) in chunks.enumerate() {
            let n = (first + i as i64) as u64;
            out.push(slice_chunk(n, CHUNK, data.map_err(db_err)?, start, end));
        }
        Ok(Some(out))
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

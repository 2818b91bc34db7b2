//! Reads: each runs in one `REPEATABLE READ READ ONLY` snapshot, with the queries the SQL
//! backends share (`davrepl_store::engine::sql`).

use std::collections::HashMap;

use bytes::Bytes;
use davrepl_store::chunks::slice_chunk;
use davrepl_store::engine::sql::{self, ChangePlan, Columns, Param, Pending};
use davrepl_store::engine::{self};
use davrepl_store::{
    ByteStream, ChangePage, ChangesQuery, DeadProp, Entry, ErrorKind, GetOptions, ListOptions,
    Listing, Meta, PropName, ResourcePath, StoreError, StoreResult,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::{CHUNK, Counters, INLINE_READ, Mode, PgStore, Tx, pg_err, pooled};

fn columns(r: &Row) -> StoreResult<Columns> {
    Columns::read(
        |i| r.try_get(i),
        |i| r.try_get(i),
        |i| r.try_get(i),
        |i| r.try_get(i),
    )
    .map_err(pg_err)
}

fn bind(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| match p {
            Param::Text(s) => s as &(dyn ToSql + Sync),
            Param::Int(n) => n as &(dyn ToSql + Sync),
        })
        .collect()
}

impl Tx<'_> {
    async fn columns(&self, sql: &str, params: &[Param]) -> StoreResult<Vec<Columns>> {
        self.rows(sql, &bind(params))
            .await?
            .iter()
            .map(columns)
            .collect()
    }

    pub(crate) async fn get(&self, path: &ResourcePath) -> StoreResult<Option<Columns>> {
        self.opt(sql::GET, &[&path.as_str()])
            .await?
            .as_ref()
            .map(columns)
            .transpose()
    }

    pub(crate) async fn must(&self, path: &ResourcePath) -> StoreResult<Columns> {
        self.get(path)
            .await?
            .ok_or_else(|| StoreError::not_found(path))
    }

    pub(crate) async fn props(&self, rid: i64) -> StoreResult<Vec<DeadProp>> {
        Ok(self
            .props_of(&[rid])
            .await?
            .remove(&rid)
            .unwrap_or_default())
    }

    /// Dead properties of many resources in one query (a page of a listing or a manifest).
    async fn props_of(&self, rids: &[i64]) -> StoreResult<HashMap<i64, Vec<DeadProp>>> {
        let mut out: HashMap<i64, Vec<DeadProp>> = HashMap::new();
        if rids.is_empty() {
            return Ok(out);
        }
        let rows = self
            .rows(
                "SELECT rid, ns, local, value FROM davrepl_props WHERE rid = ANY($1) ORDER BY rid, ns, local",
                &[&rids],
            )
            .await?;
        for r in rows {
            out.entry(r.try_get(0).map_err(pg_err)?)
                .or_default()
                .push(DeadProp {
                    name: PropName::new(
                        r.try_get::<_, String>(1).map_err(pg_err)?,
                        r.try_get::<_, String>(2).map_err(pg_err)?,
                    ),
                    value: r.try_get(3).map_err(pg_err)?,
                });
        }
        Ok(out)
    }

    pub(crate) async fn list(
        &self,
        path: &ResourcePath,
        opts: &ListOptions,
    ) -> StoreResult<Listing> {
        let kind = sql::kind_of(self.must(path).await?.kind);
        if !engine::listable(kind, path, opts)? {
            return Ok(Listing::default());
        }
        let (query, params) = sql::listing_query(path, opts.depth, opts.after.as_ref(), opts.limit);
        let found = self.columns(query, &params).await?;
        let props = if opts.with_props {
            let rids: Vec<i64> = found.iter().take(opts.limit).map(|c| c.rid).collect();
            self.props_of(&rids).await?
        } else {
            HashMap::new()
        };
        sql::listing(self.id, found, opts.limit, props)
    }

    pub(crate) async fn change_rows(&self, q: &ChangesQuery) -> StoreResult<ChangePage> {
        let plan = ChangePlan::new(q);
        let mut rows = Vec::new();
        let mut live = Vec::new();
        if plan.scope_row
            && let Some(c) = self
                .get(&q.scope)
                .await?
                .filter(|c| c.version > sql::int(q.since))
        {
            live.push(c);
        }
        if let Some((query, params)) = &plan.live {
            live.extend(self.columns(query, params).await?);
        }
        for c in live {
            rows.push(Pending {
                seq: c.version as u64,
                kind: davrepl_store::ChangeKind::Upsert(c.meta(self.id)?),
                rid: Some(c.rid),
            });
        }
        if let Some((query, params)) = &plan.removed {
            for r in self.rows(query, &bind(params)).await? {
                let seq: i64 = r.try_get(0).map_err(pg_err)?;
                let path: String = r.try_get(2).map_err(pg_err)?;
                let (rid, kind) = (r.try_get(1).map_err(pg_err)?, r.try_get(3).map_err(pg_err)?);
                rows.push(Pending {
                    seq: seq as u64,
                    kind: sql::removed(self.id, rid, &path, kind)?,
                    rid: None,
                });
            }
        }
        let (rows, more, watermark) = sql::cut_changes(rows, q, self.c.seq as u64);
        let props = if q.with_props {
            let rids: Vec<i64> = rows.iter().filter_map(|r| r.rid).collect();
            self.props_of(&rids).await?
        } else {
            HashMap::new()
        };
        Ok(sql::change_page(
            rows,
            props,
            more,
            watermark,
            self.c.low_water as u64,
        ))
    }
}

impl PgStore {
    pub(crate) async fn read_head(&self, path: &ResourcePath) -> StoreResult<Meta> {
        transact!(self, Mode::Snapshot, |t| t.must(path).await?.meta(t.id))
    }

    pub(crate) async fn read_props(&self, path: &ResourcePath) -> StoreResult<Entry> {
        transact!(self, Mode::Snapshot, |t| {
            let c = t.must(path).await?;
            Ok(Entry {
                meta: c.meta(t.id)?,
                props: t.props(c.rid).await?,
            })
        })
    }

    pub(crate) async fn read_changes(&self, query: &ChangesQuery) -> StoreResult<ChangePage> {
        transact!(self, Mode::Snapshot, |t| {
            t.c = Counters::load(t.tx).await?;
            t.change_rows(query).await
        })
    }

    pub(crate) async fn read_content(
        &self,
        path: &ResourcePath,
        opts: &GetOptions,
    ) -> StoreResult<(Meta, ByteStream)> {
        let (meta, blob, span, inline) = transact!(self, Mode::Snapshot, |t| {
            let c = t.must(path).await?;
            if c.is_collection() {
                return Err(StoreError::new(
                    ErrorKind::IsCollection,
                    format!("{path} is a collection"),
                ));
            }
            let meta = c.meta(t.id)?;
            if !opts.condition.is_empty() {
                let mut known = HashMap::new();
                for p in opts.condition.paths(path) {
                    let tokens = match t.get(&p).await? {
                        Some(c) => Some(c.meta(t.id)?.tokens()),
                        None => None,
                    };
                    known.insert(p, tokens);
                }
                engine::evaluate(path, &opts.condition, |p| {
                    Ok(known.get(p).cloned().flatten())
                })?;
            }
            let span = sql::chunk_span(meta.len, opts.range, CHUNK)?;
            let (start, end, first, last) = span;
            let inline = if meta.len == 0 {
                Some(Vec::new())
            } else if end - start < INLINE_READ {
                let chunks: Vec<Vec<u8>> = t
                    .rows(sql::CHUNKS, &[&c.blob, &first, &last])
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()
                    .map_err(pg_err)?;
                Some(chunks)
            } else {
                None
            };
            Ok((meta, c.blob, span, inline))
        })?;
        let (start, end, first_chunk, last) = span;
        if let Some(chunks) = inline {
            let pieces: Vec<StoreResult<Bytes>> = chunks
                .into_iter()
                .enumerate()
                .map(|(i, d)| slice_chunk((first_chunk + i as i64) as u64, CHUNK, d, start, end))
                .filter(|b| !b.is_empty())
                .map(Ok)
                .collect();
            return Ok((meta, Box::pin(futures_util::stream::iter(pieces))));
        }
        // Large content: one chunk per query. A blob's chunks never change once written (a
        // replacement gets a new blob), so a missing chunk means the resource was replaced
        // or deleted mid-read: the stream ends with an error instead of mixing versions.
        let store = self.clone();
        let stream = futures_util::stream::unfold(first_chunk, move |n| {
            let store = store.clone();
            async move {
                if n > last {
                    return None;
                }
                let res = async {
                    let conn = store.conn().await?;
                    let rows = pooled(
                        &conn,
                        "SELECT data FROM davrepl_chunks WHERE blob = $1 AND n = $2",
                        &[&blob, &n],
                    )
                    .await?;
                    match rows.first() {
                        Some(row) => Ok(slice_chunk(
                            n as u64,
                            CHUNK,
                            row.try_get(0).map_err(pg_err)?,
                            start,
                            end,
                        )),
                        None => Err(StoreError::new(
                            ErrorKind::Unavailable,
                            "the resource changed while it was being read",
                        )),
                    }
                }
                .await;
                Some((res, n + 1))
            }
        });
        Ok((meta, Box::pin(stream)))
    }
}

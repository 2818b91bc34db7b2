//! Reads, each on a reader connection inside one read transaction (a consistent snapshot),
//! with the queries the SQL backends share (`davrepl_store::engine::sql`).

use std::collections::HashMap;

use bytes::Bytes;
use davrepl_store::chunks::slice_chunk;
use davrepl_store::engine::sql::{self, ChangePlan, Param, Pending};
use davrepl_store::engine::{self};
use davrepl_store::{
    ByteStream, ChangeKind, ChangePage, ChangesQuery, ErrorKind, GetOptions, ListOptions, Listing,
    Meta, ResourcePath, StoreError, StoreResult,
};
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use crate::rows::Tx;
use crate::{CHUNK, INLINE_READ, SqliteStore, db_err};

fn values(params: &[Param]) -> impl Iterator<Item = Value> + '_ {
    params.iter().map(|p| match p {
        Param::Text(s) => Value::Text(s.clone()),
        Param::Int(n) => Value::Integer(*n),
    })
}

impl Tx<'_> {
    pub(crate) fn list(&self, path: &ResourcePath, opts: &ListOptions) -> StoreResult<Listing> {
        let kind = sql::kind_of(self.must(path)?.kind);
        if !engine::listable(kind, path, opts)? {
            return Ok(Listing::default());
        }
        let (query, params) = sql::listing_query(path, opts.depth, opts.after.as_ref(), opts.limit);
        let found = self.columns(query, params_from_iter(values(&params)))?;
        let mut props = HashMap::new();
        if opts.with_props {
            for c in found.iter().take(opts.limit) {
                props.insert(c.rid, self.dead_props(c.rid)?);
            }
        }
        sql::listing(self.id, found, opts.limit, props)
    }

    pub(crate) fn change_rows(&self, q: &ChangesQuery) -> StoreResult<ChangePage> {
        let plan = ChangePlan::new(q);
        let mut live = Vec::new();
        if plan.scope_row
            && let Some(c) = self
                .node(&q.scope)?
                .filter(|c| c.version > sql::int(q.since))
        {
            live.push(c);
        }
        if let Some((query, params)) = &plan.live {
            live.extend(self.columns(query, params_from_iter(values(params)))?);
        }
        let mut rows = Vec::new();
        for c in live {
            rows.push(Pending {
                seq: c.version as u64,
                kind: ChangeKind::Upsert(c.meta(self.id)?),
                rid: Some(c.rid),
            });
        }
        if let Some((query, params)) = &plan.removed {
            let mut st = self
                .tx
                .prepare_cached(&sql::sqlite(query))
                .map_err(db_err)?;
            let found = st
                .query_map(params_from_iter(values(params)), |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            for (seq, rid, path, kind) in found {
                rows.push(Pending {
                    seq: seq as u64,
                    kind: sql::removed(self.id, rid, &path, kind)?,
                    rid: None,
                });
            }
        }
        let (rows, more, watermark) = sql::cut_changes(rows, q, self.c.seq as u64);
        let mut props = HashMap::new();
        if q.with_props {
            for rid in rows.iter().filter_map(|r| r.rid) {
                props.insert(rid, self.dead_props(rid)?);
            }
        }
        Ok(sql::change_page(
            rows,
            props,
            more,
            watermark,
            self.c.low_water as u64,
        ))
    }
}

impl SqliteStore {
    pub(crate) async fn read_content(
        &self,
        path: &ResourcePath,
        opts: GetOptions,
    ) -> StoreResult<(Meta, ByteStream)> {
        let p = path.clone();
        let (meta, blob, span, inline) = self
            .read(move |t| {
                let c = t.must(&p)?;
                if c.is_collection() {
                    return Err(StoreError::new(
                        ErrorKind::IsCollection,
                        format!("{p} is a collection"),
                    ));
                }
                let meta = c.meta(t.id)?;
                engine::evaluate(&p, &opts.condition, |q| {
                    t.node(q)?.map(|c| Ok(c.meta(t.id)?.tokens())).transpose()
                })?;
                let span = sql::chunk_span(meta.len, opts.range, CHUNK)?;
                let (start, end, first, last) = span;
                let inline = if meta.len == 0 {
                    Some(Vec::new())
                } else if end - start < INLINE_READ {
                    let mut st =
                        t.tx.prepare_cached(&sql::sqlite(sql::CHUNKS))
                            .map_err(db_err)?;
                    let chunks: Vec<Vec<u8>> = st
                        .query_map(rusqlite::params![c.blob, first, last], |r| r.get(0))
                        .map_err(db_err)?
                        .collect::<Result<_, _>>()
                        .map_err(db_err)?;
                    Some(chunks)
                } else {
                    None
                };
                Ok((meta, c.blob, span, inline))
            })
            .await?;
        let (start, end, first_chunk, last) = span;
        let slice = move |n: i64, data: Vec<u8>| slice_chunk(n as u64, CHUNK, data, start, end);
        if let Some(chunks) = inline {
            let pieces: Vec<Result<Bytes, StoreError>> = chunks
                .into_iter()
                .enumerate()
                .map(|(i, d)| Ok(slice(first_chunk + i as i64, d)))
                .filter(|r| r.as_ref().map_or(true, |b| !b.is_empty()))
                .collect();
            return Ok((meta, Box::pin(futures_util::stream::iter(pieces))));
        }
        // Large content: one chunk per step, each checked against the blob the read started
        // with, so a concurrent replacement ends the stream with an error instead of mixing
        // two versions.
        let store = self.clone();
        let path = path.clone();
        let stream = futures_util::stream::unfold(first_chunk, move |n| {
            let store = store.clone();
            let path = path.clone();
            async move {
                if n > last {
                    return None;
                }
                let res = store
                    .read(move |t| {
                        let cur = t.node(&path)?.and_then(|x| x.blob);
                        if cur != blob {
                            return Err(StoreError::new(
                                ErrorKind::Unavailable,
                                "the resource changed while it was being read",
                            ));
                        }
                        t.tx.query_row(
                            "SELECT data FROM davrepl_chunks WHERE blob = ?1 AND n = ?2",
                            rusqlite::params![blob, n],
                            |r| r.get::<_, Vec<u8>>(0),
                        )
                        .map_err(db_err)
                    })
                    .await
                    .map(|d| slice(n, d));
                Some((res, n + 1))
            }
        });
        Ok((meta, Box::pin(stream)))
    }
}

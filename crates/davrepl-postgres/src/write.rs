//! Writes: every one runs the shared engine on a [`View`] of prefetched rows inside a
//! `READ COMMITTED` transaction that holds the counters-row lock, then flushes the view.
//!
//! Round trips of a small write: `BEGIN`; the counters lock pipelined with the prefetch; the
//! flush (all statements pipelined); `COMMIT`. The lock is held for the last three.

use std::time::Duration;

use davrepl_store::chunks;
use davrepl_store::engine::{self};
use davrepl_store::{
    ByteStream, Condition, ErrorKind, Meta, PropPatch, PutOptions, ResourcePath, StoreError,
    StoreResult, TransferOptions, WriteOutcome,
};
use tokio_postgres::IsolationLevel;

use crate::view::{Content, INSERT_CHUNK, Known, View, Wants};
use crate::{CHUNK, Counters, PgStore, commit, now_nanos, pg_err, pooled, retryable};

/// Blob ids reserved from the database sequence at a time.
const BLOB_IDS: i64 = 64;

/// Most times one write refetches rows its prefetch missed before giving up.
const MAX_REFETCH: usize = 32;

/// Paths a write on `target` reads besides its subtrees: the target, its parent and every path
/// its condition names.
fn around(target: &ResourcePath, cond: &Condition) -> Vec<ResourcePath> {
    let mut paths = vec![target.clone()];
    paths.extend(target.parent());
    paths.extend(cond.paths(target));
    paths
}

impl PgStore {
    /// Runs `op` on the engine as one write transaction, retried from scratch on a transient
    /// failure.
    async fn engine_write<T>(
        &self,
        wants: &Wants,
        content: Option<&Content>,
        op: impl Fn(&mut View<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.engine_write_once(wants, content, &op).await {
                Err(e) if attempt <= self.inner.retries && retryable(&e) => {
                    tracing::debug!(error = %e, attempt, "retrying a write");
                    tokio::time::sleep(Duration::from_millis(5u64 << attempt.min(6))).await;
                }
                other => return other,
            }
        }
    }

    async fn engine_write_once<T>(
        &self,
        wants: &Wants,
        content: Option<&Content>,
        op: &impl Fn(&mut View<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let id = self.inner.id;
        let mut conn = self.conn().await?;
        let tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(pg_err)?;
        let lock = tx.prepare_cached(Counters::LOCK).await.map_err(pg_err)?;
        let nothing = Wants::default();
        let wants = if self.inner.prefetch { wants } else { &nothing };
        let mut known = Known::default();
        // The lock query is sent first (a query is sent when its future is first polled, and
        // `try_join` polls in order); PostgreSQL runs a connection's statements in order, so
        // every prefetch query reads after the lock is granted, in a fresh READ COMMITTED
        // snapshot that includes every write committed before.
        let (counters, ()) = futures_util::future::try_join(
            async {
                let row = tx.query_one(&lock, &[]).await.map_err(pg_err)?;
                Counters::from_row(&row)
            },
            known.fetch(&tx, id, wants),
        )
        .await?;
        for _ in 0..MAX_REFETCH {
            let mut view = View::new(id, &known, counters);
            let out = op(&mut view);
            match (out, view.need.take()) {
                (Ok(v), _) => {
                    view.flush(&tx, content).await?;
                    commit(tx).await?;
                    return Ok(v);
                }
                (Err(_), Some(need)) => {
                    drop(view);
                    tracing::trace!(
                        ?need,
                        "prefetch missed a row; fetching it and running again"
                    );
                    known.fetch(&tx, id, &need.wants()).await?;
                }
                (Err(e), None) => return Err(e),
            }
        }
        Err(StoreError::new(
            ErrorKind::Internal,
            "a write kept needing rows it had not fetched",
        ))
    }

    pub(crate) async fn write_put(
        &self,
        path: &ResourcePath,
        body: ByteStream,
        opts: PutOptions,
    ) -> StoreResult<WriteOutcome> {
        let staged = chunks::stage(
            body,
            CHUNK,
            opts.max_len,
            || self.begin_upload(),
            |blob, n, piece| async move {
                let conn = self.conn().await?;
                pooled(&conn, INSERT_CHUNK, &[&blob, &n, &&piece[..]]).await?;
                Ok(())
            },
            |blob| discard(self, blob),
        )
        .await?;
        let wants = Wants::paths(around(path, &opts.condition));
        let blob = match staged.blob {
            Some(b) => b,
            None => self.blob_id().await?,
        };
        let total = staged.total;
        let content = Content {
            blob,
            n: staged.chunks,
            rest: staged.rest,
            staged: staged.blob,
        };
        let staged = staged.blob;
        let result = self
            .engine_write(&wants, Some(&content), |v| {
                engine::put(
                    v,
                    path,
                    Some(blob),
                    total,
                    opts.content_type.clone(),
                    &opts.condition,
                    false,
                )
            })
            .await;
        if result.is_err()
            && let Some(b) = staged
        {
            discard(self, b).await;
        }
        result
    }

    pub(crate) async fn write_collection(
        &self,
        path: &ResourcePath,
        cond: &Condition,
    ) -> StoreResult<WriteOutcome> {
        let wants = Wants::paths(around(path, cond));
        self.engine_write(&wants, None, |v| {
            engine::create_collection(v, path, cond, None)
        })
        .await
    }

    pub(crate) async fn write_delete(
        &self,
        path: &ResourcePath,
        cond: &Condition,
    ) -> StoreResult<Meta> {
        let wants = Wants {
            trees: vec![path.clone()],
            ..Wants::paths(around(path, cond))
        };
        self.engine_write(&wants, None, |v| engine::delete(v, path, cond))
            .await
    }

    pub(crate) async fn write_transfer(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: &TransferOptions,
        moving: bool,
    ) -> StoreResult<WriteOutcome> {
        let mut paths = around(from, &opts.condition);
        paths.extend(to.parent());
        let mut wants = Wants {
            trees: vec![from.clone(), to.clone()],
            ..Wants::paths(paths)
        };
        if !moving {
            wants.props_of = vec![from.clone()];
            wants.props_below = vec![from.clone()];
            wants.blobs_for = Some(from.clone());
        }
        self.engine_write(&wants, None, |v| {
            if moving {
                engine::rename(v, from, to, opts)
            } else {
                engine::copy(v, from, to, opts)
            }
        })
        .await
    }

    pub(crate) async fn write_props(
        &self,
        path: &ResourcePath,
        patch: Vec<PropPatch>,
        cond: &Condition,
    ) -> StoreResult<WriteOutcome> {
        let wants = Wants {
            props_of: vec![path.clone()],
            ..Wants::paths(around(path, cond))
        };
        self.engine_write(&wants, None, |v| {
            engine::patch_props(v, path, patch.clone(), cond)
        })
        .await
    }

    /// A fresh blob id. Ids come from the database sequence, [`BLOB_IDS`] at a time, and are
    /// kept by this handle until used: they are never handed out twice, and a gap (ids a
    /// stopped node never used) does not matter.
    async fn blob_id(&self) -> StoreResult<i64> {
        if let Some(id) = self.reserved_blob() {
            return Ok(id);
        }
        let conn = self.conn().await?;
        let rows = pooled(
            &conn,
            "SELECT nextval('davrepl_blob_ids') FROM generate_series(1, $1::int8)",
            &[&BLOB_IDS],
        )
        .await?;
        let mut ids = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<i64>, _>>()
            .map_err(pg_err)?;
        let id = ids
            .pop()
            .ok_or_else(|| StoreError::new(ErrorKind::Internal, "nextval returned nothing"))?;
        self.inner
            .blob_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
        Ok(id)
    }

    /// A blob for a large upload, recorded in `davrepl_uploads` until a write adopts it (a
    /// node that dies mid-upload leaves a record that a later start sweeps).
    async fn begin_upload(&self) -> StoreResult<i64> {
        let blob = self.blob_id().await?;
        let conn = self.conn().await?;
        pooled(
            &conn,
            "INSERT INTO davrepl_uploads (blob, started) VALUES ($1, $2)",
            &[&blob, &now_nanos()],
        )
        .await?;
        Ok(blob)
    }

    fn reserved_blob(&self) -> Option<i64> {
        self.inner
            .blob_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
    }
}

pub(crate) async fn discard(store: &PgStore, blob: i64) {
    let r = async {
        let conn = store.conn().await?;
        pooled(&conn, davrepl_store::engine::sql::DROP_BLOB, &[&blob]).await?;
        pooled(
            &conn,
            "DELETE FROM davrepl_uploads WHERE blob = $1",
            &[&blob],
        )
        .await?;
        Ok::<_, StoreError>(())
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, blob, "could not discard a staged upload; a later start removes it");
    }
}

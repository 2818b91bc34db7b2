//! Steps: each runs the engine on a [`View`] inside one transaction — a write in
//! `READ COMMITTED` holding the counters-row lock, a read in a `REPEATABLE READ READ ONLY`
//! snapshot — and a write flushes the view before it commits.
//!
//! Round trips of a small write: `BEGIN`; the counters lock pipelined with the prefetch; the
//! flush (all statements pipelined); `COMMIT`. The lock is held for the last three. A read:
//! `BEGIN`; the counters read pipelined with the prefetch (and one more round trip when a
//! listing asks for dead properties).

use std::time::Duration;

use bytes::Bytes;
use davrepl_store::chunks;
use davrepl_store::engine::{Plan, Step};
use davrepl_store::{ErrorKind, StoreError, StoreResult};
use tokio_postgres::IsolationLevel;

use crate::fetch::{Known, Wants};
use crate::view::{Content, INSERT_CHUNK, View};
use crate::{
    LOCK_COUNTERS, Pg, commit, counters as counters_of, now_nanos, pg_err, pooled, retryable,
};

/// Blob ids reserved from the database sequence at a time.
const BLOB_IDS: i64 = 64;

/// Most times one step fetches rows its prefetch missed before giving up.
const MAX_REFETCH: usize = 64;

impl Pg {
    /// Runs `step` as one transaction, retried from scratch on a transient failure. An
    /// upload's staged content is discarded if the step fails.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        plan: Plan,
        upload: Option<chunks::Staged>,
        step: Step<Option<i64>, T>,
    ) -> StoreResult<T> {
        let content = match upload {
            Some(u) => Some(Content {
                blob: match u.blob {
                    Some(b) => b,
                    None => self.blob_id().await?,
                },
                n: u.chunks,
                rest: u.rest,
                staged: u.blob,
            }),
            None => None,
        };
        let mut wants = Wants::default();
        wants.plan.write = plan.write;
        if self.inner.prefetch {
            wants = Wants::from(plan);
        }
        let mut attempt: u32 = 0;
        let result = loop {
            attempt += 1;
            match self.once(&wants, content.as_ref(), &step).await {
                Err(e) if attempt <= self.inner.retries && retryable(&e) => {
                    tracing::debug!(error = %e, attempt, "retrying a transaction");
                    tokio::time::sleep(Duration::from_millis(5u64 << attempt.min(6))).await;
                }
                other => break other,
            }
        };
        if result.is_err()
            && let Some(b) = content.and_then(|c| c.staged)
        {
            chunks::ChunkSink::discard(self, b).await;
        }
        result
    }

    async fn once<T>(
        &self,
        wants: &Wants,
        content: Option<&Content>,
        step: &Step<Option<i64>, T>,
    ) -> StoreResult<T> {
        let (id, write) = (self.inner.id, wants.plan.write);
        let mut conn = self.conn().await?;
        let builder = conn.build_transaction();
        let builder = if write {
            builder.isolation_level(IsolationLevel::ReadCommitted)
        } else {
            builder
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
        };
        let tx = builder.start().await.map_err(pg_err)?;
        let mut known = Known::default();
        if write {
            let lock = tx.prepare_cached(LOCK_COUNTERS).await.map_err(pg_err)?;
            // The lock query is sent first (a query is sent when its future is first polled,
            // and `try_join` polls in order); PostgreSQL runs a connection's statements in
            // order, so every prefetch query reads after the lock is granted, in a fresh
            // READ COMMITTED snapshot that includes every write committed before.
            let (counters, ()) = futures_util::future::try_join(
                async {
                    let row = tx.query_one(&lock, &[]).await.map_err(pg_err)?;
                    counters_of(&row)
                },
                known.fetch(&tx, id, wants),
            )
            .await?;
            known.counters = Some(counters);
        } else {
            known.fetch(&tx, id, wants).await?;
        }
        let payload = content.map(|c| Some(c.blob));
        for _ in 0..MAX_REFETCH {
            let mut view = View::new(id, &known);
            let out = step(&mut view, payload);
            match (out, view.need.take()) {
                (Ok(v), _) => {
                    if write {
                        view.flush(&tx, content).await?;
                        commit(tx).await?;
                    }
                    return Ok(v);
                }
                (Err(_), Some(need)) => {
                    tracing::trace!(?need, "a step needs rows its prefetch missed");
                    let more = need.wants(&known);
                    drop(view);
                    known.fetch(&tx, id, &more).await?;
                }
                (Err(e), None) => return Err(e),
            }
        }
        Err(StoreError::new(
            ErrorKind::Internal,
            "a step kept needing rows it had not fetched",
        ))
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

    fn reserved_blob(&self) -> Option<i64> {
        self.inner
            .blob_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
    }
}

/// Whole chunks of an upload are stored as they arrive, under a blob recorded in
/// `davrepl_uploads` until a write adopts it (a node that dies mid-upload leaves a record that
/// a later start sweeps).
impl chunks::ChunkSink for Pg {
    async fn begin(&self) -> StoreResult<i64> {
        let blob = self.blob_id().await?;
        let conn = self.conn().await?;
        let record = "INSERT INTO davrepl_uploads (blob, started) VALUES ($1, $2)";
        pooled(&conn, record, &[&blob, &now_nanos()]).await?;
        Ok(blob)
    }

    async fn append(&self, blob: i64, n: i64, piece: Bytes) -> StoreResult<()> {
        let conn = self.conn().await?;
        pooled(&conn, INSERT_CHUNK, &[&blob, &n, &&piece[..]]).await?;
        Ok(())
    }

    async fn discard(&self, blob: i64) {
        let r = async {
            let conn = self.conn().await?;
            pooled(&conn, davrepl_store::engine::sql::DROP_BLOB, &[&blob]).await?;
            let forget = "DELETE FROM davrepl_uploads WHERE blob = $1";
            pooled(&conn, forget, &[&blob]).await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, blob, "could not discard a staged upload; a later start removes it");
        }
    }
}

//! Steps: each runs the engine on a [`View`] inside one transaction — a write in
//! `READ COMMITTED` holding the counters-row lock, a read in a `REPEATABLE READ READ ONLY`
//! snapshot — and a write flushes the view before it commits.
//!
//! Round trips of a small write: `BEGIN` + the counters lock + the prefetch, pipelined; the
//! flush (all statements pipelined); `COMMIT` — three, the lock held for all of them. A read:
//! `BEGIN` + the prefetch (a small item's content included), one round trip, plus one when a
//! listing or change page asks for dead properties; its `ROLLBACK` is not waited for.

use std::time::Duration;

use bytes::Bytes;
use davrepl_store::chunks;
use davrepl_store::engine::{Plan, Step};
use davrepl_store::{ErrorKind, StoreError, StoreResult};
use deadpool_postgres::ClientWrapper;
use futures_util::FutureExt;

use crate::fetch::{Known, Wants};
use crate::view::{Content, INSERT_CHUNK, View};
use crate::{
    LOCK_COUNTERS, Pg, commit_err, counters as counters_of, lock_count, now_nanos, pg_err, pooled,
    retryable,
};

/// A transaction open on a pooled connection: rolled back when dropped uncommitted (a read, or
/// a step that failed). The `ROLLBACK` is queued on the connection without waiting for its
/// answer, so it runs before anything the connection's next user sends.
struct Open<'c> {
    client: &'c ClientWrapper,
    committed: bool,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // Polling once sends the message; the answer is not needed.
            let _ = self.client.batch_execute("ROLLBACK").now_or_never();
        }
    }
}

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
        let conn = self.conn().await?;
        let client: &ClientWrapper = &conn;
        let begin = if write {
            "BEGIN ISOLATION LEVEL READ COMMITTED"
        } else {
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        };
        let mut open = Open {
            client,
            committed: false,
        };
        let mut known = Known::default();
        // One round trip: `BEGIN`, (for a write) the counters lock, and the prefetch. A query is
        // sent when its future is first polled and `try_join` polls in order; PostgreSQL runs a
        // connection's statements in order. So every prefetch query runs inside the transaction
        // and, in a write, after the lock is granted, in a fresh READ COMMITTED snapshot that
        // includes every write committed before.
        let lock = match write {
            true => Some(client.prepare_cached(LOCK_COUNTERS).await.map_err(pg_err)?),
            false => None,
        };
        let ((), counters, ()) = futures_util::future::try_join3(
            async { client.batch_execute(begin).await.map_err(pg_err) },
            async {
                match &lock {
                    Some(lock) => {
                        let row = client.query_one(lock, &[]).await.map_err(pg_err)?;
                        let first = crate::last_counter(&row)?;
                        Ok(Some((counters_of(&row)?, lock_count(&row)?, first)))
                    }
                    None => Ok(None),
                }
            },
            known.fetch(client, id, wants),
        )
        .await?;
        if let Some((counters, locks, first)) = counters {
            known.counters = Some(counters);
            known.lock_count = Some(locks);
            known.first = Some(first);
        }
        let payload = content.map(|c| Some(c.blob));
        for _ in 0..MAX_REFETCH {
            let mut view = View::new(id, &known);
            let out = step(&mut view, payload);
            match (out, view.need.take()) {
                (Ok(v), _) => {
                    if write {
                        view.flush(client, content).await?;
                        client.batch_execute("COMMIT").await.map_err(commit_err)?;
                        open.committed = true;
                    }
                    return Ok(v);
                }
                (Err(_), Some(need)) => {
                    tracing::trace!(?need, "a step needs rows its prefetch missed");
                    let more = need.wants(&known);
                    drop(view);
                    known.fetch(client, id, &more).await?;
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

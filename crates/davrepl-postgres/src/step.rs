//! Steps: each runs the engine on a [`View`] inside one transaction — a write in
//! `READ COMMITTED`, holding row locks on what it changes, a read in a `REPEATABLE READ READ
//! ONLY` snapshot — and a write flushes the view and commits in one round trip.
//!
//! Round trips of a small write: `BEGIN` + its row locks + its counters + the prefetch,
//! pipelined; the flush (all statements pipelined) + `COMMIT` — two. Only a step that must
//! run alone (LOCK, UNLOCK, a purge), or any write while the store holds locks, also locks the
//! counters row. A read whose prefetch is one statement (a GET: the item's row with its
//! content) sends only that statement, outside a transaction; other reads send `BEGIN` + the
//! prefetch in one round trip, plus one when a listing or change page asks for dead
//! properties, and their `ROLLBACK` is not waited for.

use std::time::Duration;

use bytes::Bytes;
use davrepl_store::chunks;
use davrepl_store::engine::{Plan, Step};
use davrepl_store::{ErrorKind, StoreError, StoreResult};
use deadpool_postgres::ClientWrapper;
use futures_util::FutureExt;
use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;

use crate::fetch::{Known, Need, Queries, Wants};
use crate::hot;
use crate::view::{Content, INSERT_CHUNK, View};
use crate::{
    Pg, WRITE_COUNTERS, counters as counters_of, lock_count, now_nanos, pg_err, pooled, retryable,
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

/// A write's first statements, prepared: they take its locks and read its counters.
struct WriteLocks {
    exclusive: bool,
    /// [`RUN_ALONE`], left out while this node has seen no lock rows and the step need not
    /// run alone (the counters read then tells whether lock rows appeared, and if so the step
    /// runs again with it).
    run_alone: Option<tokio_postgres::Statement>,
    counters: tokio_postgres::Statement,
    /// Row locks, then ancestor locks, in that order (one statement when both are one path).
    sets: Vec<(tokio_postgres::Statement, Vec<Box<dyn ToSql + Sync + Send>>)>,
}

/// What a write's first statements found.
struct Taken {
    counters: davrepl_store::engine::Counters,
    lock_count: i64,
    first: u64,
    exclusive: bool,
}

/// Takes the counters-row lock, but only when the step must run alone (`$1`) or the store
/// holds lock rows (a write may then have to remove some, and lock rows are counted in that
/// row): ordinary writes on a store without locks run in parallel.
const RUN_ALONE: &str = "SELECT 1 FROM davrepl_store WHERE id = 1 AND (locks > 0 OR $1) FOR UPDATE";
/// The rows a write changes, locked for the rest of the transaction (in path order, which
/// makes deadlocks rare; one that happens is retried).
const LOCK_ROWS: &str =
    "SELECT 1 FROM davrepl_resource_rows WHERE path = ANY($1) ORDER BY path FOR UPDATE";
/// Their ancestors, share-locked: a DELETE or MOVE of one waits for the writes below it (and
/// then sees their rows), and they wait for it.
const LOCK_ANCESTORS: &str =
    "SELECT 1 FROM davrepl_resource_rows WHERE path = ANY($1) ORDER BY path FOR KEY SHARE";
/// [`LOCK_ROWS`] and [`LOCK_ANCESTORS`] for one path, the common case (a PUT of an item
/// below the root's children). PostgreSQL plans a statement on an array parameter anew at
/// every run (a plan for the array at hand looks cheaper than a generic one), which cost
/// more than running it; these keep one generic plan per connection.
const LOCK_ROW: &str = "SELECT 1 FROM davrepl_resource_rows WHERE path = $1 FOR UPDATE";
const LOCK_ANCESTOR: &str = "SELECT 1 FROM davrepl_resource_rows WHERE path = $1 FOR KEY SHARE";
/// [`LOCK_ROW`] of `$1`, then [`LOCK_ANCESTOR`] of `$2`, as one statement: a write of one
/// item below one collection, the most common write, takes its row locks with one statement
/// instead of two (an `Append` runs its inputs in order, so the locks are taken in the same
/// order as by the two statements).
const LOCK_ROW_AND_ANCESTOR: &str = "SELECT 1 FROM (
        SELECT 1 FROM davrepl_resource_rows WHERE path = $1 FOR UPDATE) AS written
    UNION ALL SELECT 1 FROM (
        SELECT 1 FROM davrepl_resource_rows WHERE path = $2 FOR KEY SHARE) AS ancestor";

impl WriteLocks {
    /// Sends every statement at once, in order (each query is sent when first polled, and
    /// `try_join3` polls in order): the prefetch sent after them runs after the locks.
    async fn take(&self, client: &ClientWrapper) -> StoreResult<Taken> {
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = self
            .sets
            .iter()
            .map(|(_, ps)| ps.iter().map(|p| &**p as _).collect())
            .collect();
        let (alone, _, row) = futures_util::future::try_join3(
            async {
                match &self.run_alone {
                    Some(st) => client.query(st, &[&self.exclusive]).await,
                    None => Ok(Vec::new()),
                }
            },
            try_join_all(
                self.sets
                    .iter()
                    .zip(&params)
                    .map(|((st, _), p)| client.query(st, p)),
            ),
            client.query_one(&self.counters, &[]),
        )
        .await
        .map_err(pg_err)?;
        Ok(Taken {
            counters: counters_of(&row)?,
            lock_count: lock_count(&row)?,
            first: crate::last_counter(&row)?,
            exclusive: !alone.is_empty(),
        })
    }
}

/// How long a read waits, at most, for the writers that were in flight when it first looked
/// and are older than the last change it saw (they hold its watermark below that change), so
/// that it reports every change committed before it started: a client sees its own writes.
/// Writers that start later do not hold it. Past this the read goes on with the lower
/// watermark, which is still correct: the changes above it are reported by a later read.
const SETTLE: Duration = Duration::from_millis(250);

/// Why a read runs again at once (not counted as a retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rerun {
    /// Its snapshot's watermark is below its horizon (see [`SETTLE`]).
    Behind,
    /// It ran as one statement outside a transaction and needs more rows: it runs again inside
    /// a `REPEATABLE READ` transaction, so that all its statements see one snapshot.
    NeedsSnapshot,
}

impl Rerun {
    fn error(self) -> StoreError {
        StoreError::new(ErrorKind::Unavailable, self.to_string()).with_source(self)
    }

    fn of(e: &StoreError) -> Option<Self> {
        std::error::Error::source(e).and_then(|s| s.downcast_ref::<Self>().copied())
    }
}

impl std::fmt::Display for Rerun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Behind => "older writers are still in flight",
            Self::NeedsSnapshot => "a one-statement read needed more rows",
        })
    }
}

impl std::error::Error for Rerun {}

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
        if let Some(out) = self.cached(&plan, &step).await {
            return out;
        }
        let mut wants = Wants::default();
        wants.plan.write = plan.write;
        wants.plan.exclusive = plan.exclusive;
        wants.plan.written = plan.written.clone();
        if self.inner.prefetch {
            wants = Wants::from(plan);
        }
        let mut attempt: u32 = 0;
        let settle_until = tokio::time::Instant::now() + SETTLE;
        let mut pause = Duration::from_micros(500);
        // The horizon the read first saw: it waits until its watermark reaches that.
        let mut target = None;
        // A read whose prefetch is one statement sends just that statement (no `BEGIN`, no
        // `ROLLBACK`): a statement outside a transaction sees one snapshot of its own. `once`
        // counts the statements; this says whether it may (not after `NeedsSnapshot`).
        let mut alone = !wants.plan.write;
        let result = loop {
            let settle = match !wants.plan.write && tokio::time::Instant::now() < settle_until {
                true => Some(&mut target),
                false => None,
            };
            match self
                .once(&mut wants, content.as_ref(), &step, settle, alone)
                .await
            {
                Err(e) if Rerun::of(&e) == Some(Rerun::NeedsSnapshot) => alone = false,
                Err(e) if Rerun::of(&e) == Some(Rerun::Behind) => {
                    // Writers older than the last change are still in flight: wait a little
                    // for them, so a reader sees what was committed before it asked.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                Err(e) if attempt < self.inner.retries && retryable(&e) => {
                    attempt += 1;
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

    /// Runs a HEAD or GET of one item on its cached row and content, if the hot-item cache
    /// holds them and they are still the latest (see `hot.rs`); `None` when the step must
    /// read the database.
    async fn cached<T>(&self, plan: &Plan, step: &Step<Option<i64>, T>) -> Option<StoreResult<T>> {
        let hot = &self.inner.hot;
        let path = hot::point_item(plan).filter(|_| hot.on())?;
        let range = plan.content.as_ref().and_then(|(_, r)| *r);
        let item = hot.get(path, plan.content.is_some()).await?;
        let known = Known::of_item(path, item, range);
        let mut view = View::new(self.inner.id, &known);
        let out = step(&mut view, None);
        // Something beyond the item's row and content: read from the database.
        view.need.is_none().then_some(out)
    }

    async fn once<T>(
        &self,
        wants: &mut Wants,
        content: Option<&Content>,
        step: &Step<Option<i64>, T>,
        mut settle: Option<&mut Option<u64>>,
        alone: bool,
    ) -> StoreResult<T> {
        let (id, write) = (self.inner.id, wants.plan.write);
        let queries = Queries::of(wants);
        let alone = alone && !write && queries.len() == 1;
        let conn = self.conn().await?;
        let client: &ClientWrapper = &conn;
        let begin = if write {
            "BEGIN ISOLATION LEVEL READ COMMITTED"
        } else {
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        };
        let mut open = Open {
            client,
            // Outside a transaction there is nothing to roll back.
            committed: alone,
        };
        let mut known = Known {
            note_seen: hot::point_item(&wants.plan).is_some() && self.inner.hot.wants(),
            ..Known::default()
        };
        // One round trip: `BEGIN`, (for a write) its locks and counters, and the prefetch. A
        // query is sent when its future is first polled and `try_join` polls in order;
        // PostgreSQL runs a connection's statements in order. So every prefetch query runs
        // inside the transaction and, in a write, after its locks are granted, in a fresh
        // READ COMMITTED snapshot that includes every write committed before.
        let locks = match write {
            true => Some(self.write_locks(client, &wants.plan).await?),
            false => None,
        };
        let ((), counters, ()) = futures_util::future::try_join3(
            async {
                match alone {
                    true => Ok(()),
                    false => client.batch_execute(begin).await.map_err(pg_err),
                }
            },
            async {
                match &locks {
                    Some(l) => l.take(client).await.map(Some),
                    None => Ok(None),
                }
            },
            known.fetch(client, id, wants, queries),
        )
        .await?;
        if let Some(taken) = counters {
            self.inner
                .locks_seen
                .store(taken.lock_count > 0, std::sync::atomic::Ordering::Relaxed);
            known.counters = Some(taken.counters);
            known.lock_count = Some(taken.lock_count);
            known.first = Some(taken.first);
            known.exclusive = taken.exclusive;
            if taken.lock_count > 0 && !taken.exclusive {
                // A LOCK committed between the two reads of the counters row: run again,
                // alone this time, since the step may have to remove lock rows.
                return Err(StoreError::new(
                    ErrorKind::Unavailable,
                    "the store's locks changed while a write started",
                )
                .with_source(crate::Retry("locks appeared")));
            }
        }
        let payload = content.map(|c| Some(c.blob));
        for _ in 0..MAX_REFETCH {
            if let (Some(target), Some(c), Some(horizon)) =
                (settle.as_deref_mut(), &known.counters, known.horizon)
                && c.seq < *target.get_or_insert(horizon)
            {
                return Err(Rerun::Behind.error());
            }
            let mut view = View::new(id, &known);
            let out = step(&mut view, payload);
            match (out, view.need.take()) {
                (Ok(v), _) if write => {
                    let notice = view.commit(client, content).await?;
                    open.committed = true;
                    if let Some(n) = notice {
                        self.inner.notifier.send(&n);
                    }
                    return Ok(v);
                }
                (Ok(v), _) => {
                    drop(view);
                    if let Some(seen) = known.seen.take() {
                        self.inner.hot.keep(seen);
                    }
                    return Ok(v);
                }
                (Err(_), Some(need)) if alone => {
                    // A GET or HEAD of a collection: the statement that reads an item with its
                    // content does not give a collection's row (see `ITEM_WITH_CONTENT`), so
                    // the rerun reads the row alone.
                    if let Need::Path(p) = need
                        && wants.plan.content.as_ref().is_some_and(|(c, _)| *c == p)
                    {
                        wants.plan.content = None;
                    }
                    return Err(Rerun::NeedsSnapshot.error());
                }
                (Err(_), Some(need)) => {
                    tracing::trace!(?need, "a step needs rows its prefetch missed");
                    let more = need.wants(&known);
                    drop(view);
                    known.fetch(client, id, &more, Queries::of(&more)).await?;
                }
                (Err(e), None) => return Err(e),
            }
        }
        Err(StoreError::new(
            ErrorKind::Internal,
            "a step kept needing rows it had not fetched",
        ))
    }

    /// Prepares a write's first statements for `plan`.
    async fn write_locks(
        &self,
        client: &ClientWrapper,
        plan: &davrepl_store::engine::Plan,
    ) -> StoreResult<WriteLocks> {
        let prepare = |sql| client.prepare_cached(sql);
        let written: Vec<String> = plan.written.iter().map(|p| p.as_str().to_owned()).collect();
        let mut ancestors: Vec<String> = Vec::new();
        for p in &plan.written {
            let mut at = p.parent();
            while let Some(a) = at {
                if !a.is_root() && !plan.written.contains(&a) {
                    ancestors.push(a.as_str().to_owned());
                }
                at = a.parent();
            }
        }
        ancestors.sort_unstable();
        ancestors.dedup();
        type Params = Vec<Box<dyn ToSql + Sync + Send>>;
        let one = |paths: &mut Vec<String>| -> Params { vec![Box::new(paths.remove(0))] };
        let many = |paths: &mut Vec<String>| -> Params { vec![Box::new(std::mem::take(paths))] };
        let (mut written, mut ancestors) = (written, ancestors);
        let mut sets: Vec<(&str, Params)> = Vec::new();
        match (written.len(), ancestors.len()) {
            (1, 1) => {
                let mut ps = one(&mut written);
                ps.extend(one(&mut ancestors));
                sets.push((LOCK_ROW_AND_ANCESTOR, ps));
            }
            (w, a) => {
                match w {
                    0 => {}
                    1 => sets.push((LOCK_ROW, one(&mut written))),
                    _ => sets.push((LOCK_ROWS, many(&mut written))),
                }
                match a {
                    0 => {}
                    1 => sets.push((LOCK_ANCESTOR, one(&mut ancestors))),
                    _ => sets.push((LOCK_ANCESTORS, many(&mut ancestors))),
                }
            }
        }
        let mut prepared = Vec::with_capacity(sets.len());
        for (sql, params) in sets {
            prepared.push((prepare(sql).await.map_err(pg_err)?, params));
        }
        let locks_seen = self
            .inner
            .locks_seen
            .load(std::sync::atomic::Ordering::Relaxed);
        let run_alone = match plan.exclusive || locks_seen {
            true => Some(prepare(RUN_ALONE).await.map_err(pg_err)?),
            false => None,
        };
        Ok(WriteLocks {
            exclusive: plan.exclusive,
            run_alone,
            counters: prepare(WRITE_COUNTERS).await.map_err(pg_err)?,
            sets: prepared,
        })
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

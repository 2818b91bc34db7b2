//! [`PgStore`]: the whole [`ReplStore`](davrepl_store::ReplStore) contract on PostgreSQL, so
//! that several stateless davrepl nodes behind a load balancer can serve one namespace. Every
//! rule of the model is the storage engine's (`davrepl_store::engine`); this crate gives it
//! rows (a prefetched view per step, see `view.rs`) and content.
//!
//! - **Shared state only in the database**: the store id and the collblob secret live in the
//!   `davrepl_store` row, so a collblob, a resource tag or an `If:` condition issued by one node
//!   is understood by every other.
//! - **Gap-free change log across nodes, without a store-wide lock**: a write numbers its
//!   changes from its own transaction id (`base + (xid << 22) + k`), so writers on every node
//!   commit in parallel. Numbers follow transaction start, not commit, so a reader hands out a
//!   watermark only below the oldest transaction still in flight in this database (read from
//!   its snapshot) and reports changes only up to it: a change can never later appear below a
//!   watermark a client was given. A read waits briefly (at most 250 ms) for writers older
//!   than the last change it sees, so a client sees what it wrote before.
//! - **Compare-and-swap by row locks**: a write first locks the rows it changes (`FOR UPDATE`)
//!   and share-locks their ancestors (`FOR KEY SHARE`), then evaluates the request's condition
//!   in a snapshot taken after the locks: two conflicting conditional writes — on the same node
//!   or on two — have exactly one winner, and a DELETE or MOVE of a collection waits for the
//!   writes below it. A create that races another create of the same path fails on the unique
//!   key and is rerun, and then sees the other's row. LOCK, UNLOCK and purges (rare) still take
//!   the counters row, and run alone.
//! - **Repeated reads share their round trips**: a node keeps the items it read recently and
//!   answers a HEAD or GET of one from memory once a check that began after the request —
//!   the cluster's current snapshot, one statement for every request waiting — shows that
//!   nothing committed since the item was read ([`PgOptions::hot_items`]).
//! - **Content in 256 KiB chunks**, staged before the final transaction for large uploads and
//!   streamed chunk by chunk for large downloads: nothing needs to fit in memory.
//! - **Transient failures** (serialization failures, deadlocks, lost connections before
//!   commit) are retried; what cannot be retried surfaces as [`ErrorKind::Unavailable`] (503),
//!   never as a silently lost write.
//!
//! ```no_run
//! # async fn demo() -> Result<(), davrepl_store::StoreError> {
//! let store = davrepl_postgres::PgStore::connect("postgres://davrepl:secret@127.0.0.1/davrepl").await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! No TLS stack is linked: run PostgreSQL on a private network or a local socket, or put a
//! TLS tunnel in front of it.

mod fetch;
mod hot;
mod listen;
mod schema;
mod step;
mod stream;
#[cfg(feature = "throwaway")]
pub mod throwaway;
mod view;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use davrepl_store::engine::{Atomic, AtomicOf, Backend, Counters, Engine, Incoming, Staged, sql};
use davrepl_store::{
    ByteStream, ErrorKind, ResourcePath, Secret, StoreError, StoreId, StoreResult,
};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// Content is stored in chunks of this many bytes.
pub const CHUNK: usize = 256 * 1024;
/// Reads up to this size are fetched within the read step.
const INLINE_READ: u64 = 8 * 1024 * 1024;

/// Reads the store id and secret, first replacing the secret with `fresh` when a new
/// generation is asked for.
async fn load_identity(
    client: &tokio_postgres::Client,
    new_generation: bool,
    fresh: &Secret,
) -> StoreResult<tokio_postgres::Row> {
    if new_generation {
        client
            .execute(
                "UPDATE davrepl_store SET secret = $1 WHERE id = 1",
                &[&&fresh[..]],
            )
            .await
            .map_err(pg_err)?;
        tracing::warn!("new store generation: every earlier collblob is refused");
    }
    client
        .query_one(
            "SELECT store_id, secret FROM davrepl_store WHERE id = 1",
            &[],
        )
        .await
        .map_err(pg_err)
}

/// How to connect.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgOptions {
    /// Most connections this node holds.
    pub pool_size: usize,
    /// How long a request waits for a free connection before it gets 503.
    pub wait_timeout: Duration,
    /// How often a transaction that failed for a transient reason is retried.
    pub retries: u32,
    /// Staged content of uploads older than this, with no resource pointing at it, is removed
    /// when a node starts (the node that staged it died). Must exceed the longest upload.
    pub stale_upload_after: Duration,
    /// Start a new generation at connect: the shared collblob secret is replaced, so every
    /// collblob issued before is refused (`475`). Do this on one node, with all others stopped,
    /// after restoring the database from a backup; then start the others.
    pub new_generation: bool,
    /// Fetch the rows a write will touch in one round trip before running it (the default).
    /// Off, each row is fetched when the write first asks for it: many more round trips, for
    /// testing that path.
    pub prefetch: bool,
    /// Bytes of memory for the rows (and content up to 64 KiB) of the items this node read
    /// recently, so that the next HEAD or GET of the same item does not read them again. A
    /// cached item is used only after a check — one statement, shared by every read waiting
    /// for it — shows that nothing committed in the whole cluster since it was read, so a read
    /// still sees every write completed before it began, on any node. `0` turns it off.
    pub hot_items: u64,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            wait_timeout: Duration::from_secs(30),
            retries: 5,
            stale_upload_after: Duration::from_secs(24 * 3600),
            new_generation: false,
            prefetch: true,
            hot_items: 16 * 1024 * 1024,
        }
    }
}

struct Inner {
    /// Fires the engine's change signal when any node commits; stops with the last handle.
    _listener: Option<listen::Listener>,
    /// Sends this node's notifications after its commits (on the listener's connection).
    notifier: listen::Notifier,
    pool: Pool,
    id: StoreId,
    secret: Secret,
    retries: u32,
    prefetch: bool,
    /// Blob ids reserved from the database sequence and not used yet.
    blob_ids: Mutex<Vec<i64>>,
    /// Whether the counters row said, when this node last read it, that the store holds lock
    /// rows: a write then asks for the counters-row lock in its first round trip (see
    /// `step::RUN_ALONE`); while it holds none, a write leaves that statement out.
    locks_seen: std::sync::atomic::AtomicBool,
    /// The items this node read recently.
    hot: hot::HotItems,
}

/// The PostgreSQL-backed [`ReplStore`](davrepl_store::ReplStore): the storage engine over
/// PostgreSQL rows. Cloning gives another handle to the same pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    engine: Engine<Pg>,
}

davrepl_store::forward_repl_store!(impl[] for PgStore => |s| (s.engine));

/// The engine backend of [`PgStore`]: a connection pool; each step is one transaction.
#[derive(Clone)]
pub(crate) struct Pg {
    inner: Arc<Inner>,
}

pub(crate) fn now_nanos() -> i64 {
    sql::nanos(std::time::SystemTime::now())
}

/// Marks an error after which the whole transaction may safely run again.
#[derive(Debug)]
struct Retry(&'static str);

impl std::fmt::Display for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Retry {}

/// Whether a database error is transient: the transaction did not happen and may be retried.
fn transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let c = code.code();
        // serialization_failure, deadlock_detected, admin/crash shutdown, cannot_connect_now,
        // too_many_connections, and the connection_exception class. And unique_violation: two
        // writes created the same path at once (writers run in parallel, and a row that does
        // not exist yet cannot be locked); run again, the loser finds the winner's row.
        return matches!(
            c,
            "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "23505"
        ) || c.starts_with("08");
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    if transient(&e) {
        StoreError::new(
            ErrorKind::Unavailable,
            "the database is unavailable or asked for the transaction to be retried",
        )
        .with_source(e)
    } else {
        StoreError::internal(e)
    }
}

fn retryable(e: &StoreError) -> bool {
    e.kind() == ErrorKind::Unavailable
        && std::error::Error::source(e).is_some_and(|s| {
            s.is::<Retry>()
                || s.downcast_ref::<tokio_postgres::Error>()
                    .is_some_and(transient)
        })
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(e),
        other => StoreError::new(ErrorKind::Unavailable, "no database connection available")
            .with_source(other.to_string()),
    }
}

fn config_err(msg: impl std::fmt::Display) -> StoreError {
    StoreError::new(ErrorKind::InvalidInput, format!("PostgreSQL store: {msg}"))
}

async fn commit(tx: deadpool_postgres::Transaction<'_>) -> StoreResult<()> {
    tx.commit().await.map_err(commit_err)
}

/// The error of a `COMMIT`.
fn commit_err(e: tokio_postgres::Error) -> StoreError {
    if e.code().is_some() {
        pg_err(e)
    } else {
        // The commit was sent but its answer was lost: it may or may not have happened.
        // Not retried (a conditional write would then fail against its own change).
        StoreError::new(
            ErrorKind::Unavailable,
            "the database connection failed while committing; the write may or may not have been applied",
        )
        .with_source(e.to_string())
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, or a key=value
    /// string), creating or upgrading the schema if needed.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, PgOptions::default()).await
    }

    /// Connects with options.
    pub async fn connect_with(url: &str, opts: PgOptions) -> StoreResult<Self> {
        let config: tokio_postgres::Config = url.parse().map_err(config_err)?;
        let target = describe(&config);
        let (mut client, connection) = config.connect(NoTls).await.map_err(|e| {
            StoreError::new(
                ErrorKind::Unavailable,
                format!("cannot connect to {target}"),
            )
            .with_source(e)
        })?;
        let driver = tokio::spawn(connection);
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| StoreError::new(ErrorKind::Internal, format!("no randomness: {e}")))?;
        let migrated = schema::migrate(&mut client, StoreId::random().0, secret).await;
        let loaded = match migrated {
            Ok(()) => load_identity(&client, opts.new_generation, &secret).await,
            Err(e) => Err(StoreError::new(
                ErrorKind::Internal,
                format!("{target}: {e}"),
            )),
        };
        drop(client);
        let _ = driver.await;
        let row = loaded?;
        let (id, secret) = sql::identity(
            row.try_get(0).map_err(pg_err)?,
            row.try_get(1).map_err(pg_err)?,
        )?;
        let config_for_listen = config.clone();
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(1))
            // The connection used last is taken first: while the load needs fewer connections
            // than the pool holds, the same few backends (awake, their caches warm) answer.
            .queue_mode(deadpool_postgres::QueueMode::Lifo)
            .wait_timeout(Some(opts.wait_timeout))
            .create_timeout(Some(opts.wait_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| config_err(e.to_string()))?;
        // The engine (and its signal) is built first; the listener fires that signal.
        let signal = davrepl_store::ChangeSignal::new();
        let (listener, notifier) = listen::spawn(config_for_listen, signal.clone());
        let hot = hot::HotItems::new(opts.hot_items, &pool);
        let backend = Pg {
            inner: Arc::new(Inner {
                _listener: Some(listener),
                notifier,
                pool,
                id,
                secret,
                retries: opts.retries,
                prefetch: opts.prefetch,
                blob_ids: Mutex::new(Vec::new()),
                locks_seen: std::sync::atomic::AtomicBool::new(true),
                hot,
            }),
        };
        backend
            .remove_stale_uploads(opts.stale_upload_after)
            .await?;
        Ok(Self {
            engine: Engine::with_signal(backend, signal),
        })
    }
}

impl PgStore {
    /// How many HEAD and GET requests this node answered from its hot-item cache
    /// ([`PgOptions::hot_items`]) since it connected.
    pub fn hot_item_hits(&self) -> u64 {
        self.engine.backend().inner.hot.hits()
    }
}

impl Pg {
    async fn conn(&self) -> StoreResult<Object> {
        self.inner.pool.get().await.map_err(pool_err)
    }

    /// Removes content staged by uploads that started before `age` ago and never completed.
    async fn remove_stale_uploads(&self, age: Duration) -> StoreResult<()> {
        let cutoff = now_nanos().saturating_sub(age.as_nanos().min(i64::MAX as u128) as i64);
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(pg_err)?;
        let stale: Vec<i64> = tx
            .query(
                "DELETE FROM davrepl_uploads WHERE started < $1 RETURNING blob",
                &[&cutoff],
            )
            .await
            .map_err(pg_err)?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(pg_err)?;
        tx.execute("DELETE FROM davrepl_chunks WHERE blob = ANY($1)", &[&stale])
            .await
            .map_err(pg_err)?;
        commit(tx).await?;
        if !stale.is_empty() {
            tracing::info!(
                uploads = stale.len(),
                "removed content of uploads that never completed"
            );
        }
        Ok(())
    }
}

/// `host:port/db` of a config, without credentials, for messages.
fn describe(c: &tokio_postgres::Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{host}:{port}/{}", c.get_dbname().unwrap_or(""))
}

/// Changes of one transaction are numbered `first + k`, `1 <= k < SPAN`, where `first` is
/// `base + (xid << SPAN_BITS)` and `xid` the transaction's id (`pg_current_xact_id()`): unique
/// without a shared counter, and ordered by transaction start. `base` (in the counters row)
/// keeps them above every number handed out before.
pub(crate) const SPAN_BITS: u32 = 22;
/// Numbers one transaction may hand out (each of sequence numbers and repl-uid counters).
pub(crate) const SPAN: u64 = 1 << SPAN_BITS;

/// The watermark of a statement's snapshot, the least of two bounds. The first is
/// `base + (oldest << SPAN_BITS)`, where `oldest` is the lowest id of a transaction the
/// snapshot sees in flight that may write to this database (see [`oldest_writer_sql`]): every
/// transaction below it has ended, so every number below the bound that will ever be visible
/// is visible, and every transaction still running numbers above it. And no visible change
/// lies above the horizon (the greatest number in the tables, or purged from them, or handed
/// out before schema 5), so the watermark stays where it is while nothing is written, and is
/// the last change's number when no older writer is in flight. The horizon only grows; the
/// first bound can dip for a moment (a transaction of another database that ends between the
/// snapshot and the activity lookup is still counted), which is why the engine never reports a
/// page watermark below the caller's `since`.
macro_rules! watermark_sql {
    () => {
        concat!(
            "LEAST(base + (",
            oldest_writer_sql!(),
            " << 22), ",
            horizon_sql!(),
            ")"
        )
    };
}

/// The lowest transaction id in flight in the statement's snapshot, leaving out those that
/// run in another database of the cluster (transaction ids are cluster-wide, so a busy
/// neighbour database would otherwise hold the watermark back); with none in flight, the
/// snapshot's `xmax`, below which every transaction has ended. A transaction whose database
/// cannot be told (it ended since the snapshot was taken, or the activity view hides it) is
/// counted, which only holds the watermark lower: safe. `backend_xid` is the low 32 bits of
/// the 64-bit id; two ids in flight at once never share them.
macro_rules! oldest_writer_sql {
    () => {
        concat!(
            "(SELECT coalesce(min(x::text::int8), pg_snapshot_xmax(pg_current_snapshot())::text::int8)",
            " FROM pg_snapshot_xip(pg_current_snapshot()) AS x WHERE NOT EXISTS (",
            "SELECT 1 FROM pg_stat_get_activity(NULL) AS a",
            " WHERE a.backend_xid::text::int8 = x::text::int8 % 4294967296",
            " AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database())))"
        )
    };
}

/// The horizon (see [`watermark_sql`]) of a statement's snapshot.
macro_rules! horizon_sql {
    () => {
        concat!(
            "GREATEST(seq, low_water, (SELECT max(version) FROM davrepl_resources),",
            " (SELECT max(seq) FROM davrepl_tombstones))"
        )
    };
}

/// The bytes of content the store holds: the counters row's figure (from before schema 6)
/// plus the usage slots, where writes add what they change.
macro_rules! bytes_sql {
    () => {
        "bytes + (SELECT coalesce(sum(u.bytes), 0) FROM davrepl_usage u)::int8"
    };
}

/// A write's counters (not locked: writers run in parallel). Columns: `0` where a read has the
/// watermark, repl-uid counter (before schema 5), low-water mark, lock count, bytes, and the
/// transaction's first number (which gives the transaction its id).
///
/// The watermark is left out: working it out looks up every backend's activity for each
/// transaction in flight, which made it the costliest statement of a small write (0.27 ms of
/// the 0.68 ms a PUT's statements took in all, 16 writers), and a write needs it only when it
/// changes nothing ([`WATERMARK`] is fetched then).
const WRITE_COUNTERS: &str = concat!(
    "SELECT 0::int8, rid_counter, low_water, locks, ",
    bytes_sql!(),
    ", base + (pg_current_xact_id()::text::int8 << 22) FROM davrepl_store WHERE id = 1"
);
/// The watermark of the statement's snapshot (see [`watermark_sql`]), for a write that needs it.
const WATERMARK: &str = concat!(
    "SELECT ",
    watermark_sql!(),
    " FROM davrepl_store WHERE id = 1"
);
/// Reads the counters row (a snapshot read). The last column is the horizon.
const LOAD_COUNTERS: &str = concat!(
    "SELECT ",
    watermark_sql!(),
    ", rid_counter, low_water, locks, ",
    bytes_sql!(),
    ", ",
    horizon_sql!(),
    " FROM davrepl_store WHERE id = 1"
);

/// The last column of [`WRITE_COUNTERS`] or [`LOAD_COUNTERS`].
fn last_counter(r: &Row) -> StoreResult<u64> {
    r.try_get::<_, i64>(5).map_err(pg_err).map(|n| n as u64)
}

/// How many lock rows the store holds, from a counters row ([`WRITE_COUNTERS`]): a write that
/// finds none does not read the lock table at all.
fn lock_count(r: &Row) -> StoreResult<i64> {
    r.try_get(3).map_err(pg_err)
}

fn counters(r: &Row) -> StoreResult<Counters> {
    let get = |i| r.try_get::<_, i64>(i).map_err(pg_err).map(|n| n as u64);
    Ok(Counters {
        seq: get(0)?,
        rid: get(1)?,
        low_water: get(2)?,
        bytes: get(4)?,
    })
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

/// Runs one prepared (and cached) statement outside a transaction; returns its rows.
async fn pooled(conn: &Object, sql: &str, params: &Params<'_>) -> StoreResult<Vec<Row>> {
    let st = conn.prepare_cached(sql).await.map_err(pg_err)?;
    conn.query(&st, params).await.map_err(pg_err)
}

impl Backend for Pg {
    const PREFETCH: bool = true;
    type Payload = Option<i64>;
    type Upload = davrepl_store::chunks::Staged;

    fn capabilities(&self) -> davrepl_store::Capabilities {
        let mut caps = davrepl_store::Capabilities::default();
        caps.locking = true;
        caps.subscriptions = true;
        caps
    }

    async fn atomic<T: Send + 'static>(&self, a: AtomicOf<Self, T>) -> StoreResult<T> {
        let Atomic {
            plan, upload, step, ..
        } = a;
        self.run(plan, upload, step).await
    }

    async fn stage(&self, incoming: Incoming) -> StoreResult<Staged<Self::Upload>> {
        let (body, max_len) = (incoming.body, incoming.max_len);
        davrepl_store::chunks::stage(self, body, CHUNK, max_len).await
    }

    fn stream(&self, _path: &ResourcePath, blob: Option<i64>, span: (u64, u64)) -> ByteStream {
        stream::stream(self.clone(), blob, span)
    }

    fn identity(&self) -> (StoreId, Secret) {
        (self.inner.id, self.inner.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_numbers_changes_with_the_same_shift() {
        let shift = format!("<< {SPAN_BITS}");
        for sql in [WRITE_COUNTERS, WATERMARK, LOAD_COUNTERS, schema::RAISE_BASE] {
            assert!(sql.contains(&shift), "{sql}");
            assert!(!sql.replace(&shift, "").contains("<<"), "{sql}");
        }
    }
}

//! [`PgStore`]: the whole [`ReplStore`] contract on PostgreSQL, so that several stateless
//! davrepl nodes behind a load balancer can serve one namespace.
//!
//! - **Shared state only in the database**: the store id and the collblob secret live in the
//!   `davrepl_store` row, so a collblob, a resource tag or an `If:` condition issued by one node
//!   is understood by every other.
//! - **Gap-free change log across nodes**: every write transaction first locks the one
//!   counters row (`SELECT … FOR UPDATE`) and allocates its sequence numbers from it. Writers
//!   therefore commit in sequence order, and a reader that has seen change N can never later
//!   see a change below N appear. Readers take a `REPEATABLE READ` snapshot, in which the
//!   counter and the rows it numbers are always consistent.
//! - **Compare-and-swap**: the request's condition is evaluated inside the same transaction,
//!   after the lock, so two conflicting conditional writes — on the same node or on two — have
//!   exactly one winner.
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

mod schema;
#[cfg(feature = "throwaway")]
pub mod throwaway;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use davrepl_store::chunks::{Chunker, slice_chunk};
use davrepl_store::{
    ByteRange, ByteStream, Capabilities, Change, ChangeKind, ChangePage, ChangesQuery, Condition,
    DeadProp, Depth, Entry, ErrorKind, ListOptions, Listing, Meta, PropName, PropPatch,
    PurgeReport, PutOptions, ReplStore, ReplUid, ResourceKind, ResourcePath, Secret, Seq,
    StoreError, StoreId, StoreResult, TransferOptions, WriteOutcome,
};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls, Row, Statement};

/// Content is stored in chunks of this many bytes.
pub const CHUNK: usize = 256 * 1024;
/// Reads up to this size are fetched with one query.
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
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            wait_timeout: Duration::from_secs(30),
            retries: 5,
            stale_upload_after: Duration::from_secs(24 * 3600),
            new_generation: false,
        }
    }
}

struct Inner {
    pool: Pool,
    id: StoreId,
    secret: Secret,
    target: String,
    retries: u32,
}

/// The PostgreSQL-backed [`ReplStore`]. Cloning gives another handle to the same pool.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.inner.target)
            .field("id", &self.inner.id)
            .finish()
    }
}

pub(crate) fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn to_time(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n.max(0) as u64)
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
        // too_many_connections, and the connection_exception class.
        return matches!(c, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
            || c.starts_with("08");
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

/// Which kind of transaction a call runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `READ COMMITTED`, counters row locked first: a write.
    Write,
    /// `REPEATABLE READ READ ONLY`: a consistent snapshot for several statements.
    Snapshot,
}

/// Runs `$body` (an async block body using `$t: Tx`) in a transaction of `$mode`, retrying it
/// from scratch when it fails for a transient reason. A macro rather than a closure-taking
/// function: the body borrows the transaction and the caller's arguments freely, and is
/// simply evaluated again on retry.
macro_rules! transact {
    ($store:expr, $mode:expr, |$t:ident| $($body:tt)*) => {{
        let store: &PgStore = $store;
        let mode: Mode = $mode;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut conn = store.conn().await?;
                let builder = conn.build_transaction();
                let tx = match mode {
                    Mode::Write => builder.isolation_level(IsolationLevel::ReadCommitted),
                    Mode::Snapshot => builder.isolation_level(IsolationLevel::RepeatableRead).read_only(true),
                }
                .start()
                .await
                .map_err(pg_err)?;
                let before = match mode {
                    Mode::Write => Counters::lock(&tx).await?,
                    Mode::Snapshot => Counters::default(),
                };
                #[allow(unused_mut)]
                let mut $t = Tx { tx: &tx, c: before, id: store.inner.id };
                let out = async { $($body)* }.await;
                let after = $t.c;
                match (out, mode) {
                    (Ok(v), Mode::Write) => {
                        if after != before {
                            after.save(&tx).await?;
                        }
                        commit(tx).await.map(|()| v)
                    }
                    (out, _) => out,
                }
            }
            .await;
            match result {
                Err(e) if attempt <= store.inner.retries && retryable(&e) => {
                    tracing::debug!(error = %e, attempt, "retrying a transaction");
                    tokio::time::sleep(Duration::from_millis(5u64 << attempt.min(6))).await;
                }
                other => break other,
            }
        }
    }};
}

async fn commit(tx: deadpool_postgres::Transaction<'_>) -> StoreResult<()> {
    tx.commit().await.map_err(|e| {
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
    })
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
        let id: Vec<u8> = row.try_get(0).map_err(pg_err)?;
        let secret: Vec<u8> = row.try_get(1).map_err(pg_err)?;
        let id = StoreId(
            id.try_into()
                .map_err(|_| StoreError::new(ErrorKind::Internal, "corrupt store id"))?,
        );
        let secret: Secret = secret
            .try_into()
            .map_err(|_| StoreError::new(ErrorKind::Internal, "corrupt secret"))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(1))
            .wait_timeout(Some(opts.wait_timeout))
            .create_timeout(Some(opts.wait_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| config_err(e.to_string()))?;
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                id,
                secret,
                target,
                retries: opts.retries,
            }),
        };
        store.remove_stale_uploads(opts.stale_upload_after).await?;
        Ok(store)
    }

    async fn conn(&self) -> StoreResult<Object> {
        self.inner.pool.get().await.map_err(pool_err)
    }

    /// Removes content staged by uploads that started before `age` ago and never completed.
    async fn remove_stale_uploads(&self, age: Duration) -> StoreResult<()> {
        let cutoff = now_nanos().saturating_sub(age.as_nanos().min(i64::MAX as u128) as i64);
        let removed = transact!(self, Mode::Write, |t| {
            let stale: Vec<i64> = t
                .rows(
                    "SELECT blob FROM davrepl_uploads WHERE started < $1",
                    &[&cutoff],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()
                .map_err(pg_err)?;
            for b in &stale {
                t.exec("DELETE FROM davrepl_chunks WHERE blob = $1", &[b])
                    .await?;
                t.exec("DELETE FROM davrepl_uploads WHERE blob = $1", &[b])
                    .await?;
            }
            Ok(stale.len())
        })?;
        if removed > 0 {
            tracing::info!(
                uploads = removed,
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    seq: i64,
    rid: i64,
    low_water: i64,
}

impl Counters {
    /// Locks the counters row for the rest of the transaction: this serializes writers and is
    /// what makes sequence numbers commit in order.
    async fn lock(tx: &deadpool_postgres::Transaction<'_>) -> StoreResult<Self> {
        let st = tx
            .prepare_cached(
                "SELECT seq, rid_counter, low_water FROM davrepl_store WHERE id = 1 FOR UPDATE",
            )
            .await
            .map_err(pg_err)?;
        Self::from_row(&tx.query_one(&st, &[]).await.map_err(pg_err)?)
    }

    async fn load(tx: &deadpool_postgres::Transaction<'_>) -> StoreResult<Self> {
        let st = tx
            .prepare_cached("SELECT seq, rid_counter, low_water FROM davrepl_store WHERE id = 1")
            .await
            .map_err(pg_err)?;
        Self::from_row(&tx.query_one(&st, &[]).await.map_err(pg_err)?)
    }

    fn from_row(r: &Row) -> StoreResult<Self> {
        Ok(Self {
            seq: r.try_get(0).map_err(pg_err)?,
            rid: r.try_get(1).map_err(pg_err)?,
            low_water: r.try_get(2).map_err(pg_err)?,
        })
    }

    async fn save(&self, tx: &deadpool_postgres::Transaction<'_>) -> StoreResult<()> {
        let st = tx
            .prepare_cached(
                "UPDATE davrepl_store SET seq = $1, rid_counter = $2, low_water = $3 WHERE id = 1",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(&st, &[&self.seq, &self.rid, &self.low_water])
            .await
            .map_err(pg_err)?;
        Ok(())
    }
}

const COLS: &str =
    "path, rid, kind, version, content_version, len, content_type, created, modified, blob";

#[derive(Debug, Clone)]
struct Node {
    path: String,
    rid: i64,
    kind: i64,
    version: i64,
    content_version: i64,
    len: i64,
    content_type: Option<String>,
    created: i64,
    modified: i64,
    blob: Option<i64>,
}

impl Node {
    fn from_row(r: &Row) -> StoreResult<Self> {
        Ok(Self {
            path: r.try_get(0).map_err(pg_err)?,
            rid: r.try_get(1).map_err(pg_err)?,
            kind: r.try_get(2).map_err(pg_err)?,
            version: r.try_get(3).map_err(pg_err)?,
            content_version: r.try_get(4).map_err(pg_err)?,
            len: r.try_get(5).map_err(pg_err)?,
            content_type: r.try_get(6).map_err(pg_err)?,
            created: r.try_get(7).map_err(pg_err)?,
            modified: r.try_get(8).map_err(pg_err)?,
            blob: r.try_get(9).map_err(pg_err)?,
        })
    }

    fn is_collection(&self) -> bool {
        self.kind == 0
    }
}

fn kind_code(k: ResourceKind) -> i64 {
    match k {
        ResourceKind::Collection => 0,
        ResourceKind::Item => 1,
    }
}

fn kind_of(code: i64) -> ResourceKind {
    if code == 0 {
        ResourceKind::Collection
    } else {
        ResourceKind::Item
    }
}

fn rpath(s: &str) -> StoreResult<ResourcePath> {
    ResourcePath::parse(s)
        .map_err(|e| StoreError::new(ErrorKind::Internal, format!("corrupt path {s:?}: {e}")))
}

/// `limit + 1` as a SQL LIMIT, saturating.
fn fetch_limit(limit: usize) -> i64 {
    i64::try_from(limit)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1)
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

/// One transaction and the counters it allocated from.
struct Tx<'a> {
    tx: &'a deadpool_postgres::Transaction<'a>,
    c: Counters,
    id: StoreId,
}

impl Tx<'_> {
    async fn stmt(&self, sql: &str) -> StoreResult<Statement> {
        self.tx.prepare_cached(sql).await.map_err(pg_err)
    }

    async fn rows(&self, sql: &str, params: &Params<'_>) -> StoreResult<Vec<Row>> {
        let st = self.stmt(sql).await?;
        self.tx.query(&st, params).await.map_err(pg_err)
    }

    async fn opt(&self, sql: &str, params: &Params<'_>) -> StoreResult<Option<Row>> {
        let st = self.stmt(sql).await?;
        self.tx.query_opt(&st, params).await.map_err(pg_err)
    }

    async fn exec(&self, sql: &str, params: &Params<'_>) -> StoreResult<u64> {
        let st = self.stmt(sql).await?;
        self.tx.execute(&st, params).await.map_err(pg_err)
    }

    async fn nodes(&self, sql: &str, params: &Params<'_>) -> StoreResult<Vec<Node>> {
        self.rows(sql, params)
            .await?
            .iter()
            .map(Node::from_row)
            .collect()
    }

    fn meta(&self, n: &Node) -> StoreResult<Meta> {
        Ok(Meta {
            path: rpath(&n.path)?,
            kind: kind_of(n.kind),
            store: self.id,
            rid: ReplUid::new(self.id, n.rid as u64),
            version: n.version as u64,
            content_version: n.content_version as u64,
            len: n.len as u64,
            content_type: n.content_type.clone(),
            created: to_time(n.created),
            modified: to_time(n.modified),
        })
    }

    async fn get(&self, path: &ResourcePath) -> StoreResult<Option<Node>> {
        self.opt(
            &format!("SELECT {COLS} FROM davrepl_resources WHERE path = $1"),
            &[&path.as_str()],
        )
        .await?
        .as_ref()
        .map(Node::from_row)
        .transpose()
    }

    async fn must(&self, path: &ResourcePath) -> StoreResult<Node> {
        self.get(path)
            .await?
            .ok_or_else(|| StoreError::not_found(path))
    }

    async fn props(&self, rid: i64) -> StoreResult<Vec<DeadProp>> {
        self.rows(
            "SELECT ns, local, value FROM davrepl_props WHERE rid = $1 ORDER BY ns, local",
            &[&rid],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(DeadProp {
                name: PropName::new(
                    r.try_get::<_, String>(0).map_err(pg_err)?,
                    r.try_get::<_, String>(1).map_err(pg_err)?,
                ),
                value: r.try_get(2).map_err(pg_err)?,
            })
        })
        .collect()
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

    /// Evaluates `cond` against the current state. The paths it names are fetched first
    /// (conditions are synchronous), then evaluated.
    async fn check(&self, target: &ResourcePath, cond: &Condition) -> StoreResult<()> {
        if cond.is_empty() {
            return Ok(());
        }
        let mut known = HashMap::new();
        for p in cond.paths(target) {
            let tokens = self
                .get(&p)
                .await?
                .map(|n| self.meta(&n).map(|m| m.tokens()))
                .transpose()?;
            known.insert(p, tokens);
        }
        let ok = cond.evaluate(target, |p| known.get(p).cloned().flatten());
        if ok {
            Ok(())
        } else {
            Err(StoreError::precondition_failed())
        }
    }

    async fn check_parent(&self, path: &ResourcePath) -> StoreResult<ResourcePath> {
        let parent = path.parent().ok_or_else(|| {
            StoreError::new(ErrorKind::RootImmutable, "the root cannot be replaced")
        })?;
        match self.get(&parent).await? {
            Some(n) if n.is_collection() => Ok(parent),
            _ => Err(StoreError::new(
                ErrorKind::ParentMissing,
                format!("parent collection {parent} does not exist"),
            )),
        }
    }

    fn next_seq(&mut self) -> i64 {
        self.c.seq += 1;
        self.c.seq
    }

    fn next_rid(&mut self) -> i64 {
        self.c.rid += 1;
        self.c.rid
    }

    async fn next_blob(&self) -> StoreResult<i64> {
        self.opt("SELECT nextval('davrepl_blob_ids')", &[])
            .await?
            .ok_or_else(|| StoreError::new(ErrorKind::Internal, "nextval returned nothing"))?
            .try_get(0)
            .map_err(pg_err)
    }

    async fn subtree(&self, root: &ResourcePath) -> StoreResult<Vec<Node>> {
        let (start, end) = root.descendant_range();
        let mut out: Vec<Node> = self.get(root).await?.into_iter().collect();
        out.extend(
            self.nodes(
                &format!(
                    "SELECT {COLS} FROM davrepl_resources WHERE path >= $1 AND path < $2 AND path <> $3 ORDER BY path"
                ),
                &[&start, &end, &root.as_str()],
            )
            .await?,
        );
        Ok(out)
    }

    async fn touch_parent(&self, parent: &ResourcePath, seq: i64) -> StoreResult<()> {
        self.exec(
            "UPDATE davrepl_resources SET content_version = $1 WHERE path = $2",
            &[&seq, &parent.as_str()],
        )
        .await?;
        Ok(())
    }

    async fn tombstone(&mut self, n: &Node, now: i64) -> StoreResult<i64> {
        let seq = self.next_seq();
        let parent = rpath(&n.path)?.parent().map(|p| p.as_str().to_owned());
        self.exec(
            "INSERT INTO davrepl_tombstones (seq, rid, path, parent, kind, at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&seq, &n.rid, &n.path, &parent, &n.kind, &now],
        )
        .await?;
        Ok(seq)
    }

    async fn drop_blob(&self, blob: Option<i64>) -> StoreResult<()> {
        if let Some(b) = blob {
            self.exec("DELETE FROM davrepl_chunks WHERE blob = $1", &[&b])
                .await?;
        }
        Ok(())
    }

    /// Removes `root` and its subtree, leaving tombstones; returns the root's old state.
    async fn remove_tree(&mut self, root: &ResourcePath) -> StoreResult<Option<Meta>> {
        let nodes = self.subtree(root).await?;
        let now = now_nanos();
        let first = nodes.first().map(|n| self.meta(n)).transpose()?;
        for n in &nodes {
            self.exec("DELETE FROM davrepl_resources WHERE path = $1", &[&n.path])
                .await?;
            self.exec("DELETE FROM davrepl_props WHERE rid = $1", &[&n.rid])
                .await?;
            self.drop_blob(n.blob).await?;
            self.tombstone(n, now).await?;
        }
        if let Some(parent) = root.parent() {
            self.touch_parent(&parent, self.c.seq).await?;
        }
        Ok(first)
    }

    async fn insert(&self, path: &ResourcePath, n: &Node) -> StoreResult<()> {
        let parent = path.parent().map(|p| p.as_str().to_owned());
        self.exec(
            "INSERT INTO davrepl_resources (path, parent, rid, kind, version, content_version, len, content_type, created, modified, blob)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[&path.as_str(), &parent, &n.rid, &n.kind, &n.version, &n.content_version, &n.len, &n.content_type, &n.created, &n.modified, &n.blob],
        )
        .await?;
        Ok(())
    }

    async fn outcome(&self, path: &ResourcePath, created: bool) -> StoreResult<WriteOutcome> {
        let meta = self.meta(&self.must(path).await?)?;
        Ok(WriteOutcome {
            meta,
            created,
            transformed: false,
        })
    }

    async fn prepare_transfer(
        &mut self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: &TransferOptions,
        moving: bool,
    ) -> StoreResult<bool> {
        davrepl_store::check_transfer_paths(from, to, moving)?;
        self.must(from).await?;
        self.check(from, &opts.condition).await?;
        self.check_parent(to).await?;
        let exists = self.get(to).await?.is_some();
        if exists {
            if !opts.overwrite {
                return Err(StoreError::new(
                    ErrorKind::DestinationExists,
                    "the destination exists and Overwrite is F",
                ));
            }
            if from.is_within(to) {
                return Err(StoreError::new(
                    ErrorKind::DestinationInsideSource,
                    "the destination is an ancestor of the source",
                ));
            }
            self.remove_tree(to).await?;
        }
        Ok(exists)
    }

    async fn change_rows(&self, q: &ChangesQuery) -> StoreResult<ChangePage> {
        let since = i64::try_from(q.since).unwrap_or(i64::MAX);
        let fetch = fetch_limit(q.limit);
        let scope = q.scope.as_str();
        let mut rows: Vec<(i64, ChangeKind, i64)> = Vec::new();
        if (q.depth == Depth::Zero || q.include_scope)
            && let Some(n) = self.get(&q.scope).await?.filter(|n| n.version > since)
        {
            rows.push((n.version, ChangeKind::Upsert(self.meta(&n)?), n.rid));
        }
        let (start, end) = q.scope.descendant_range();
        let live = match q.depth {
            Depth::Zero => Vec::new(),
            Depth::One => {
                self.nodes(
                    &format!("SELECT {COLS} FROM davrepl_resources WHERE parent = $1 AND version > $2 ORDER BY version LIMIT $3"),
                    &[&scope, &since, &fetch],
                )
                .await?
            }
            Depth::Infinity => {
                self.nodes(
                    &format!("SELECT {COLS} FROM davrepl_resources WHERE version > $2 AND path >= $4 AND path < $5 AND path <> $1 ORDER BY version LIMIT $3"),
                    &[&scope, &since, &fetch, &start, &end],
                )
                .await?
            }
        };
        for n in live {
            rows.push((n.version, ChangeKind::Upsert(self.meta(&n)?), n.rid));
        }
        if q.include_removed {
            let (sql, deep) = match q.depth {
                Depth::Zero => (
                    "SELECT seq, rid, path, kind FROM davrepl_tombstones WHERE path = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    false,
                ),
                Depth::One => (
                    "SELECT seq, rid, path, kind FROM davrepl_tombstones WHERE parent = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    false,
                ),
                Depth::Infinity => (
                    "SELECT seq, rid, path, kind FROM davrepl_tombstones WHERE seq > $2 AND path >= $4 AND path < $5 AND path <> $1 ORDER BY seq LIMIT $3",
                    true,
                ),
            };
            let found = if deep {
                self.rows(sql, &[&scope, &since, &fetch, &start, &end])
                    .await?
            } else {
                self.rows(sql, &[&scope, &since, &fetch]).await?
            };
            for r in found {
                let seq: i64 = r.try_get(0).map_err(pg_err)?;
                let rid: i64 = r.try_get(1).map_err(pg_err)?;
                let path: String = r.try_get(2).map_err(pg_err)?;
                let kind: i64 = r.try_get(3).map_err(pg_err)?;
                let kind = ChangeKind::Removed {
                    rid: ReplUid::new(self.id, rid as u64),
                    path: rpath(&path)?,
                    kind: kind_of(kind),
                };
                rows.push((seq, kind, -1));
            }
        }
        rows.sort_by_key(|r| r.0);
        let more = rows.len() > q.limit;
        rows.truncate(q.limit);
        let watermark = if more {
            rows.last().map_or(q.since, |r| r.0 as u64)
        } else {
            self.c.seq as u64
        };
        let mut props = if q.with_props {
            let rids: Vec<i64> = rows.iter().map(|r| r.2).filter(|r| *r >= 0).collect();
            self.props_of(&rids).await?
        } else {
            HashMap::new()
        };
        let mut changes = Vec::with_capacity(rows.len());
        for (seq, kind, rid) in rows {
            let props = props.remove(&rid).unwrap_or_default();
            changes.push(Change {
                seq: seq as u64,
                kind,
                props,
            });
        }
        Ok(ChangePage {
            changes,
            watermark,
            more,
            low_water: self.c.low_water as u64,
        })
    }
}

/// Collects `body` into chunks; small bodies stay in memory, larger ones are staged in the
/// database under a fresh blob id (each chunk committed on its own, recorded in
/// `davrepl_uploads` until the final transaction adopts it). Returns (blob id if staged,
/// in-memory rest, total length).
async fn stage(
    store: &PgStore,
    body: ByteStream,
    max_len: Option<u64>,
) -> StoreResult<(Option<i64>, Vec<Bytes>, u64)> {
    let mut chunker = Chunker::new(body, CHUNK, max_len);
    let mut staged: Option<(i64, i64)> = None; // (blob, next chunk number)
    let result: StoreResult<()> = async {
        while let Some(piece) = chunker.full_chunk().await? {
            let conn = store.conn().await?;
            let (blob, n) = match staged {
                Some(s) => s,
                None => {
                    let blob: i64 = conn
                        .query_one("SELECT nextval('davrepl_blob_ids')", &[])
                        .await
                        .and_then(|r| r.try_get(0))
                        .map_err(pg_err)?;
                    conn.execute(
                        "INSERT INTO davrepl_uploads (blob, started) VALUES ($1, $2)",
                        &[&blob, &now_nanos()],
                    )
                    .await
                    .map_err(pg_err)?;
                    staged = Some((blob, 0));
                    (blob, 0)
                }
            };
            pooled(
                &conn,
                "INSERT INTO davrepl_chunks (blob, n, data) VALUES ($1, $2, $3)",
                &[&blob, &n, &&piece[..]],
            )
            .await?;
            staged = Some((blob, n + 1));
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if let Some((blob, _)) = staged {
            discard(store, blob).await;
        }
        return Err(e);
    }
    let total = chunker.total();
    Ok((
        staged.map(|s| s.0),
        chunker.into_rest().into_iter().collect(),
        total,
    ))
}

/// Runs one prepared (and cached) statement outside a transaction; returns its rows.
async fn pooled(conn: &Object, sql: &str, params: &Params<'_>) -> StoreResult<Vec<Row>> {
    let st = conn.prepare_cached(sql).await.map_err(pg_err)?;
    conn.query(&st, params).await.map_err(pg_err)
}

async fn discard(store: &PgStore, blob: i64) {
    let r = async {
        let conn = store.conn().await?;
        pooled(
            &conn,
            "DELETE FROM davrepl_chunks WHERE blob = $1",
            &[&blob],
        )
        .await?;
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

impl ReplStore for PgStore {
    fn store_id(&self) -> StoreId {
        self.inner.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn secret(&self) -> StoreResult<Secret> {
        Ok(self.inner.secret)
    }

    async fn head(&self, path: &ResourcePath) -> StoreResult<Meta> {
        transact!(self, Mode::Snapshot, |t| {
            let n = t.must(path).await?;
            t.meta(&n)
        })
    }

    async fn props(&self, path: &ResourcePath) -> StoreResult<Entry> {
        transact!(self, Mode::Snapshot, |t| {
            let n = t.must(path).await?;
            Ok(Entry {
                meta: t.meta(&n)?,
                props: t.props(n.rid).await?,
            })
        })
    }

    async fn list(&self, path: &ResourcePath, opts: ListOptions) -> StoreResult<Listing> {
        transact!(self, Mode::Snapshot, |t| {
            let n = t.must(path).await?;
            if !n.is_collection() {
                return Err(StoreError::new(
                    ErrorKind::NotCollection,
                    format!("{path} is not a collection"),
                ));
            }
            if opts.depth == Depth::Zero || opts.limit == 0 {
                return Ok(Listing {
                    entries: Vec::new(),
                    next: None,
                });
            }
            let after = opts
                .after
                .as_ref()
                .map_or_else(String::new, |a| a.as_str().to_owned());
            let fetch = fetch_limit(opts.limit);
            let found = if opts.depth == Depth::One {
                t.nodes(
                    &format!("SELECT {COLS} FROM davrepl_resources WHERE parent = $1 AND path > $2 ORDER BY path LIMIT $3"),
                    &[&path.as_str(), &after, &fetch],
                )
                .await?
            } else {
                let (start, end) = path.descendant_range();
                t.nodes(
                    &format!("SELECT {COLS} FROM davrepl_resources WHERE path >= $1 AND path < $2 AND path > $3 AND path <> $4 ORDER BY path LIMIT $5"),
                    &[&start, &end, &after, &path.as_str(), &fetch],
                )
                .await?
            };
            let more = found.len() > opts.limit;
            let mut props = if opts.with_props {
                let rids: Vec<i64> = found.iter().take(opts.limit).map(|n| n.rid).collect();
                t.props_of(&rids).await?
            } else {
                HashMap::new()
            };
            let mut entries = Vec::with_capacity(found.len().min(opts.limit));
            for n in found.into_iter().take(opts.limit) {
                let props = props.remove(&n.rid).unwrap_or_default();
                entries.push(Entry {
                    meta: t.meta(&n)?,
                    props,
                });
            }
            let next = if more {
                entries.last().map(|e| e.meta.path.clone())
            } else {
                None
            };
            Ok(Listing { entries, next })
        })
    }

    async fn read(
        &self,
        path: &ResourcePath,
        range: Option<ByteRange>,
    ) -> StoreResult<(Meta, ByteStream)> {
        let (meta, blob, first_chunk, inline) = transact!(self, Mode::Snapshot, |t| {
            let n = t.must(path).await?;
            if n.is_collection() {
                return Err(StoreError::new(
                    ErrorKind::IsCollection,
                    format!("{path} is a collection"),
                ));
            }
            let meta = t.meta(&n)?;
            if let Some(r) = range
                && (r.start > r.end || r.end >= meta.len)
            {
                return Err(StoreError::new(
                    ErrorKind::InvalidInput,
                    "byte range out of bounds",
                ));
            }
            let (start, end) = range.map_or((0, meta.len.saturating_sub(1)), |r| (r.start, r.end));
            let first = (start / CHUNK as u64) as i64;
            let last = if meta.len == 0 {
                -1
            } else {
                (end / CHUNK as u64) as i64
            };
            let inline = if meta.len == 0 {
                Some(Vec::new())
            } else if end - start < INLINE_READ {
                let chunks: Vec<Vec<u8>> = t
                    .rows(
                        "SELECT data FROM davrepl_chunks WHERE blob = $1 AND n >= $2 AND n <= $3 ORDER BY n",
                        &[&n.blob, &first, &last],
                    )
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()
                    .map_err(pg_err)?;
                Some(chunks)
            } else {
                None
            };
            Ok((meta, n.blob, first, inline))
        })?;
        let (start, end) = match range {
            Some(r) => (r.start, r.end),
            None => (0, meta.len.saturating_sub(1)),
        };
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
        let last = (end / CHUNK as u64) as i64;
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

    async fn put(
        &self,
        path: &ResourcePath,
        body: ByteStream,
        opts: PutOptions,
    ) -> StoreResult<WriteOutcome> {
        let (staged, rest, total) = stage(self, body, opts.max_len).await?;
        let result = transact!(self, Mode::Write, |t| {
            let parent = t.check_parent(path).await?;
            t.check(path, &opts.condition).await?;
            let existing = t.get(path).await?;
            if existing.as_ref().is_some_and(Node::is_collection) {
                return Err(StoreError::new(
                    ErrorKind::IsCollection,
                    format!("{path} is a collection"),
                ));
            }
            // Staged chunks are whole and numbered from 0; the in-memory rest follows them.
            let (blob, base) = match staged {
                Some(b) => {
                    t.exec("DELETE FROM davrepl_uploads WHERE blob = $1", &[&b])
                        .await?;
                    let in_memory: u64 = rest.iter().map(|r| r.len() as u64).sum();
                    (b, ((total - in_memory) / CHUNK as u64) as i64)
                }
                None => (t.next_blob().await?, 0),
            };
            for (i, piece) in rest.iter().enumerate() {
                t.exec(
                    "INSERT INTO davrepl_chunks (blob, n, data) VALUES ($1, $2, $3)",
                    &[&blob, &(base + i as i64), &&piece[..]],
                )
                .await?;
            }
            let seq = t.next_seq();
            let now = now_nanos();
            let len = total as i64;
            let node = match &existing {
                Some(old) => {
                    t.drop_blob(old.blob).await?;
                    t.exec(
                        "UPDATE davrepl_resources SET version = $1, content_version = $1, len = $2, content_type = $3, modified = $4, blob = $5 WHERE path = $6",
                        &[&seq, &len, &opts.content_type, &now, &blob, &path.as_str()],
                    )
                    .await?;
                    Node {
                        version: seq,
                        content_version: seq,
                        len,
                        content_type: opts.content_type.clone(),
                        modified: now,
                        blob: Some(blob),
                        ..old.clone()
                    }
                }
                None => {
                    let n = Node {
                        path: path.as_str().to_owned(),
                        rid: t.next_rid(),
                        kind: kind_code(ResourceKind::Item),
                        version: seq,
                        content_version: seq,
                        len,
                        content_type: opts.content_type.clone(),
                        created: now,
                        modified: now,
                        blob: Some(blob),
                    };
                    t.insert(path, &n).await?;
                    n
                }
            };
            t.touch_parent(&parent, seq).await?;
            // The new state is known: no need to read it back.
            Ok(WriteOutcome {
                meta: t.meta(&node)?,
                created: existing.is_none(),
                transformed: false,
            })
        });
        if result.is_err()
            && let Some(b) = staged
        {
            discard(self, b).await;
        }
        result
    }

    async fn create_collection(
        &self,
        path: &ResourcePath,
        cond: &Condition,
    ) -> StoreResult<WriteOutcome> {
        transact!(self, Mode::Write, |t| {
            if t.get(path).await?.is_some() {
                return Err(StoreError::new(
                    ErrorKind::AlreadyExists,
                    format!("{path} already exists"),
                ));
            }
            let parent = t.check_parent(path).await?;
            t.check(path, cond).await?;
            let seq = t.next_seq();
            let rid = t.next_rid();
            let now = now_nanos();
            let n = Node {
                path: path.as_str().to_owned(),
                rid,
                kind: kind_code(ResourceKind::Collection),
                version: seq,
                content_version: seq,
                len: 0,
                content_type: None,
                created: now,
                modified: now,
                blob: None,
            };
            t.insert(path, &n).await?;
            t.touch_parent(&parent, seq).await?;
            t.outcome(path, true).await
        })
    }

    async fn delete(&self, path: &ResourcePath, cond: &Condition) -> StoreResult<Meta> {
        if path.is_root() {
            return Err(StoreError::new(
                ErrorKind::RootImmutable,
                "the root cannot be deleted",
            ));
        }
        transact!(self, Mode::Write, |t| {
            t.must(path).await?;
            t.check(path, cond).await?;
            t.remove_tree(path)
                .await?
                .ok_or_else(|| StoreError::not_found(path))
        })
    }

    async fn copy(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        transact!(self, Mode::Write, |t| {
            let existed = t.prepare_transfer(from, to, &opts, false).await?;
            let sources = match opts.depth {
                Depth::Infinity => t.subtree(from).await?,
                Depth::Zero | Depth::One => vec![t.must(from).await?],
            };
            let now = now_nanos();
            for src in sources {
                let Some(dst) = rpath(&src.path)?.rebase(from, to) else {
                    continue;
                };
                let seq = t.next_seq();
                let rid = t.next_rid();
                let blob = match src.blob {
                    Some(old) => {
                        let b = t.next_blob().await?;
                        t.exec(
                            "INSERT INTO davrepl_chunks (blob, n, data) SELECT $1, n, data FROM davrepl_chunks WHERE blob = $2",
                            &[&b, &old],
                        )
                        .await?;
                        Some(b)
                    }
                    None => None,
                };
                t.exec(
                    "INSERT INTO davrepl_props (rid, ns, local, value) SELECT $1, ns, local, value FROM davrepl_props WHERE rid = $2",
                    &[&rid, &src.rid],
                )
                .await?;
                let n = Node {
                    path: dst.as_str().to_owned(),
                    rid,
                    version: seq,
                    content_version: seq,
                    created: now,
                    modified: now,
                    blob,
                    ..src
                };
                t.insert(&dst, &n).await?;
            }
            if let Some(parent) = to.parent() {
                t.touch_parent(&parent, t.c.seq).await?;
            }
            t.outcome(to, !existed).await
        })
    }

    async fn rename(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        transact!(self, Mode::Write, |t| {
            let existed = t.prepare_transfer(from, to, &opts, true).await?;
            let now = now_nanos();
            for src in t.subtree(from).await? {
                let Some(dst) = rpath(&src.path)?.rebase(from, to) else {
                    continue;
                };
                t.tombstone(&src, now).await?;
                let seq = t.next_seq();
                let parent = dst.parent().map(|p| p.as_str().to_owned());
                t.exec(
                    "UPDATE davrepl_resources SET path = $1, parent = $2, version = $3, content_version = CASE WHEN kind = 0 THEN content_version ELSE $3 END, modified = $4 WHERE path = $5",
                    &[&dst.as_str(), &parent, &seq, &now, &src.path],
                )
                .await?;
            }
            let seq = t.c.seq;
            for parent in [from.parent(), to.parent()].into_iter().flatten() {
                t.touch_parent(&parent, seq).await?;
            }
            t.outcome(to, !existed).await
        })
    }

    async fn patch_props(
        &self,
        path: &ResourcePath,
        patch: Vec<PropPatch>,
        cond: &Condition,
    ) -> StoreResult<WriteOutcome> {
        transact!(self, Mode::Write, |t| {
            let n = t.must(path).await?;
            t.check(path, cond).await?;
            for op in &patch {
                match op {
                    PropPatch::Set(p) => {
                        t.exec(
                            "INSERT INTO davrepl_props (rid, ns, local, value) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (rid, ns, local) DO UPDATE SET value = EXCLUDED.value",
                            &[&n.rid, &p.name.ns, &p.name.local, &p.value],
                        )
                        .await?;
                    }
                    PropPatch::Remove(name) => {
                        t.exec(
                            "DELETE FROM davrepl_props WHERE rid = $1 AND ns = $2 AND local = $3",
                            &[&n.rid, &name.ns, &name.local],
                        )
                        .await?;
                    }
                }
            }
            let seq = t.next_seq();
            t.exec(
                "UPDATE davrepl_resources SET version = $1, content_version = CASE WHEN kind = 0 THEN content_version ELSE $1 END, modified = $2 WHERE path = $3",
                &[&seq, &now_nanos(), &path.as_str()],
            )
            .await?;
            if let Some(parent) = path.parent() {
                t.touch_parent(&parent, seq).await?;
            }
            t.outcome(path, false).await
        })
    }

    async fn watermark(&self) -> StoreResult<Seq> {
        transact!(self, Mode::Snapshot, |t| {
            Ok(Counters::load(t.tx).await?.seq as u64)
        })
    }

    async fn changes(&self, query: ChangesQuery) -> StoreResult<ChangePage> {
        transact!(self, Mode::Snapshot, |t| {
            t.c = Counters::load(t.tx).await?;
            t.change_rows(&query).await
        })
    }

    async fn purge(&self, before: SystemTime) -> StoreResult<PurgeReport> {
        let cutoff = before
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64);
        transact!(self, Mode::Write, |t| {
            let row = t
                .opt(
                    "SELECT count(*), max(seq) FROM davrepl_tombstones WHERE at < $1",
                    &[&cutoff],
                )
                .await?
                .ok_or_else(|| StoreError::new(ErrorKind::Internal, "count returned nothing"))?;
            let count: i64 = row.try_get(0).map_err(pg_err)?;
            let max: Option<i64> = row.try_get(1).map_err(pg_err)?;
            t.exec("DELETE FROM davrepl_tombstones WHERE at < $1", &[&cutoff])
                .await?;
            if let Some(m) = max {
                t.c.low_water = t.c.low_water.max(m);
            }
            Ok(PurgeReport {
                removed: count as u64,
                low_water: t.c.low_water as u64,
            })
        })
    }
}

//! [`SqliteStore`]: the whole [`ReplStore`] contract on an embedded SQLite database — the
//! default store of davrepl.
//!
//! - **One file**, WAL mode. One writer connection and a few reader connections; every call
//!   runs on tokio's blocking pool, never on the async runtime's threads.
//! - **Gap-free change log** for free: SQLite has a single writer, and sequence numbers are
//!   allocated inside the writing transaction.
//! - **Content in 256 KiB chunks**: uploads are staged chunk by chunk and swapped in by the
//!   final transaction (where the request's condition is checked), so large files never sit in
//!   memory and a failed or refused upload leaves nothing behind.
//! - **Indexes** on `(parent, version)` and `version` make a manifest cost proportional to the
//!   number of changes since the client's watermark, not to the size of the collection.
//! - **Durability**: `synchronous=FULL` by default (a committed write survives power loss);
//!   [`Synchronous::Normal`] keeps process-crash safety and trades the last commits on power
//!   loss for speed. See `docs/durability.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), davrepl_store::StoreError> {
//! let store = davrepl_sqlite::SqliteStore::open("./davrepl-data/store.db").await?;
//! # let _ = store; Ok(()) }
//! ```

mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use davrepl_store::chunks::{Chunker, slice_chunk};
use davrepl_store::engine::{self, Record, Rows};
use davrepl_store::{
    ByteRange, ByteStream, Capabilities, Change, ChangeKind, ChangePage, ChangesQuery, Condition,
    DeadProp, Depth, Entry, ErrorKind, ListOptions, Listing, Meta, PropName, PropPatch,
    PurgeReport, PutOptions, ReplStore, ReplUid, ResourceKind, ResourcePath, Secret, Seq,
    StoreError, StoreId, StoreResult, TransferOptions, WriteOutcome,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};

/// Content is stored in chunks of this many bytes.
pub const CHUNK: usize = 256 * 1024;
/// Reads up to this size are taken from one snapshot in one step.
const INLINE_READ: u64 = 8 * 1024 * 1024;

/// SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// Every commit is on stable storage before it is acknowledged (survives power loss).
    #[default]
    Full,
    /// Commits survive a process crash; the last ones may be lost on power loss or an OS crash.
    Normal,
}

/// How to open a store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// Reader connections (readers never block the writer in WAL mode).
    pub readers: usize,
    /// Start a new generation at open: the collblob secret is replaced, so every collblob
    /// issued before is refused (`475`) and clients resynchronise. Do this once after restoring
    /// the database from a backup (or after a power loss under `synchronous=NORMAL`): the
    /// restored store hands out sequence numbers again that clients may already have seen.
    pub new_generation: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            readers: 4,
            new_generation: false,
        }
    }
}

struct Inner {
    writer: std::sync::mpsc::Sender<Job>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    id: StoreId,
    secret: Secret,
    path: PathBuf,
}

/// The SQLite-backed [`ReplStore`]. Cloning gives another handle to the same database.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("id", &self.inner.id)
            .finish()
    }
}

pub(crate) fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn to_time(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n.max(0) as u64)
}

fn db_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && matches!(
            f.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        )
    {
        return StoreError::new(ErrorKind::Unavailable, "the database is busy").with_source(e);
    }
    StoreError::internal(e)
}

/// Creates the database file readable and writable by its owner only (it holds the collblob
/// secret and everyone's content); SQLite gives its `-wal` and `-shm` files the same mode. An
/// existing file keeps the mode its owner chose.
fn create_private(path: &Path) -> StoreResult<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::new(
            ErrorKind::Internal,
            format!("cannot create {}", path.display()),
        )
        .with_source(e)),
    }
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::internal(e)
}

fn open_conn(path: &Path, sync: Synchronous, create: bool) -> Result<Connection, rusqlite::Error> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directory) the store at `path`.
    pub async fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens with options.
    pub async fn open_with(path: impl AsRef<Path>, opts: SqliteOptions) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, &opts))
            .await
            .map_err(join_err)?
    }

    fn open_blocking(path: &Path, opts: &SqliteOptions) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::new(
                    ErrorKind::Internal,
                    format!("cannot create {}", dir.display()),
                )
                .with_source(e)
            })?;
        }
        create_private(path)?;
        let mut writer = open_conn(path, opts.synchronous, true).map_err(|e| {
            StoreError::new(
                ErrorKind::Internal,
                format!("cannot open {}", path.display()),
            )
            .with_source(e)
        })?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| StoreError::new(ErrorKind::Internal, format!("no randomness: {e}")))?;
        schema::migrate(&mut writer, StoreId::random().0, secret).map_err(|e| {
            StoreError::new(ErrorKind::Internal, format!("{}: {e}", path.display()))
        })?;
        if opts.new_generation {
            // `secret` is fresh randomness (unused if the store already existed).
            writer
                .execute(
                    "UPDATE store SET secret = ?1 WHERE id = 1",
                    params![&secret[..]],
                )
                .map_err(db_err)?;
            tracing::warn!(path = %path.display(), "new store generation: every earlier collblob is refused");
        }
        let (id, secret): (Vec<u8>, Vec<u8>) = writer
            .query_row("SELECT store_id, secret FROM store WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(db_err)?;
        let id = StoreId(
            id.try_into()
                .map_err(|_| StoreError::new(ErrorKind::Internal, "corrupt store id"))?,
        );
        let secret: Secret = secret
            .try_into()
            .map_err(|_| StoreError::new(ErrorKind::Internal, "corrupt secret"))?;
        // Staged uploads of a process that died before swapping them in.
        let orphans = writer
            .execute("DELETE FROM chunks WHERE blob NOT IN (SELECT blob FROM resources WHERE blob IS NOT NULL)", [])
            .map_err(db_err)?;
        if orphans > 0 {
            tracing::info!(
                chunks = orphans,
                "removed content of uploads that never completed"
            );
        }
        let readers = (0..opts.readers.max(1))
            .map(|_| open_conn(path, opts.synchronous, false).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: spawn_writer(writer, id)?,
                readers,
                next_reader: AtomicUsize::new(0),
                id,
                secret,
                path: path.to_path_buf(),
            }),
        })
    }

    /// Runs `f` as one atomic write. Writes from concurrent requests are grouped into one
    /// transaction (each in its own savepoint) and acknowledged only after that transaction
    /// commits: one disk sync serves many writers.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |t: &mut Tx<'_>| {
            let result = f(t);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit: Option<&StoreError>| {
                let out = match (result, commit) {
                    (Ok(_), Some(e)) => {
                        Err(StoreError::new(e.kind(), format!("commit failed: {e}")))
                    }
                    (r, _) => r,
                };
                let _ = tx.send(out);
            });
            (ok, finish)
        });
        self.inner.writer.send(job).map_err(|_| {
            tracing::error!(
                "the SQLite writer thread has stopped: every write fails until restart"
            );
            StoreError::new(ErrorKind::Unavailable, "the store's writer has stopped")
        })?;
        rx.await.map_err(|_| {
            StoreError::new(ErrorKind::Internal, "the store's writer dropped a request")
        })?
    }

    /// Runs `f` on a reader connection inside one read transaction (a consistent snapshot).
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let mut conn = inner.readers[i].lock().unwrap_or_else(|e| e.into_inner());
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)
                .map_err(db_err)?;
            let counters = Counters::load(&tx)?;
            let mut t = Tx {
                tx: &tx,
                c: counters,
                id: inner.id,
            };
            let out = f(&mut t);
            let _ = tx.rollback();
            out
        })
        .await
        .map_err(join_err)?
    }
}

/// Delivers a write's result once its transaction's fate is known.
type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// One write: runs inside the group transaction, says whether it succeeded.
type Job = Box<dyn FnOnce(&mut Tx<'_>) -> (bool, Finish) + Send>;

/// Most writes grouped into one transaction.
const MAX_GROUP: usize = 64;

/// The writer thread: owns the write connection and commits groups of writes.
fn spawn_writer(mut conn: Connection, id: StoreId) -> StoreResult<std::sync::mpsc::Sender<Job>> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("davrepl-sqlite-writer".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                while jobs.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                run_group(&mut conn, id, jobs);
            }
        });
    spawned.map_err(|e| {
        StoreError::new(ErrorKind::Internal, "cannot start the SQLite writer thread").with_source(e)
    })?;
    Ok(tx)
}

fn run_group(conn: &mut Connection, id: StoreId, jobs: Vec<Job>) {
    let mut finishers: Vec<Finish> = Vec::with_capacity(jobs.len());
    let outcome: StoreResult<()> = (|| {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let mut counters = Counters::load(&tx)?;
        for job in jobs {
            tx.execute_batch("SAVEPOINT job").map_err(db_err)?;
            let mut t = Tx {
                tx: &tx,
                c: counters,
                id,
            };
            // A panic in one write (a bug) must not take the writer thread, and with it every
            // later write, down: that write is rolled back and its caller gets an error.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut t)));
            let Ok((ok, finish)) = ran else {
                tracing::error!("a write panicked; it was rolled back and the writer goes on");
                tx.execute_batch("ROLLBACK TO job; RELEASE job")
                    .map_err(db_err)?;
                continue;
            };
            if ok {
                counters = t.c;
                tx.execute_batch("RELEASE job").map_err(db_err)?;
            } else {
                tx.execute_batch("ROLLBACK TO job; RELEASE job")
                    .map_err(db_err)?;
            }
            finishers.push(finish);
        }
        counters.save(&tx)?;
        tx.commit().map_err(db_err)
    })();
    let err = outcome.err();
    if let Some(e) = &err {
        tracing::error!(error = %e, "a write transaction failed; its writes are refused");
    }
    for f in finishers {
        f(err.as_ref());
    }
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    seq: i64,
    rid: i64,
    blob: i64,
    low_water: i64,
}

impl Counters {
    fn load(tx: &Transaction<'_>) -> StoreResult<Self> {
        tx.query_row(
            "SELECT seq, rid_counter, blob_counter, low_water FROM store WHERE id = 1",
            [],
            |r| {
                Ok(Self {
                    seq: r.get(0)?,
                    rid: r.get(1)?,
                    blob: r.get(2)?,
                    low_water: r.get(3)?,
                })
            },
        )
        .map_err(db_err)
    }

    fn save(&self, tx: &Transaction<'_>) -> StoreResult<()> {
        tx.execute(
            "UPDATE store SET seq = ?1, rid_counter = ?2, blob_counter = ?3, low_water = ?4 WHERE id = 1",
            params![self.seq, self.rid, self.blob, self.low_water],
        )
        .map_err(db_err)?;
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
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            path: r.get(0)?,
            rid: r.get(1)?,
            kind: r.get(2)?,
            version: r.get(3)?,
            content_version: r.get(4)?,
            len: r.get(5)?,
            content_type: r.get(6)?,
            created: r.get(7)?,
            modified: r.get(8)?,
            blob: r.get(9)?,
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

struct Tx<'a> {
    tx: &'a Transaction<'a>,
    c: Counters,
    id: StoreId,
}

impl Tx<'_> {
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

    fn node(&self, path: &ResourcePath) -> StoreResult<Option<Node>> {
        self.tx
            .query_row(
                &format!("SELECT {COLS} FROM resources WHERE path = ?1"),
                [path.as_str()],
                Node::from_row,
            )
            .optional()
            .map_err(db_err)
    }

    fn must(&self, path: &ResourcePath) -> StoreResult<Node> {
        self.node(path)?.ok_or_else(|| StoreError::not_found(path))
    }

    fn dead_props(&self, rid: i64) -> StoreResult<Vec<DeadProp>> {
        let mut st = self
            .tx
            .prepare_cached("SELECT ns, local, value FROM props WHERE rid = ?1 ORDER BY ns, local")
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

    fn next_seq(&mut self) -> i64 {
        self.c.seq += 1;
        self.c.seq
    }

    fn next_rid(&mut self) -> i64 {
        self.c.rid += 1;
        self.c.rid
    }

    fn next_blob(&mut self) -> i64 {
        self.c.blob += 1;
        self.c.blob
    }

    /// A row as the engine sees it.
    fn record(&self, n: Node) -> Record<Option<i64>> {
        Record {
            rid: ReplUid::new(self.id, n.rid as u64),
            kind: kind_of(n.kind),
            version: n.version as u64,
            content_version: n.content_version as u64,
            len: n.len as u64,
            content_type: n.content_type,
            created: to_time(n.created),
            modified: to_time(n.modified),
            payload: n.blob,
        }
    }

    fn change_rows(&self, q: &ChangesQuery) -> StoreResult<ChangePage> {
        let since = q.since as i64;
        let fetch = q.limit as i64 + 1;
        let scope = q.scope.as_str();
        let mut rows: Vec<(i64, ChangeKind, i64)> = Vec::new();
        let push_live = |rows: &mut Vec<(i64, ChangeKind, i64)>, n: Node| -> StoreResult<()> {
            let m = self.meta(&n)?;
            rows.push((n.version, ChangeKind::Upsert(m), n.rid));
            Ok(())
        };
        if (q.depth == Depth::Zero || q.include_scope)
            && let Some(n) = self.node(&q.scope)?.filter(|n| n.version > since)
        {
            push_live(&mut rows, n)?;
        }
        let (start, end) = q.scope.descendant_range();
        let live_sql = match q.depth {
            Depth::Zero => None,
            Depth::One => Some(format!(
                "SELECT {COLS} FROM resources WHERE parent = ?1 AND version > ?2 ORDER BY version LIMIT ?3"
            )),
            Depth::Infinity => Some(format!(
                "SELECT {COLS} FROM resources WHERE version > ?2 AND path >= ?4 AND path < ?5 AND path <> ?1 ORDER BY version LIMIT ?3"
            )),
        };
        if let Some(sql) = live_sql {
            let mut st = self.tx.prepare_cached(&sql).map_err(db_err)?;
            let found = match q.depth {
                Depth::One => st.query_map(params![scope, since, fetch], Node::from_row),
                _ => st.query_map(params![scope, since, fetch, start, end], Node::from_row),
            }
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
            for n in found {
                push_live(&mut rows, n)?;
            }
        }
        if q.include_removed {
            let tomb_sql = match q.depth {
                Depth::Zero => {
                    "SELECT seq, rid, path, kind FROM tombstones WHERE path = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                }
                Depth::One => {
                    "SELECT seq, rid, path, kind FROM tombstones WHERE parent = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                }
                Depth::Infinity => {
                    "SELECT seq, rid, path, kind FROM tombstones WHERE seq > ?2 AND path >= ?4 AND path < ?5 AND path <> ?1 ORDER BY seq LIMIT ?3"
                }
            };
            let mut st = self.tx.prepare_cached(tomb_sql).map_err(db_err)?;
            let map = |r: &rusqlite::Row<'_>| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            };
            let found = match q.depth {
                Depth::Infinity => st.query_map(params![scope, since, fetch, start, end], map),
                _ => st.query_map(params![scope, since, fetch], map),
            }
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
            for (seq, rid, path, kind) in found {
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
        let mut changes = Vec::with_capacity(rows.len());
        for (seq, kind, rid) in rows {
            let props = if q.with_props && rid >= 0 {
                self.dead_props(rid)?
            } else {
                Vec::new()
            };
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
/// database under a fresh blob id. Returns (blob id if staged, in-memory rest, total length).
/// The engine's rows are the `resources`, `props`, `tombstones` and `chunks` tables inside the
/// group transaction of the writer thread. The payload of a record is its blob id.
impl Rows for Tx<'_> {
    type Payload = Option<i64>;

    fn store_id(&self) -> StoreId {
        self.id
    }

    fn get(&mut self, path: &ResourcePath) -> StoreResult<Option<Record<Option<i64>>>> {
        Ok(Tx::node(self, path)?.map(|n| self.record(n)))
    }

    fn descendants(
        &mut self,
        root: &ResourcePath,
    ) -> StoreResult<Vec<(ResourcePath, Record<Option<i64>>)>> {
        let (start, end) = root.descendant_range();
        let mut st = self
            .tx
            .prepare_cached(&format!(
                "SELECT {COLS} FROM resources WHERE path >= ?1 AND path < ?2 ORDER BY path"
            ))
            .map_err(db_err)?;
        let rows = st
            .query_map(params![start, end], Node::from_row)
            .map_err(db_err)?;
        let mut out = Vec::new();
        for r in rows {
            let n = r.map_err(db_err)?;
            let path = rpath(&n.path)?;
            if path != *root {
                out.push((path, self.record(n)));
            }
        }
        Ok(out)
    }

    fn put(&mut self, path: &ResourcePath, r: &Record<Option<i64>>) -> StoreResult<()> {
        let parent = path.parent().map(|p| p.as_str().to_owned());
        self.tx
            .prepare_cached(
                "INSERT INTO resources (path, parent, rid, kind, version, content_version, len, content_type, created, modified, blob)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT(path) DO UPDATE SET rid = ?3, kind = ?4, version = ?5, content_version = ?6,
                   len = ?7, content_type = ?8, created = ?9, modified = ?10, blob = ?11",
            )
            .and_then(|mut st| {
                st.execute(params![
                    path.as_str(),
                    parent,
                    r.rid.counter() as i64,
                    kind_code(r.kind),
                    r.version as i64,
                    r.content_version as i64,
                    r.len as i64,
                    r.content_type,
                    nanos(r.created),
                    nanos(r.modified),
                    r.payload
                ])
            })
            .map_err(db_err)?;
        Ok(())
    }

    fn remove(&mut self, path: &ResourcePath) -> StoreResult<()> {
        self.tx
            .execute("DELETE FROM resources WHERE path = ?1", [path.as_str()])
            .map_err(db_err)?;
        Ok(())
    }

    fn tombstone(
        &mut self,
        seq: Seq,
        rid: ReplUid,
        path: &ResourcePath,
        kind: ResourceKind,
        at: SystemTime,
    ) -> StoreResult<()> {
        let parent = path.parent().map(|p| p.as_str().to_owned());
        self.tx
            .execute(
                "INSERT INTO tombstones (seq, rid, path, parent, kind, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![seq as i64, rid.counter() as i64, path.as_str(), parent, kind_code(kind), nanos(at)],
            )
            .map_err(db_err)?;
        Ok(())
    }

    fn next_seq(&mut self) -> StoreResult<Seq> {
        Ok(Tx::next_seq(self) as u64)
    }

    fn current_seq(&mut self) -> StoreResult<Seq> {
        Ok(self.c.seq as u64)
    }

    fn next_rid(&mut self) -> StoreResult<u64> {
        Ok(Tx::next_rid(self) as u64)
    }

    fn props(&mut self, rid: ReplUid) -> StoreResult<Vec<DeadProp>> {
        Tx::dead_props(self, rid.counter() as i64)
    }

    fn set_props(&mut self, rid: ReplUid, props: &[DeadProp]) -> StoreResult<()> {
        let rid = rid.counter() as i64;
        self.tx
            .execute("DELETE FROM props WHERE rid = ?1", [rid])
            .map_err(db_err)?;
        for p in props {
            self.tx
                .execute(
                    "INSERT INTO props (rid, ns, local, value) VALUES (?1, ?2, ?3, ?4)",
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
                "INSERT INTO chunks (blob, n, data) SELECT ?1, n, data FROM chunks WHERE blob = ?2",
                params![b, old],
            )
            .map_err(db_err)?;
        Ok(Some(b))
    }

    fn release(&mut self, payload: Option<i64>) -> StoreResult<()> {
        if let Some(b) = payload {
            self.tx
                .execute("DELETE FROM chunks WHERE blob = ?1", [b])
                .map_err(db_err)?;
        }
        Ok(())
    }

    fn kind(&mut self, path: &ResourcePath) -> StoreResult<Option<ResourceKind>> {
        self.tx
            .prepare_cached("SELECT kind FROM resources WHERE path = ?1")
            .and_then(|mut st| {
                st.query_row([path.as_str()], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .map(|k| k.map(kind_of))
            .map_err(db_err)
    }

    fn set_content_version(&mut self, path: &ResourcePath, seq: Seq) -> StoreResult<()> {
        self.tx
            .execute(
                "UPDATE resources SET content_version = ?1 WHERE path = ?2",
                params![seq as i64, path.as_str()],
            )
            .map_err(db_err)?;
        Ok(())
    }
}

async fn stage(
    store: &SqliteStore,
    body: ByteStream,
    max_len: Option<u64>,
) -> StoreResult<(Option<i64>, Vec<Bytes>, u64)> {
    let mut chunker = Chunker::new(body, CHUNK, max_len);
    let mut staged: Option<(i64, i64)> = None; // (blob, next chunk number)
    let result: StoreResult<()> = async {
        while let Some(piece) = chunker.full_chunk().await? {
            let (blob, n) = match staged {
                Some(s) => s,
                None => (store.write(|t| Ok(t.next_blob())).await?, 0),
            };
            store
                .write(move |t| {
                    t.tx.execute(
                        "INSERT INTO chunks (blob, n, data) VALUES (?1, ?2, ?3)",
                        params![blob, n, &piece[..]],
                    )
                    .map_err(db_err)?;
                    Ok(())
                })
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

async fn discard(store: &SqliteStore, blob: i64) {
    let r = store
        .write(move |t| {
            t.tx.execute("DELETE FROM chunks WHERE blob = ?1", [blob])
                .map_err(db_err)?;
            Ok(())
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, blob, "could not discard a staged upload; it is removed at next start");
    }
}

impl ReplStore for SqliteStore {
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
        let path = path.clone();
        self.read(move |t| {
            let n = t.must(&path)?;
            t.meta(&n)
        })
        .await
    }

    async fn props(&self, path: &ResourcePath) -> StoreResult<Entry> {
        let path = path.clone();
        self.read(move |t| {
            let n = t.must(&path)?;
            Ok(Entry {
                meta: t.meta(&n)?,
                props: t.dead_props(n.rid)?,
            })
        })
        .await
    }

    async fn list(&self, path: &ResourcePath, opts: ListOptions) -> StoreResult<Listing> {
        let path = path.clone();
        self.read(move |t| {
            let n = t.must(&path)?;
            if !n.is_collection() {
                return Err(StoreError::new(ErrorKind::NotCollection, format!("{path} is not a collection")));
            }
            if opts.depth == Depth::Zero || opts.limit == 0 {
                return Ok(Listing { entries: Vec::new(), next: None });
            }
            let after = opts.after.as_ref().map_or_else(String::new, |a| a.as_str().to_owned());
            let fetch = opts.limit as i64 + 1;
            let found: Vec<Node> = if opts.depth == Depth::One {
                let mut st = t.tx.prepare_cached(&format!("SELECT {COLS} FROM resources WHERE parent = ?1 AND path > ?2 ORDER BY path LIMIT ?3")).map_err(db_err)?;
                st.query_map(params![path.as_str(), after, fetch], Node::from_row).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?
            } else {
                let (start, end) = path.descendant_range();
                let mut st = t
                    .tx
                    .prepare_cached(&format!("SELECT {COLS} FROM resources WHERE path >= ?1 AND path < ?2 AND path > ?3 AND path <> ?4 ORDER BY path LIMIT ?5"))
                    .map_err(db_err)?;
                st.query_map(params![start, end, after, path.as_str(), fetch], Node::from_row).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?
            };
            let more = found.len() > opts.limit;
            let mut entries = Vec::with_capacity(found.len().min(opts.limit));
            for n in found.into_iter().take(opts.limit) {
                let props = if opts.with_props { t.dead_props(n.rid)? } else { Vec::new() };
                entries.push(Entry { meta: t.meta(&n)?, props });
            }
            let next = if more { entries.last().map(|e| e.meta.path.clone()) } else { None };
            Ok(Listing { entries, next })
        })
        .await
    }

    async fn read(
        &self,
        path: &ResourcePath,
        range: Option<ByteRange>,
    ) -> StoreResult<(Meta, ByteStream)> {
        let p = path.clone();
        let (meta, blob, first_chunk, inline) = self
            .read(move |t| {
                let n = t.must(&p)?;
                if n.is_collection() {
                    return Err(StoreError::new(ErrorKind::IsCollection, format!("{p} is a collection")));
                }
                let meta = t.meta(&n)?;
                if let Some(r) = range
                    && (r.start > r.end || r.end >= meta.len)
                {
                    return Err(StoreError::new(ErrorKind::InvalidInput, "byte range out of bounds"));
                }
                let (start, end) = range.map_or((0, meta.len.saturating_sub(1)), |r| (r.start, r.end));
                let first = (start / CHUNK as u64) as i64;
                let last = if meta.len == 0 { -1 } else { (end / CHUNK as u64) as i64 };
                let inline = if meta.len == 0 {
                    Some(Vec::new())
                } else if end - start < INLINE_READ {
                    let mut st = t.tx.prepare_cached("SELECT data FROM chunks WHERE blob = ?1 AND n >= ?2 AND n <= ?3 ORDER BY n").map_err(db_err)?;
                    let chunks: Vec<Vec<u8>> = st.query_map(params![n.blob, first, last], |r| r.get(0)).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
                    Some(chunks)
                } else {
                    None
                };
                Ok((meta, n.blob, first, inline))
            })
            .await?;
        let (start, end) = match range {
            Some(r) => (r.start, r.end),
            None => (0, meta.len.saturating_sub(1)),
        };
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
        let last = (end / CHUNK as u64) as i64;
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
                            "SELECT data FROM chunks WHERE blob = ?1 AND n = ?2",
                            params![blob, n],
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

    async fn put(
        &self,
        path: &ResourcePath,
        body: ByteStream,
        opts: PutOptions,
    ) -> StoreResult<WriteOutcome> {
        let (staged, rest, total) = stage(self, body, opts.max_len).await?;
        let path2 = path.clone();
        let result = self
            .write(move |t| {
                let blob = match staged {
                    Some(b) => b,
                    None => t.next_blob(),
                };
                let base: i64 =
                    t.tx.query_row("SELECT count(*) FROM chunks WHERE blob = ?1", [blob], |r| {
                        r.get(0)
                    })
                    .map_err(db_err)?;
                for (i, piece) in rest.iter().enumerate() {
                    t.tx.execute(
                        "INSERT INTO chunks (blob, n, data) VALUES (?1, ?2, ?3)",
                        params![blob, base + i as i64, &piece[..]],
                    )
                    .map_err(db_err)?;
                }
                engine::put(
                    t,
                    &path2,
                    Some(blob),
                    total,
                    opts.content_type,
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

    async fn create_collection(
        &self,
        path: &ResourcePath,
        cond: &Condition,
    ) -> StoreResult<WriteOutcome> {
        let (path, cond) = (path.clone(), cond.clone());
        self.write(move |t| engine::create_collection(t, &path, &cond, None))
            .await
    }

    async fn delete(&self, path: &ResourcePath, cond: &Condition) -> StoreResult<Meta> {
        let (path, cond) = (path.clone(), cond.clone());
        self.write(move |t| engine::delete(t, &path, &cond)).await
    }

    async fn copy(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        let (from, to) = (from.clone(), to.clone());
        self.write(move |t| engine::copy(t, &from, &to, &opts))
            .await
    }

    async fn rename(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        let (from, to) = (from.clone(), to.clone());
        self.write(move |t| engine::rename(t, &from, &to, &opts))
            .await
    }

    async fn patch_props(
        &self,
        path: &ResourcePath,
        patch: Vec<PropPatch>,
        cond: &Condition,
    ) -> StoreResult<WriteOutcome> {
        let (path, cond) = (path.clone(), cond.clone());
        self.write(move |t| engine::patch_props(t, &path, patch, &cond))
            .await
    }

    async fn watermark(&self) -> StoreResult<Seq> {
        self.read(|t| Ok(t.c.seq as u64)).await
    }

    async fn changes(&self, query: ChangesQuery) -> StoreResult<ChangePage> {
        self.read(move |t| t.change_rows(&query)).await
    }

    async fn purge(&self, before: SystemTime) -> StoreResult<PurgeReport> {
        let cutoff = before
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        self.write(move |t| {
            let (count, max): (i64, Option<i64>) =
                t.tx.query_row(
                    "SELECT count(*), max(seq) FROM tombstones WHERE at < ?1",
                    [cutoff],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)?;
            t.tx.execute("DELETE FROM tombstones WHERE at < ?1", [cutoff])
                .map_err(db_err)?;
            if let Some(m) = max {
                t.c.low_water = t.c.low_water.max(m);
            }
            Ok(PurgeReport {
                removed: count as u64,
                low_water: t.c.low_water as u64,
            })
        })
        .await
    }
}

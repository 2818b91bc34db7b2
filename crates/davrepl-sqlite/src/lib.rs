//! [`SqliteStore`]: the whole [`ReplStore`](davrepl_store::ReplStore) contract on an embedded
//! SQLite database — the default store of davrepl. Every rule of the model is the storage
//! engine's (`davrepl_store::engine`); this crate gives it rows and content.
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

mod rows;
mod schema;
mod stream;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use davrepl_store::chunks;
use davrepl_store::engine::{Atomic, AtomicOf, Backend, Engine, Incoming, Staged, sql};
use davrepl_store::{
    ByteStream, ErrorKind, ResourcePath, Secret, StoreError, StoreId, StoreResult,
};
use rusqlite::{Connection, OpenFlags, params};

use crate::rows::Tx;
use crate::writer::{Counters, Finish, Job, spawn_writer};

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
}

/// The SQLite-backed [`ReplStore`](davrepl_store::ReplStore): the storage engine over SQLite
/// rows. Cloning gives another handle to the same database.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    engine: Engine<Sqlite>,
}

davrepl_store::forward_repl_store!(impl[] for SqliteStore => |s| (s.engine));

/// The engine backend of [`SqliteStore`]: one writer thread, a few reader connections.
#[derive(Clone)]
pub(crate) struct Sqlite {
    inner: Arc<Inner>,
}

pub(crate) fn now_nanos() -> i64 {
    sql::nanos(SystemTime::now())
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
        let backend = tokio::task::spawn_blocking(move || Sqlite::open(&path, &opts))
            .await
            .map_err(join_err)??;
        Ok(Self {
            engine: Engine::new(backend),
        })
    }
}

impl Sqlite {
    fn open(path: &Path, opts: &SqliteOptions) -> StoreResult<Self> {
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
        let (id, secret) = sql::identity(id, secret)?;
        // Staged uploads of a process that died before swapping them in.
        let orphans = writer
            .execute("DELETE FROM davrepl_chunks WHERE blob NOT IN (SELECT blob FROM davrepl_resources WHERE blob IS NOT NULL)", [])
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

/// Whole chunks of an upload go in one small write each, before the write that adopts them.
impl chunks::ChunkSink for Sqlite {
    async fn begin(&self) -> StoreResult<i64> {
        self.write(|t| Ok(t.next_blob())).await
    }

    async fn append(&self, blob: i64, n: i64, piece: Bytes) -> StoreResult<()> {
        self.write(move |t| t.insert_chunk(blob, n, &piece)).await
    }

    async fn discard(&self, blob: i64) {
        let drop_blob = move |t: &mut Tx<'_>| {
            t.tx.execute(&sql::sqlite(sql::DROP_BLOB), [blob])
                .map_err(db_err)?;
            Ok(())
        };
        if let Err(e) = self.write(drop_blob).await {
            tracing::warn!(error = %e, blob, "could not discard a staged upload; it is removed at next start");
        }
    }
}

impl Backend for Sqlite {
    type Payload = Option<i64>;
    type Upload = chunks::Staged;

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
        if !plan.write {
            return self.read(move |t| step(t, None)).await;
        }
        let staged_blob = upload.as_ref().and_then(|u| u.blob);
        let result = self
            .write(move |t| {
                let payload = match &upload {
                    Some(u) => Some(t.adopt(u)?),
                    None => None,
                };
                step(t, payload)
            })
            .await;
        if result.is_err()
            && let Some(b) = staged_blob
        {
            chunks::ChunkSink::discard(self, b).await;
        }
        result
    }

    async fn stage(&self, incoming: Incoming) -> StoreResult<Staged<chunks::Staged>> {
        chunks::stage(self, incoming.body, CHUNK, incoming.max_len).await
    }

    fn stream(&self, path: &ResourcePath, blob: Option<i64>, span: (u64, u64)) -> ByteStream {
        stream::stream(self.clone(), path.clone(), blob, span)
    }

    fn identity(&self) -> (StoreId, Secret) {
        (self.inner.id, self.inner.secret)
    }
}

//! [`SqliteStore`]: the whole [`ReplStore`](davrepl_store::ReplStore) contract on an embedded
//! SQLite database — the default store of davrepl. Every rule of the model is the storage
//! engine's (`davrepl_store::engine`); this crate gives it rows and content.
//!
//! - **One file**, WAL mode. One writer connection and a few reader connections; scans run on
//!   tokio's blocking pool, point reads on the calling thread (a connection per thread), and
//!   the point reads of the recent past are answered from memory (`SqliteOptions::hot_rows`),
//!   kept exact by the writer thread. One store per database at a time (see
//!   [`SqliteStore::open`]).
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

mod cache;
mod files;
mod hot;
mod local;
mod rows;
mod schema;
mod stream;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use davrepl_store::chunks::Chunker;
use davrepl_store::engine::{Atomic, AtomicOf, Backend, Engine, Incoming, Staged, sql};
use davrepl_store::{
    ByteStream, ErrorKind, ResourcePath, Secret, StoreError, StoreId, StoreResult,
};
use rusqlite::{Connection, OpenFlags, params};

use crate::files::{Content, Files, StagedFile, io_err};
use crate::rows::Tx;
use crate::writer::{Finish, Job, spawn_writer};

/// Content files are written and read in pieces of this many bytes.
pub const CHUNK: usize = 256 * 1024;
/// Content of this many bytes or more lives in a file of its own beside the database; shorter
/// content is one row of the database.
pub const FILE_MIN: u64 = 128 * 1024;

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
    /// Reader connections for reads that scan (listings, manifests, reports); readers never
    /// block the writer in WAL mode.
    pub readers: usize,
    /// Most threads that keep a reader connection of their own for point reads (the HEAD,
    /// PROPFIND or GET of one resource: a few indexed lookups), run on the calling thread
    /// without a hop to the blocking pool. `0` sends every read to the pool. A thread beyond
    /// the limit uses the pool.
    pub local_readers: usize,
    /// Bytes of content files kept in memory (whole files of at most an eighth of this each):
    /// a file never changes once written, so a cached copy is never stale, and a GET of it
    /// needs no disk read, no copy and no hop to the blocking pool. `0` turns the cache off.
    pub content_cache: u64,
    /// Bytes of recently read rows (and their content, up to 64 KiB each) kept in memory, so
    /// that the next HEAD or GET of the same resource needs no read transaction. The cache is
    /// exact: every commit empties it before its writers are answered (so a write-heavy store
    /// gains little from it, and loses nothing). `0` turns it off.
    pub hot_rows: u64,
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
            local_readers: 64,
            content_cache: 64 * 1024 * 1024,
            hot_rows: 16 * 1024 * 1024,
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
    synchronous: Synchronous,
    files: Arc<Files>,
    hot: Arc<hot::HotRows>,
    /// Threads holding a connection of their own (at most `local_max`).
    local_count: AtomicUsize,
    local_max: usize,
}

/// The SQLite-backed [`ReplStore`](davrepl_store::ReplStore): the storage engine over SQLite
/// rows. Cloning gives another handle to the same database.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    engine: Engine<Sqlite>,
}

davrepl_store::forward_repl_store!(impl[] for SqliteStore => |s| (s.engine));

/// The engine backend of [`SqliteStore`]: one writer thread, a few reader connections, and
/// content files.
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

pub(crate) fn open_conn(
    path: &Path,
    sync: Synchronous,
    create: bool,
) -> Result<Connection, rusqlite::Error> {
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
    // Every statement the store runs stays prepared (the default keeps 16).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directory) the store at `path`.
    ///
    /// A database is open in one store at a time: the store claims it (an exclusive `flock`
    /// on its content directory) until its last handle is dropped, and a second open, from
    /// another process or this one, waits up to 5 seconds and is then refused with
    /// [`ErrorKind::Unavailable`]. Clone the store to share it.
    pub async fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// The directory beside the database that holds long content (one file per item of
    /// [`FILE_MIN`] bytes or more): a backup must copy it with the database. See
    /// `docs/durability.md`.
    pub fn content_dir(&self) -> &Path {
        self.engine.backend().inner.files.dir()
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
        let files = Files::open(path, opts.content_cache)
            .map_err(|e| io_err("cannot create the content directory", e))?;
        // Before the migration and the sweep below, which would otherwise remove the uploads
        // in flight of another store open on the same database.
        let owner = files.claim(Duration::from_secs(5))?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| StoreError::new(ErrorKind::Internal, format!("no randomness: {e}")))?;
        schema::migrate(&mut writer, StoreId::random().0, secret, &files).map_err(|e| {
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
        // Content files of uploads that never completed, or whose removal a crash prevented.
        let referenced = writer
            .prepare("SELECT -blob FROM davrepl_resources WHERE blob < 0")
            .and_then(|mut st| {
                st.query_map([], |r| r.get::<_, i64>(0))?
                    .collect::<Result<std::collections::HashSet<i64>, _>>()
            })
            .map_err(db_err)?;
        let orphans = files
            .sweep(&referenced)
            .map_err(|e| io_err("cannot sweep the content directory", e))?;
        if orphans > 0 {
            tracing::info!(
                files = orphans,
                "removed content files no resource refers to (uploads cut off by a crash)"
            );
        }
        let readers = (0..opts.readers.max(1))
            .map(|_| open_conn(path, opts.synchronous, false).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        let files = Arc::new(files);
        let hot = Arc::new(hot::HotRows::new(opts.hot_rows));
        Ok(Self {
            inner: Arc::new(Inner {
                writer: spawn_writer(writer, id, files.clone(), hot.clone(), owner)?,
                readers,
                next_reader: AtomicUsize::new(0),
                id,
                secret,
                path: path.to_path_buf(),
                synchronous: opts.synchronous,
                files,
                hot,
                local_count: AtomicUsize::new(0),
                local_max: opts.local_readers,
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

    /// Runs `f` on a pooled reader connection, on the blocking pool, inside one read
    /// transaction (a consistent snapshot).
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let i = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let conn = inner.readers[i].lock().unwrap_or_else(|e| e.into_inner());
            rows::read_tx(&conn, inner.id, &inner.files, f)
        })
        .await
        .map_err(join_err)?
    }

    /// Writes a long upload into a new content file, piece by piece on the blocking pool,
    /// starting with `first` (already read); syncs it once at the end. Returns the file's
    /// number and length. The file is removed if anything fails.
    async fn stage_file(
        &self,
        first: Option<Bytes>,
        mut chunker: Chunker,
    ) -> StoreResult<(StagedFile, u64)> {
        let files = self.inner.files.clone();
        let (id, file) = blocking(move || files.create())
            .await
            .map_err(|e| io_err("cannot create a content file", e))?;
        // Removes the file if anything below fails, or this future is dropped.
        let staged = StagedFile::new(id, self.inner.files.clone());
        let write = async {
            let mut file = match first {
                Some(piece) => write_piece(file, piece).await?,
                None => file,
            };
            while let Some(piece) = chunker.full_chunk().await? {
                file = write_piece(file, piece).await?;
            }
            let total = chunker.total();
            if let Some(rest) = chunker.into_rest() {
                file = write_piece(file, rest).await?;
            }
            blocking(move || file.sync_data())
                .await
                .map_err(|e| io_err("cannot sync a content file", e))?;
            Ok(total)
        };
        match write.await {
            Ok(total) => Ok((staged, total)),
            Err(e) => {
                // Removed before the error is returned, not some time after.
                staged.disarm();
                let files = self.inner.files.clone();
                let _ = blocking(move || {
                    files.remove(id);
                    Ok(())
                })
                .await;
                Err(e)
            }
        }
    }
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

async fn write_piece(mut file: std::fs::File, piece: Bytes) -> StoreResult<std::fs::File> {
    blocking(move || {
        std::io::Write::write_all(&mut file, &piece)?;
        Ok(file)
    })
    .await
    .map_err(|e| io_err("cannot write a content file", e))
}

/// An upload staged by [`Sqlite`]: short content waits in memory for its write; long content
/// is already in its (synced) file.
pub(crate) enum Upload {
    /// Shorter than [`FILE_MIN`].
    Short(Bytes),
    /// A content file, removed unless a committed write keeps it.
    File(StagedFile),
}

impl Backend for Sqlite {
    type Payload = Option<i64>;
    type Upload = Upload;

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
            if !plan.point {
                return self.read(move |t| step(t, None)).await;
            }
            let hot = &self.inner.hot;
            if let Some(out) = hot.serve(self.inner.id, |rows| step(rows, None)) {
                return out;
            }
            if let Some(out) = local::read(&self.inner, |t| hot.record(t, |t| step(t, None))) {
                return out;
            }
            let inner = self.inner.clone();
            return self
                .read(move |t| inner.hot.record(t, |t| step(t, None)))
                .await;
        }
        // A staged file travels with the write; the writer keeps it once the write commits.
        self.write(move |t| {
            let payload = match upload {
                Some(u) => Some(t.adopt(u)?),
                None => None,
            };
            step(t, payload)
        })
        .await
    }

    async fn stage(&self, incoming: Incoming) -> StoreResult<Staged<Upload>> {
        let mut chunker = Chunker::new(incoming.body, CHUNK, incoming.max_len);
        let first = chunker.full_chunk().await?;
        if first.is_none() && chunker.total() < FILE_MIN {
            let total = chunker.total();
            let short = chunker.into_rest().unwrap_or_default();
            return Ok(Staged::new(Upload::Short(short), total));
        }
        let (id, total) = self.stage_file(first, chunker).await?;
        Ok(Staged::new(Upload::File(id), total))
    }

    fn stream(&self, path: &ResourcePath, blob: Option<i64>, span: (u64, u64)) -> ByteStream {
        stream::stream(self.clone(), path.clone(), Content::of(blob), span)
    }

    fn identity(&self) -> (StoreId, Secret) {
        (self.inner.id, self.inner.secret)
    }
}

//! Content files: content of [`FILE_MIN`](crate::FILE_MIN) bytes or more lives in a file of its
//! own beside the database, in one flat directory (`<database>.content/`).
//!
//! A file is written whole and synced before the transaction that makes a resource point at
//! it commits (the writer also syncs the directory once per group, so the new name is as
//! durable as the row naming it), and it is never changed afterwards: a COPY links a second
//! name to it, an overwrite or a DELETE unlinks the old name once its transaction has
//! committed. A name no row points at (an upload cut off by a crash, an unlink the crash
//! prevented) is removed the next time the store opens.
//!
//! Names are random 62-bit numbers in hexadecimal, created exclusively, so two uploads never
//! share one; the resource row keeps the number negated in its `blob` column (positive numbers
//! are rows of `davrepl_content`).

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use davrepl_store::{ErrorKind, StoreError};

/// Where content files live, and the cache of their bytes.
#[derive(Debug)]
pub(crate) struct Files {
    dir: PathBuf,
    pub(crate) cache: crate::cache::ContentCache,
}

/// The content of a resource: where the `blob` column points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    /// A row of `davrepl_content` (short content).
    Row(i64),
    /// A content file (long content).
    File(i64),
}

impl Content {
    /// Decodes the `blob` column.
    pub(crate) fn of(blob: Option<i64>) -> Option<Self> {
        blob.map(|b| if b < 0 { Self::File(-b) } else { Self::Row(b) })
    }

    /// The `blob` column's value.
    pub(crate) fn column(self) -> i64 {
        match self {
            Self::Row(id) => id,
            Self::File(id) => -id,
        }
    }
}

pub(crate) fn io_err(what: impl std::fmt::Display, e: io::Error) -> StoreError {
    StoreError::new(ErrorKind::Internal, format!("{what}: {e}")).with_source(e)
}

fn random_id() -> io::Result<i64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
    // 62 bits: positive, and its negation fits too; never 0.
    Ok((i64::from_le_bytes(b) & ((1 << 62) - 1)).max(1))
}

impl Files {
    /// The content directory of the database at `db` (created private if missing), with a
    /// cache of up to `cache_bytes` of content in memory.
    pub(crate) fn open(db: &Path, cache_bytes: u64) -> io::Result<Self> {
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(".content");
        let dir = db.with_file_name(name);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        Ok(Self {
            dir,
            cache: crate::cache::ContentCache::new(cache_bytes),
        })
    }

    /// Takes the content directory's exclusive lock (`flock`), which marks the one open store
    /// of this database: the returned handle holds it until dropped. Another holder (another
    /// process, or a store of this process still open) is waited for up to `wait`, then
    /// refused with [`ErrorKind::Unavailable`].
    pub(crate) fn claim(&self, wait: std::time::Duration) -> Result<File, StoreError> {
        let dir =
            File::open(&self.dir).map_err(|e| io_err("cannot open the content directory", e))?;
        let until = std::time::Instant::now() + wait;
        loop {
            match dir.try_lock() {
                Ok(()) => return Ok(dir),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "{} is in use by another open store (another process, or a store of \
                             this process not yet dropped): a database is opened by one store at a time",
                            self.dir.display()
                        ),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(io_err("cannot lock the content directory", e));
                }
            }
        }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of content `id`.
    pub(crate) fn path(&self, id: i64) -> PathBuf {
        self.dir.join(format!("{id:016x}"))
    }

    /// A new, empty, private file under a fresh name.
    pub(crate) fn create(&self) -> io::Result<(i64, File)> {
        loop {
            let id = random_id()?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).read(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            match opts.open(self.path(id)) {
                Ok(f) => return Ok((id, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// A second name for the (never changing) file `id`: a copy that costs no bytes.
    pub(crate) fn link(&self, id: i64) -> io::Result<i64> {
        loop {
            let new = random_id()?;
            match std::fs::hard_link(self.path(id), self.path(new)) {
                Ok(()) => return Ok(new),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes the name `id` (already gone is fine).
    pub(crate) fn remove(&self, id: i64) {
        self.cache.remove(id);
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e, file = %self.path(id).display(), "cannot remove a content file; it is removed at next start");
            }
        }
    }

    /// Makes the names created or removed so far durable.
    pub(crate) fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }

    /// Removes every file whose number is not in `referenced` (and anything else that is not
    /// a content file name); returns how many.
    pub(crate) fn sweep(&self, referenced: &HashSet<i64>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let keep = entry
                .file_name()
                .to_str()
                .filter(|n| n.len() == 16)
                .and_then(|n| i64::from_str_radix(n, 16).ok())
                .is_some_and(|id| referenced.contains(&id));
            if !keep && entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.sync_dir()?;
        }
        Ok(removed)
    }
}

/// A content file written for an upload that no committed row refers to yet. Dropping it
/// removes the file — when the upload breaks off, the request is dropped mid-way (the client
/// went away), or the write that adopted it is refused or fails to commit — unless it was
/// [disarmed](Self::disarm) because that write committed (or the file was removed already).
#[derive(Debug)]
pub(crate) struct StagedFile {
    id: i64,
    files: std::sync::Arc<Files>,
    keep: bool,
}

impl StagedFile {
    pub(crate) fn new(id: i64, files: std::sync::Arc<Files>) -> Self {
        Self {
            id,
            files,
            keep: false,
        }
    }

    /// The file's number.
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    /// Stops guarding the file: a committed row refers to it now, or it is removed already.
    pub(crate) fn disarm(mut self) {
        self.keep = true;
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let (id, files) = (self.id, self.files.clone());
        // Off the async runtime's threads when there is one.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || files.remove(id))),
            Err(_) => files.remove(id),
        }
    }
}

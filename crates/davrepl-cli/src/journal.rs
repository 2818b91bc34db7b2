//! The journal: what the folder and the server last agreed on, in `DIR/.davrepl/journal.db`.
//!
//! One row per synced file or folder: its path, repl-uid and resourcetag on the server, and the
//! size, modification time, inode and SHA-256 of the local copy at that moment. Plus the
//! collblob of the last complete sync and the URL the folder is bound to. A row is written
//! only after the server acknowledged the change it records (or after a download was renamed
//! into place), so a sync killed at any point leaves a journal that is behind, never ahead.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

/// What the journal knows about one path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Path below the synced folder, `/`-separated.
    pub path: String,
    /// A folder.
    pub is_dir: bool,
    /// The server's repl-uid for it (unknown for a folder created before its manifest row came).
    pub rid: Option<String>,
    /// The server's resourcetag of the version both sides hold.
    pub tag: Option<String>,
    /// The local file's stat when it was recorded.
    pub stat: Stat,
    /// SHA-256 of the content (hex), files only.
    pub sha256: Option<String>,
}

/// The part of a local file's metadata that says "unchanged" without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since 1970.
    pub mtime_ns: i64,
    /// Inode number (rename detection).
    pub ino: u64,
}

/// The journal database.
#[derive(Debug)]
pub struct Journal {
    db: Connection,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    path TEXT PRIMARY KEY,
    is_dir INTEGER NOT NULL,
    rid TEXT,
    tag TEXT,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    sha256 TEXT
);
CREATE INDEX IF NOT EXISTS entries_rid ON entries (rid);
";

impl Journal {
    /// Opens (creating) the journal at `file`.
    pub fn open(file: &Path) -> rusqlite::Result<Self> {
        let db = Connection::open(file)?;
        db.execute_batch(SCHEMA)?;
        Ok(Self { db })
    }

    /// A value of the `meta` table.
    pub fn meta(&self, key: &str) -> rusqlite::Result<Option<String>> {
        self.db
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    }

    /// Sets (or with `None` removes) a value of the `meta` table.
    pub fn set_meta(&self, key: &str, value: Option<&str>) -> rusqlite::Result<()> {
        match value {
            Some(v) => self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, v],
            )?,
            None => self.db.execute("DELETE FROM meta WHERE key = ?1", [key])?,
        };
        Ok(())
    }

    /// Every entry, by path.
    pub fn all(&self) -> rusqlite::Result<HashMap<String, Entry>> {
        let mut st = self
            .db
            .prepare("SELECT path, is_dir, rid, tag, size, mtime_ns, ino, sha256 FROM entries")?;
        let rows = st.query_map([], row_entry)?;
        rows.map(|e| e.map(|e| (e.path.clone(), e))).collect()
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> rusqlite::Result<Option<Entry>> {
        self.db
            .query_row(
                "SELECT path, is_dir, rid, tag, size, mtime_ns, ino, sha256 FROM entries
                 WHERE path = ?1",
                [path],
                row_entry,
            )
            .optional()
    }

    /// Records `e` (replacing what its path had, and any other path holding its repl-uid).
    pub fn put(&self, e: &Entry) -> rusqlite::Result<()> {
        let tx = self.db.unchecked_transaction()?;
        if let Some(rid) = &e.rid {
            tx.execute(
                "DELETE FROM entries WHERE rid = ?1 AND path <> ?2",
                params![rid, e.path],
            )?;
        }
        tx.execute(
            "INSERT INTO entries (path, is_dir, rid, tag, size, mtime_ns, ino, sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (path) DO UPDATE SET is_dir = excluded.is_dir, rid = excluded.rid,
               tag = excluded.tag, size = excluded.size, mtime_ns = excluded.mtime_ns,
               ino = excluded.ino, sha256 = excluded.sha256",
            params![
                e.path,
                e.is_dir,
                e.rid,
                e.tag,
                e.stat.size as i64,
                e.stat.mtime_ns,
                e.stat.ino as i64,
                e.sha256
            ],
        )?;
        tx.commit()
    }

    /// Forgets `path`.
    pub fn remove(&self, path: &str) -> rusqlite::Result<()> {
        self.db
            .execute("DELETE FROM entries WHERE path = ?1", [path])?;
        Ok(())
    }

    /// Forgets everything (a journal bound to another URL).
    pub fn clear(&self) -> rusqlite::Result<()> {
        self.db
            .execute_batch("DELETE FROM entries; DELETE FROM meta;")
    }
}

fn row_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        path: r.get(0)?,
        is_dir: r.get(1)?,
        rid: r.get(2)?,
        tag: r.get(3)?,
        stat: Stat {
            size: r.get::<_, i64>(4)? as u64,
            mtime_ns: r.get(5)?,
            ino: r.get::<_, i64>(6)? as u64,
        },
        sha256: r.get(7)?,
    })
}

//! Schema and migrations. The version lives in `PRAGMA user_version`.

use rusqlite::{Connection, Transaction, params};

use crate::FILE_MIN;
use crate::files::{Content, Files};

/// The schema version this build writes.
pub(crate) const CURRENT: i64 = 6;

const V1: &str = r"
CREATE TABLE store (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    store_id    BLOB NOT NULL,
    secret      BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    rid_counter INTEGER NOT NULL,
    blob_counter INTEGER NOT NULL,
    low_water   INTEGER NOT NULL
);
CREATE TABLE resources (
    path            TEXT PRIMARY KEY,
    parent          TEXT,
    rid             INTEGER NOT NULL UNIQUE,
    kind            INTEGER NOT NULL,
    version         INTEGER NOT NULL UNIQUE,
    content_version INTEGER NOT NULL,
    len             INTEGER NOT NULL,
    content_type    TEXT,
    created         INTEGER NOT NULL,
    modified        INTEGER NOT NULL,
    blob            INTEGER
) WITHOUT ROWID;
CREATE INDEX resources_parent_path ON resources(parent, path);
CREATE INDEX resources_parent_version ON resources(parent, version);
CREATE TABLE props (
    rid   INTEGER NOT NULL,
    ns    TEXT NOT NULL,
    local TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (rid, ns, local)
) WITHOUT ROWID;
CREATE TABLE tombstones (
    seq    INTEGER PRIMARY KEY,
    rid    INTEGER NOT NULL,
    path   TEXT NOT NULL,
    parent TEXT,
    kind   INTEGER NOT NULL,
    at     INTEGER NOT NULL
);
CREATE INDEX tombstones_parent_seq ON tombstones(parent, seq);
CREATE INDEX tombstones_at ON tombstones(at);
CREATE TABLE chunks (
    blob  INTEGER NOT NULL,
    n     INTEGER NOT NULL,
    data  BLOB NOT NULL,
    PRIMARY KEY (blob, n)
) WITHOUT ROWID;
";

const V2: &str = r"
ALTER TABLE resources RENAME TO davrepl_resources;
ALTER TABLE props RENAME TO davrepl_props;
ALTER TABLE tombstones RENAME TO davrepl_tombstones;
ALTER TABLE chunks RENAME TO davrepl_chunks;
";

const V3: &str = r"
CREATE TABLE davrepl_locks (
    token     TEXT PRIMARY KEY,
    root      TEXT NOT NULL,
    deep      INTEGER NOT NULL,
    exclusive INTEGER NOT NULL,
    owner     TEXT,
    principal TEXT,
    timeout   INTEGER NOT NULL,
    expires   INTEGER NOT NULL
);
CREATE INDEX davrepl_locks_root ON davrepl_locks(root);
";

/// Version 4: content digests (SHA-1, MD5, SHA-256 concatenated) of every item written since.
/// Also the bytes of content the store holds, for quotas.
const V4: &str = r"
ALTER TABLE davrepl_resources ADD COLUMN digests BLOB;
ALTER TABLE store ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE store SET bytes = (SELECT coalesce(sum(len), 0) FROM davrepl_resources);
";

/// Version 5: Exchange-style subscriptions (named cursors into the log).
const V5: &str = r"
CREATE TABLE davrepl_subscriptions (
    id        INTEGER PRIMARY KEY,
    path      TEXT NOT NULL,
    members   INTEGER NOT NULL,
    types     INTEGER NOT NULL,
    principal TEXT,
    lifetime  INTEGER NOT NULL,
    expires   INTEGER NOT NULL,
    cursor    INTEGER NOT NULL,
    acked     INTEGER NOT NULL
);
";

/// Version 6: short content as one row of `davrepl_content` (a rowid table: looking a row up
/// never reads another row's bytes, as it did in the chunk table's key-ordered pages), long
/// content in content files (`files.rs`). A resource's `blob` is the row id, or the file
/// number negated. [`move_content`] carries the chunks over.
const V6: &str = r"
CREATE TABLE davrepl_content (
    id   INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
";

/// Moves every blob of the version 5 chunk table into a `davrepl_content` row or a content
/// file (written and synced before the migration commits; a crash before leaves files the
/// next start sweeps), points its resource at it, and drops the chunk table.
fn move_content(tx: &Transaction<'_>, files: &Files) -> Result<(), String> {
    let e = |e: rusqlite::Error| e.to_string();
    let blobs: Vec<(String, i64, i64)> = tx
        .prepare("SELECT path, blob, len FROM davrepl_resources WHERE blob IS NOT NULL")
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(e)?;
    let mut wrote_files = false;
    for (path, blob, len) in blobs {
        let mut chunks = tx
            .prepare_cached("SELECT data FROM davrepl_chunks WHERE blob = ?1 ORDER BY n")
            .map_err(e)?;
        let mut rows = chunks.query([blob]).map_err(e)?;
        let content = if (len as u64) < FILE_MIN {
            let mut data = Vec::with_capacity(len as usize);
            while let Some(r) = rows.next().map_err(e)? {
                data.extend_from_slice(
                    r.get_ref(0)
                        .map_err(e)?
                        .as_blob()
                        .map_err(|x| x.to_string())?,
                );
            }
            tx.execute(
                "INSERT INTO davrepl_content (id, data) VALUES (?1, ?2)",
                params![blob, data],
            )
            .map_err(e)?;
            Content::Row(blob)
        } else {
            let (id, mut file) = files.create().map_err(|x| x.to_string())?;
            while let Some(r) = rows.next().map_err(e)? {
                let piece = r
                    .get_ref(0)
                    .map_err(e)?
                    .as_blob()
                    .map_err(|x| x.to_string())?;
                std::io::Write::write_all(&mut file, piece).map_err(|x| x.to_string())?;
            }
            file.sync_data().map_err(|x| x.to_string())?;
            wrote_files = true;
            Content::File(id)
        };
        drop(rows);
        tx.execute(
            "UPDATE davrepl_resources SET blob = ?1 WHERE path = ?2",
            params![content.column(), path],
        )
        .map_err(e)?;
    }
    if wrote_files {
        files.sync_dir().map_err(|x| x.to_string())?;
    }
    tx.execute_batch("DROP TABLE davrepl_chunks").map_err(e)
}

/// Brings the database to [`CURRENT`], creating it if empty. Refuses a database written by a
/// newer version, and anything that is not a davrepl database.
pub(crate) fn migrate(
    conn: &mut Connection,
    store_id: [u8; 16],
    secret: [u8; 32],
    files: &Files,
) -> Result<(), String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if version > CURRENT {
        return Err(format!(
            "the database has schema version {version}, newer than this build's {CURRENT}; \
             upgrade davrepl instead of opening it with an older version"
        ));
    }
    if version == CURRENT {
        return Ok(());
    }
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    if version == 0 && tables > 0 {
        return Err(
            "the file is an SQLite database but not a davrepl store (schema version 0 with tables)"
                .into(),
        );
    }
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    // Each step moves one version forward; all of them run in one transaction, so a crash
    // mid-migration leaves the old version intact.
    let mut v = version;
    while v < CURRENT {
        match v {
            0 => {
                tx.execute_batch(V1).map_err(|e| e.to_string())?;
                let now = crate::now_nanos();
                tx.execute(
                    "INSERT INTO store (id, store_id, secret, seq, rid_counter, blob_counter, low_water) VALUES (1, ?1, ?2, 0, 0, 0, 0)",
                    params![&store_id[..], &secret[..]],
                )
                .map_err(|e| e.to_string())?;
                tx.execute(
                    "INSERT INTO resources (path, parent, rid, kind, version, content_version, len, content_type, created, modified, blob)
                     VALUES ('/', NULL, 0, 0, 0, 0, 0, NULL, ?1, ?1, NULL)",
                    params![now],
                )
                .map_err(|e| e.to_string())?;
            }
            // Version 2: the tables the SQL backends share carry PostgreSQL's names, so the
            // queries in `davrepl_store::engine::sql` serve both.
            1 => tx.execute_batch(V2).map_err(|e| e.to_string())?,
            // Version 3: write locks (WebDAV class 2), state beside the content.
            2 => tx.execute_batch(V3).map_err(|e| e.to_string())?,
            3 => tx.execute_batch(V4).map_err(|e| e.to_string())?,
            4 => tx.execute_batch(V5).map_err(|e| e.to_string())?,
            5 => {
                tx.execute_batch(V6).map_err(|e| e.to_string())?;
                move_content(&tx, files)?;
            }
            other => return Err(format!("no migration from schema version {other}")),
        }
        v += 1;
    }
    tx.pragma_update(None, "user_version", CURRENT)
        .map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())
}

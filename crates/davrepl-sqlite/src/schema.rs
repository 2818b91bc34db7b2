//! Schema and migrations. The version lives in `PRAGMA user_version`.

use rusqlite::{Connection, params};

/// The schema version this build writes.
pub(crate) const CURRENT: i64 = 5;

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

/// Brings the database to [`CURRENT`], creating it if empty. Refuses a database written by a
/// newer version, and anything that is not a davrepl database.
pub(crate) fn migrate(
    conn: &mut Connection,
    store_id: [u8; 16],
    secret: [u8; 32],
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
            other => return Err(format!("no migration from schema version {other}")),
        }
        v += 1;
    }
    tx.pragma_update(None, "user_version", CURRENT)
        .map_err(|e| e.to_string())?;
    tx.commit().map_err(|e| e.to_string())
}

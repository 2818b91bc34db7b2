//! Schema and migrations. The version lives in `davrepl_store.schema_version`; migrations run
//! under a transaction-scoped advisory lock, so nodes starting together migrate once.

use tokio_postgres::Client;

/// The schema version this build writes.
pub(crate) const CURRENT: i64 = 6;

/// Key of the advisory lock taken while migrating ("davrepl" in ASCII).
const LOCK_KEY: i64 = 0x0064_6176_7265_706c;

/// Path columns use the "C" collation: ordering and `>=`/`<` ranges are by bytes, which is
/// what the descendant-range queries rely on, whatever the database's default locale.
const V1: &str = r#"
CREATE TABLE davrepl_store (
    id             BIGINT PRIMARY KEY CHECK (id = 1),
    schema_version BIGINT NOT NULL,
    store_id       BYTEA NOT NULL,
    secret         BYTEA NOT NULL,
    seq            BIGINT NOT NULL,
    rid_counter    BIGINT NOT NULL,
    low_water      BIGINT NOT NULL
);
CREATE SEQUENCE davrepl_blob_ids;
CREATE TABLE davrepl_resources (
    path            TEXT COLLATE "C" PRIMARY KEY,
    parent          TEXT COLLATE "C",
    rid             BIGINT NOT NULL UNIQUE,
    kind            BIGINT NOT NULL,
    version         BIGINT NOT NULL UNIQUE,
    content_version BIGINT NOT NULL,
    len             BIGINT NOT NULL,
    content_type    TEXT,
    created         BIGINT NOT NULL,
    modified        BIGINT NOT NULL,
    blob            BIGINT
);
CREATE INDEX davrepl_resources_parent_path ON davrepl_resources (parent, path);
CREATE INDEX davrepl_resources_parent_version ON davrepl_resources (parent, version);
CREATE TABLE davrepl_props (
    rid   BIGINT NOT NULL,
    ns    TEXT NOT NULL,
    local TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (rid, ns, local)
);
CREATE TABLE davrepl_tombstones (
    seq    BIGINT PRIMARY KEY,
    rid    BIGINT NOT NULL,
    path   TEXT COLLATE "C" NOT NULL,
    parent TEXT COLLATE "C",
    kind   BIGINT NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX davrepl_tombstones_parent_seq ON davrepl_tombstones (parent, seq);
CREATE INDEX davrepl_tombstones_path_seq ON davrepl_tombstones (path, seq);
CREATE INDEX davrepl_tombstones_at ON davrepl_tombstones (at);
CREATE TABLE davrepl_chunks (
    blob BIGINT NOT NULL,
    n    BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (blob, n)
);
CREATE TABLE davrepl_uploads (
    blob    BIGINT PRIMARY KEY,
    started BIGINT NOT NULL
);
"#;

/// Version 2: write locks (WebDAV class 2), state beside the content.
const V2: &str = r#"
CREATE TABLE davrepl_locks (
    token     TEXT PRIMARY KEY,
    root      TEXT COLLATE "C" NOT NULL,
    deep      BIGINT NOT NULL,
    exclusive BIGINT NOT NULL,
    owner     TEXT,
    principal TEXT,
    timeout   BIGINT NOT NULL,
    expires   BIGINT NOT NULL
);
CREATE INDEX davrepl_locks_root ON davrepl_locks (root);
ALTER TABLE davrepl_store ADD COLUMN locks BIGINT NOT NULL DEFAULT 0;
"#;

/// Version 3: content digests (SHA-1, MD5, SHA-256 concatenated) of every item written since.
/// Also the bytes of content the store holds, for quotas.
const V3: &str = "ALTER TABLE davrepl_resources ADD COLUMN digests BYTEA;
ALTER TABLE davrepl_store ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;
UPDATE davrepl_store SET bytes = (SELECT coalesce(sum(len), 0) FROM davrepl_resources);";

/// Version 4: Exchange-style subscriptions (named cursors into the log), shared by all nodes.
const V4: &str = r#"
CREATE TABLE davrepl_subscriptions (
    id        BIGINT PRIMARY KEY,
    path      TEXT COLLATE "C" NOT NULL,
    members   BIGINT NOT NULL,
    types     BIGINT NOT NULL,
    principal TEXT,
    lifetime  BIGINT NOT NULL,
    expires   BIGINT NOT NULL,
    cursor    BIGINT NOT NULL,
    acked     BIGINT NOT NULL
);
"#;

/// Version 5: change numbers come from transaction ids (`lib.rs`, `SPAN_BITS`) above `base`;
/// the `seq` and `rid_counter` columns keep the last numbers handed out before.
const V5: &str = "ALTER TABLE davrepl_store ADD COLUMN base BIGINT NOT NULL DEFAULT 0;";

/// Version 6: writes no longer lock the counters row. Each adds the bytes it changes to one of
/// a few usage slots (the quota reads their sum with the row's `bytes`), and a write that
/// changes a collection's membership counts it in one of the collection's touch slots instead
/// of updating the collection's row. The rows move to `davrepl_resource_rows`; what the
/// queries read, `davrepl_resources`, is a view of them whose `content_version` of a
/// collection adds its touch counts (see `TOUCH_SLOTS` in `view.rs`).
const V6: &str = r#"
CREATE TABLE davrepl_usage (slot BIGINT PRIMARY KEY, bytes BIGINT NOT NULL);
CREATE TABLE davrepl_touches (
    rid  BIGINT NOT NULL,
    slot BIGINT NOT NULL,
    n    BIGINT NOT NULL,
    PRIMARY KEY (rid, slot)
);
ALTER TABLE davrepl_resources RENAME TO davrepl_resource_rows;
CREATE VIEW davrepl_resources AS
    SELECT r.path, r.parent, r.rid, r.kind, r.version,
        r.content_version + CASE WHEN r.kind = 0 THEN COALESCE(
            (SELECT sum(t.n)::int8 FROM davrepl_touches t WHERE t.rid = r.rid), 0) ELSE 0 END
            AS content_version,
        r.len, r.content_type, r.created, r.modified, r.blob, r.digests
    FROM davrepl_resource_rows r;
"#;

/// Raises `base` (never lowers it) so that every number this transaction's successors hand out
/// lies above every number in the tables. A no-op in normal operation; after a backup was
/// restored into another cluster, whose transaction ids may be lower than the old one's, it
/// keeps new numbers above the restored ones.
pub(crate) const RAISE_BASE: &str =
    "UPDATE davrepl_store SET base = GREATEST(base, 1 - (pg_current_xact_id()::text::int8 << 22)
    + GREATEST(seq, rid_counter,
        (SELECT max(version) FROM davrepl_resources), (SELECT max(rid) FROM davrepl_resources),
        (SELECT max(seq) FROM davrepl_tombstones), (SELECT max(rid) FROM davrepl_tombstones)))
    WHERE id = 1";

/// Brings the database to [`CURRENT`], creating the tables if absent. Refuses a database
/// written by a newer version.
pub(crate) async fn migrate(
    client: &mut Client,
    store_id: [u8; 16],
    secret: [u8; 32],
) -> Result<(), String> {
    let e = |e: tokio_postgres::Error| e.to_string();
    let tx = client.transaction().await.map_err(e)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(e)?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('davrepl_store') IS NOT NULL", &[])
        .await
        .map_err(e)?
        .try_get(0)
        .map_err(e)?;
    let version: i64 = if exists {
        tx.query_one("SELECT schema_version FROM davrepl_store WHERE id = 1", &[])
            .await
            .map_err(e)?
            .try_get(0)
            .map_err(e)?
    } else {
        0
    };
    if version > CURRENT {
        return Err(format!(
            "the database has davrepl schema version {version}, newer than this build's \
             {CURRENT}; upgrade every node instead of running an older one against it"
        ));
    }
    if version == CURRENT {
        tx.execute(RAISE_BASE, &[]).await.map_err(e)?;
        return tx.commit().await.map_err(e);
    }
    // Each step moves one version forward, all inside this transaction: a failure leaves
    // the old version intact (PostgreSQL DDL is transactional).
    let mut v = version;
    while v < CURRENT {
        match v {
            0 => {
                tx.batch_execute(V1).await.map_err(e)?;
                let now = crate::now_nanos();
                tx.execute(
                    "INSERT INTO davrepl_store (id, schema_version, store_id, secret, seq, rid_counter, low_water)
                     VALUES (1, 0, $1, $2, 0, 0, 0)",
                    &[&&store_id[..], &&secret[..]],
                )
                .await
                .map_err(e)?;
                tx.execute(
                    "INSERT INTO davrepl_resources (path, parent, rid, kind, version, content_version, len, content_type, created, modified, blob)
                     VALUES ('/', NULL, 0, 0, 0, 0, 0, NULL, $1, $1, NULL)",
                    &[&now],
                )
                .await
                .map_err(e)?;
            }
            1 => tx.batch_execute(V2).await.map_err(e)?,
            2 => tx.batch_execute(V3).await.map_err(e)?,
            3 => tx.batch_execute(V4).await.map_err(e)?,
            4 => tx.batch_execute(V5).await.map_err(e)?,
            5 => tx.batch_execute(V6).await.map_err(e)?,
            other => return Err(format!("no migration from schema version {other}")),
        }
        v += 1;
    }
    tx.execute(
        "UPDATE davrepl_store SET schema_version = $1 WHERE id = 1",
        &[&CURRENT],
    )
    .await
    .map_err(e)?;
    tx.execute(RAISE_BASE, &[]).await.map_err(e)?;
    tx.commit().await.map_err(e)
}

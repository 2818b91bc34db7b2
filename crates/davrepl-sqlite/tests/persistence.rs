//! What only a persistent store must do: survive reopening, refuse foreign or newer files,
//! clean up after an interrupted upload.

use davrepl_sqlite::SqliteStore;
use davrepl_store::{ChangesQuery, Depth, PutOptions, ReplStore, ResourcePath};
use davrepl_testkit::{body, path, read_string};

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested/dir/store.db");
    let (id, secret, meta, mark) = {
        let s = SqliteStore::open(&file).await.unwrap();
        s.create_collection(&path("/c"), Default::default())
            .await
            .unwrap();
        let m = s
            .put(&path("/c/x"), body("hello"), PutOptions::default())
            .await
            .unwrap()
            .meta;
        s.delete(&path("/c/x"), Default::default()).await.unwrap();
        let m2 = s
            .put(&path("/c/y"), body("world"), PutOptions::default())
            .await
            .unwrap()
            .meta;
        assert_ne!(m.rid, m2.rid);
        (
            s.store_id(),
            s.secret().await.unwrap(),
            m2,
            s.watermark().await.unwrap(),
        )
    };
    let s = SqliteStore::open(&file).await.unwrap();
    assert_eq!(s.store_id(), id);
    assert_eq!(s.secret().await.unwrap(), secret);
    assert_eq!(s.head(&path("/c/y")).await.unwrap(), meta);
    assert_eq!(read_string(&s, "/c/y").await, "world");
    assert_eq!(s.watermark().await.unwrap(), mark);
    let page = s
        .changes(ChangesQuery::new(
            ResourcePath::root(),
            Depth::Infinity,
            0,
            100,
        ))
        .await
        .unwrap();
    assert!(
        page.changes
            .iter()
            .any(|c| matches!(c.kind, davrepl_store::ChangeKind::Removed { .. }))
    );
    // New resources never reuse repl-uids or sequence numbers.
    let n = s
        .put(&path("/c/z"), body("!"), PutOptions::default())
        .await
        .unwrap()
        .meta;
    assert!(n.version > mark && n.rid.counter() > meta.rid.counter());
}

#[tokio::test]
async fn refuses_newer_and_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let newer = dir.path().join("newer.db");
    drop(SqliteStore::open(&newer).await.unwrap());
    let c = rusqlite::Connection::open(&newer).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let e = SqliteStore::open(&newer).await.unwrap_err();
    assert!(e.to_string().contains("newer"), "{e}");

    let foreign = dir.path().join("foreign.db");
    let c = rusqlite::Connection::open(&foreign).unwrap();
    c.execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(c);
    let e = SqliteStore::open(&foreign).await.unwrap_err();
    assert!(e.to_string().contains("not a davrepl store"), "{e}");
    let c = rusqlite::Connection::open(&foreign).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "a refused file is left untouched");
}

#[tokio::test]
async fn interrupted_uploads_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.db");
    let s = SqliteStore::open(&file).await.unwrap();
    let big: Vec<Result<bytes::Bytes, davrepl_store::StoreError>> = vec![
        Ok(bytes::Bytes::from(vec![7u8; 600_000])),
        Err(davrepl_store::StoreError::new(
            davrepl_store::ErrorKind::BodyAborted,
            "gone",
        )),
    ];
    let r = s
        .put(
            &path("/x"),
            Box::pin(futures_util::stream::iter(big)),
            PutOptions::default(),
        )
        .await;
    assert!(r.is_err());
    drop(s);
    let c = rusqlite::Connection::open(&file).unwrap();
    let chunks: i64 = c
        .query_row("SELECT count(*) FROM davrepl_chunks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(chunks, 0);
}

/// The database holds the collblob secret and every user's content: only its owner may read it,
/// and its WAL and shared-memory files too.
#[cfg(unix)]
#[tokio::test]
async fn database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.db");
    let s = SqliteStore::open(&file).await.unwrap();
    s.put(&path("/x"), body("secret"), PutOptions::default())
        .await
        .unwrap();
    let mut checked = 0;
    for ext in ["", "-wal", "-shm"] {
        let f = dir.path().join(format!("store.db{ext}"));
        if let Ok(m) = std::fs::metadata(&f) {
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", f.display());
            checked += 1;
        }
    }
    assert!(checked >= 2, "the database and its WAL exist while open");
}

/// A store written by schema version 1 (tables without the `davrepl_` prefix) opens with all
/// its content, tombstones and counters, and is upgraded in place.
#[tokio::test]
async fn version_1_files_are_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.db");
    let (meta, mark) = {
        let s = SqliteStore::open(&file).await.unwrap();
        s.put(&path("/gone"), body("x"), PutOptions::default())
            .await
            .unwrap();
        s.delete(&path("/gone"), Default::default()).await.unwrap();
        let m = s
            .put(&path("/kept"), body("hello"), PutOptions::default())
            .await
            .unwrap()
            .meta;
        (m, s.watermark().await.unwrap())
    };
    // Turn the file back into what version 1 wrote.
    let c = rusqlite::Connection::open(&file).unwrap();
    c.execute_batch(
        "ALTER TABLE davrepl_resources DROP COLUMN digests;
         ALTER TABLE store DROP COLUMN bytes;
         ALTER TABLE davrepl_resources RENAME TO resources;
         ALTER TABLE davrepl_props RENAME TO props;
         ALTER TABLE davrepl_tombstones RENAME TO tombstones;
         ALTER TABLE davrepl_chunks RENAME TO chunks;
         DROP TABLE davrepl_locks;
         DROP TABLE davrepl_subscriptions;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(c);
    let s = SqliteStore::open(&file).await.unwrap();
    // Version 1 kept no digests; everything else is as it was, and the byte count is rebuilt.
    let mut old = meta;
    old.digests = None;
    assert_eq!(s.head(&path("/kept")).await.unwrap(), old);
    assert_eq!(s.usage().await.unwrap(), Some(5));
    assert_eq!(read_string(&s, "/kept").await, "hello");
    assert_eq!(s.watermark().await.unwrap(), mark);
    let page = s
        .changes(ChangesQuery::new(ResourcePath::root(), Depth::One, 0, 10))
        .await
        .unwrap();
    assert_eq!(page.changes.len(), 2, "the tombstone and the kept item");
    drop(s);
    let c = rusqlite::Connection::open(&file).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 5);
}

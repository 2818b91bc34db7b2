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
    assert_eq!(
        files_in(s.content_dir()),
        0,
        "the cut-off upload's file is gone"
    );
    drop(s);
    let c = rusqlite::Connection::open(&file).unwrap();
    let rows: i64 = c
        .query_row("SELECT count(*) FROM davrepl_content", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn bytes_body(data: &[u8]) -> davrepl_store::ByteStream {
    // Several frames, as a network body arrives.
    let frames: Vec<Result<bytes::Bytes, davrepl_store::StoreError>> = data
        .chunks(100_000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(frames))
}

async fn read_bytes(s: &SqliteStore, p: &str) -> Vec<u8> {
    use futures_util::StreamExt;
    let (_, mut stream) = s.read(&path(p), Default::default()).await.unwrap();
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece.unwrap());
    }
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Long content lives in content files: written once, linked by COPY, removed once nothing
/// refers to it, and read back whole (ranges too) while it is replaced; with the content cache
/// (the default) and without it.
#[tokio::test]
async fn long_content_lives_in_files() {
    long_content_with(davrepl_sqlite::SqliteOptions::default()).await;
}

#[tokio::test]
async fn long_content_lives_in_files_without_the_cache() {
    let mut opts = davrepl_sqlite::SqliteOptions::default();
    opts.content_cache = 0;
    long_content_with(opts).await;
}

async fn long_content_with(opts: davrepl_sqlite::SqliteOptions) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_with(dir.path().join("store.db"), opts)
        .await
        .unwrap();
    let files = s.content_dir().to_path_buf();
    let small = pattern(davrepl_sqlite::FILE_MIN as usize - 1, 1);
    let big = pattern(700_000, 2);
    s.put(&path("/small"), bytes_body(&small), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(files_in(&files), 0, "short content stays in the database");
    let m = s
        .put(&path("/big"), bytes_body(&big), PutOptions::default())
        .await
        .unwrap()
        .meta;
    assert_eq!(m.len, 700_000);
    assert_eq!(files_in(&files), 1);
    assert_eq!(read_bytes(&s, "/small").await, small);
    assert_eq!(read_bytes(&s, "/big").await, big);
    assert_eq!(
        read_bytes(&s, "/big").await,
        big,
        "read again (from the cache if on)"
    );

    // A range across piece boundaries.
    let mut opts = davrepl_store::GetOptions::default();
    opts.range = Some(davrepl_store::ByteRange {
        start: 262_000,
        end: 530_000,
    });
    let (_, mut stream) = s.read(&path("/big"), opts).await.unwrap();
    let mut got = Vec::new();
    while let Some(piece) = futures_util::StreamExt::next(&mut stream).await {
        got.extend_from_slice(&piece.unwrap());
    }
    assert_eq!(got, big[262_000..=530_000]);

    // COPY links a second name; the copy outlives the original.
    s.copy(&path("/big"), &path("/copy"), Default::default())
        .await
        .unwrap();
    assert_eq!(files_in(&files), 2);
    s.delete(&path("/big"), Default::default()).await.unwrap();
    assert_eq!(files_in(&files), 1, "the original's name is removed");
    assert_eq!(read_bytes(&s, "/copy").await, big);

    // A stream that has started keeps its version while the item is replaced.
    let (_, mut stream) = s.read(&path("/copy"), Default::default()).await.unwrap();
    let first = futures_util::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    let other = pattern(400_000, 3);
    s.put(&path("/copy"), bytes_body(&other), PutOptions::default())
        .await
        .unwrap();
    let mut old = first.to_vec();
    while let Some(piece) = futures_util::StreamExt::next(&mut stream).await {
        old.extend_from_slice(&piece.unwrap());
    }
    assert_eq!(old, big, "one version, whole");
    assert_eq!(read_bytes(&s, "/copy").await, other);
    assert_eq!(
        read_bytes(&s, "/copy").await,
        other,
        "the new version, never the old"
    );
    assert_eq!(files_in(&files), 1, "the replaced file's name is removed");

    // Replaced by short content: no file left.
    s.put(&path("/copy"), body("tiny"), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(files_in(&files), 0);
    assert_eq!(s.usage().await.unwrap(), Some(small.len() as u64 + 4));
}

/// A refused write (its condition fails) leaves no content file behind, and files nothing
/// refers to are removed when the store opens.
#[tokio::test]
async fn refused_and_orphaned_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.db");
    let s = SqliteStore::open(&file).await.unwrap();
    let files = s.content_dir().to_path_buf();
    let m = s
        .put(
            &path("/x"),
            bytes_body(&pattern(300_000, 4)),
            PutOptions::default(),
        )
        .await
        .unwrap()
        .meta;
    let mut opts = PutOptions::default();
    opts.condition = davrepl_store::Condition::create_only();
    let e = s
        .put(&path("/x"), bytes_body(&pattern(300_000, 5)), opts)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), davrepl_store::ErrorKind::PreconditionFailed);
    assert_eq!(files_in(&files), 1);
    assert_eq!(read_bytes(&s, "/x").await, pattern(300_000, 4));
    drop(s);
    // What a crash mid-upload leaves: a file no row names, and a stray temporary name.
    std::fs::write(files.join("00000000000000ab"), b"half an upload").unwrap();
    std::fs::write(files.join("not-content"), b"?").unwrap();
    let s = SqliteStore::open(&file).await.unwrap();
    assert_eq!(files_in(&files), 1);
    assert_eq!(s.head(&path("/x")).await.unwrap(), m);
    assert_eq!(read_bytes(&s, "/x").await, pattern(300_000, 4));
}

/// A store written by schema version 5 (content in 256 KiB chunks of a `davrepl_chunks`
/// table) is upgraded: short content becomes a row, long content a file, every byte kept.
#[tokio::test]
async fn version_5_chunks_are_moved_out() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.db");
    let big = pattern(600_000, 6);
    let (small_meta, big_meta, mark) = {
        let s = SqliteStore::open(&file).await.unwrap();
        let a = s
            .put(&path("/small"), body("hello"), PutOptions::default())
            .await
            .unwrap()
            .meta;
        let b = s
            .put(&path("/big"), bytes_body(&big), PutOptions::default())
            .await
            .unwrap()
            .meta;
        (a, b, s.watermark().await.unwrap())
    };
    let content_dir = dir.path().join("store.db.content");
    // Turn the file back into what version 5 wrote.
    let c = rusqlite::Connection::open(&file).unwrap();
    c.execute_batch(
        "CREATE TABLE davrepl_chunks (blob INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL,
             PRIMARY KEY (blob, n)) WITHOUT ROWID;
         INSERT INTO davrepl_chunks SELECT id, 0, data FROM davrepl_content;
         DROP TABLE davrepl_content;",
    )
    .unwrap();
    let file_id: i64 = c
        .query_row(
            "SELECT -blob FROM davrepl_resources WHERE path = '/big'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let name = content_dir.join(format!("{file_id:016x}"));
    let data = std::fs::read(&name).unwrap();
    for (n, piece) in data.chunks(256 * 1024).enumerate() {
        c.execute(
            "INSERT INTO davrepl_chunks (blob, n, data) VALUES (1000, ?1, ?2)",
            rusqlite::params![n as i64, piece],
        )
        .unwrap();
    }
    c.execute_batch(
        "UPDATE davrepl_resources SET blob = 1000 WHERE path = '/big';
         PRAGMA user_version = 5;",
    )
    .unwrap();
    drop(c);
    std::fs::remove_file(&name).unwrap();

    let s = SqliteStore::open(&file).await.unwrap();
    assert_eq!(s.head(&path("/small")).await.unwrap(), small_meta);
    assert_eq!(s.head(&path("/big")).await.unwrap(), big_meta);
    assert_eq!(read_string(&s, "/small").await, "hello");
    assert_eq!(read_bytes(&s, "/big").await, big);
    assert_eq!(s.watermark().await.unwrap(), mark);
    assert_eq!(files_in(&content_dir), 1, "the long item became a file");
    drop(s);
    let c = rusqlite::Connection::open(&file).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 6);
    let chunk_tables: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'davrepl_chunks'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(chunk_tables, 0);
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
         CREATE TABLE chunks (blob INTEGER NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL,
             PRIMARY KEY (blob, n)) WITHOUT ROWID;
         INSERT INTO chunks SELECT id, 0, data FROM davrepl_content;
         DROP TABLE davrepl_content;
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
    assert_eq!(v, 6);
}

/// A client that goes away mid-upload (the request future is dropped while the body is still
/// arriving) leaves no content file behind.
#[tokio::test]
async fn dropped_uploads_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("store.db"))
        .await
        .unwrap();
    let first: Result<bytes::Bytes, davrepl_store::StoreError> =
        Ok(bytes::Bytes::from(pattern(600_000, 7)));
    let stalled = futures_util::StreamExt::chain(
        futures_util::stream::iter(vec![first]),
        futures_util::stream::pending(),
    );
    let target = path("/x");
    let put = s.put(&target, Box::pin(stalled), PutOptions::default());
    let cut = tokio::time::timeout(std::time::Duration::from_millis(300), put).await;
    assert!(cut.is_err(), "the upload was still waiting for its body");
    // The file is removed on the blocking pool; give it a moment.
    for _ in 0..100 {
        if files_in(s.content_dir()) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(files_in(s.content_dir()), 0);
    assert!(s.head(&path("/x")).await.is_err());
}

/// One open store per database: a second open while the first is alive is refused (its sweep
/// of unreferenced content files would remove the first one's uploads in flight, and its
/// writes would bypass the first one's hot-row cache); once the first is dropped, it opens.
#[tokio::test]
async fn a_database_is_open_in_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.db");
    let first = SqliteStore::open(&file).await.unwrap();
    davrepl_testkit::put(&first, "/a", "one").await;
    let started = std::time::Instant::now();
    let e = SqliteStore::open(&file).await.unwrap_err();
    assert_eq!(e.kind(), davrepl_store::ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains("in use"), "{e}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(4));
    assert_eq!(
        read_string(&first, "/a").await,
        "one",
        "the first store goes on"
    );
    drop(first);
    let second = SqliteStore::open(&file).await.unwrap();
    assert_eq!(read_string(&second, "/a").await, "one");
}

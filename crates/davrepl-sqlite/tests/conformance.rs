//! SqliteStore against the whole conformance suite, each case on a fresh database file.

async fn fresh() -> davrepl_sqlite::SqliteStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    // Keep the directory for the life of the test process; it is small.
    std::mem::forget(dir);
    davrepl_sqlite::SqliteStore::open(path).await.expect("open")
}

davrepl_testkit::conformance!(@future fresh());

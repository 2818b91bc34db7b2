//! SqliteStore against the whole conformance suite, each case on a fresh database file.

async fn fresh() -> davrepl_sqlite::SqliteStore {
    // Under cargo's per-target temp dir: the store outlives this function (the testkit owns
    // it), so the directory is kept and goes with `cargo clean`, not into /tmp.
    let dir = tempfile::Builder::new()
        .prefix("conformance-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    let path = dir.join("store.db");
    davrepl_sqlite::SqliteStore::open(path).await.expect("open")
}

davrepl_testkit::conformance!(@future fresh());

//! The example backend passes the whole conformance suite, each case on a fresh directory.

fn fresh() -> example_custom_store::NotesStore {
    let dir = tempfile::Builder::new()
        .prefix("notes-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    example_custom_store::NotesStore::new(dir).expect("store")
}

davrepl_testkit::conformance!(fresh());

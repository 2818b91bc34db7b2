//! The custom store passes the whole conformance suite.
davrepl_testkit::conformance!(example_custom_store::NotesStore::new());

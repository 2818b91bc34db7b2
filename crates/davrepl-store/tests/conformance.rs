//! MemStore against the whole conformance suite.
davrepl_testkit::conformance!(davrepl_store::MemStore::new());

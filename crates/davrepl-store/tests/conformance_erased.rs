//! The forwarding impls and the type-erased store pass the whole contract too.

mod arc {
    davrepl_testkit::conformance!(std::sync::Arc::new(davrepl_store::MemStore::new()));
}

mod dyn_store {
    davrepl_testkit::conformance!(davrepl_store::DynStore::new(davrepl_store::MemStore::new()));
}

//! PgStore against the whole conformance suite, each case on a fresh database of a throwaway
//! cluster started by this test process.

use davrepl_postgres::throwaway::Cluster;

async fn fresh() -> Option<davrepl_postgres::PgStore> {
    let cluster = Cluster::shared()?;
    Some(cluster.fresh_store().await)
}

davrepl_testkit::conformance!(@maybe fresh());

/// The same cases with the prefetch off: every row a write needs is fetched when the engine
/// first asks for it, so each case exercises the view's miss-and-rerun path.
mod fetched_on_demand {
    async fn fresh() -> Option<davrepl_postgres::PgStore> {
        let cluster = super::Cluster::shared()?;
        let mut opts = davrepl_postgres::PgOptions::default();
        opts.prefetch = false;
        Some(cluster.fresh_store_with(opts).await)
    }

    davrepl_testkit::conformance!(@maybe fresh());
}

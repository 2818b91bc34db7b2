//! PgStore against the whole conformance suite, each case on a fresh database of a throwaway
//! cluster started by this test process.

use davrepl_postgres::throwaway::Cluster;

async fn fresh() -> Option<davrepl_postgres::PgStore> {
    let cluster = Cluster::shared()?;
    Some(cluster.fresh_store().await)
}

davrepl_testkit::conformance!(@maybe fresh());

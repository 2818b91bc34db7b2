//! Starts a throwaway PostgreSQL cluster, prints the URL of a fresh database on stdout and keeps
//! the cluster until stdin closes; then removes it. For scripts that need a real PostgreSQL
//! for a while (the litmus run of `.ci/run`):
//!
//! ```text
//! cargo run --release -p davrepl-postgres --example throwaway-cluster [--durable] < fifo > url
//! ```
//!
//! `--durable` turns `fsync` and synchronous commit on (benchmarks want them; tests do not).

use std::io::Read;

use davrepl_postgres::throwaway::{Cluster, ClusterOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let mut opts = ClusterOptions::default();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--durable" => opts.durable = true,
            other => return Err(format!("unknown argument {other:?} (only --durable)")),
        }
    }
    let Some(cluster) = Cluster::start(&opts)? else {
        return Err("PostgreSQL binaries not found (the message above says why)".into());
    };
    let url = cluster.create_database().await?;
    #[allow(clippy::print_stdout)] // the URL on stdout is this program's output
    {
        println!("{url}");
    }
    // Until stdin closes; the cluster is removed when dropped.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(cluster);
    Ok(())
}

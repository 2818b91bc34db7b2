//! Shared pieces of the benchmark binaries: an in-process server on loopback, store filling,
//! timing and memory sampling.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use davrepl::{ReplLayer, ReplStore, ResourcePath};
use futures_util::StreamExt;
use tokio::net::TcpListener;

/// Starts `store` behind the layer on a loopback port; returns the address.
pub async fn start<S: ReplStore>(store: S) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let fallback = tower::service_fn(|_r: http::Request<davrepl_hyper::Incoming>| async {
        Ok::<_, std::convert::Infallible>(
            http::Response::new(http_body_util::Empty::<Bytes>::new()),
        )
    });
    let svc = ReplLayer::new(store).service(fallback);
    tokio::spawn(davrepl_hyper::serve(listener, svc, std::future::pending()));
    addr
}

/// Creates `/big` with `n` small members directly through the store (fast set-up).
pub async fn fill<S: ReplStore>(store: &S, n: usize) {
    let big = ResourcePath::parse("/big").expect("path");
    store
        .create_collection(&big, Default::default())
        .await
        .expect("mkcol");
    // Concurrent puts let stores that group commits (SQLite) fill quickly.
    let puts = futures_util::stream::iter(0..n).map(|i| {
        let p = big.join(&format!("m{i:07}")).expect("path");
        async move {
            let body: davrepl::ByteStream = Box::pin(futures_util::stream::iter([Ok(
                Bytes::from_static(b"hello"),
            )]));
            store.put(&p, body, Default::default()).await.expect("put");
        }
    });
    puts.buffer_unordered(64).collect::<Vec<()>>().await;
}

/// Resident set size of this process in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Median, min and max of durations.
pub fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Times `f` `runs` times.
pub async fn time_runs<F, Fut>(runs: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await;
        out.push(t.elapsed());
    }
    out
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// A throwaway PostgreSQL cluster with durable settings (fsync and synchronous commit on;
/// `DAVREPL_BENCH_PG_FSYNC=off` turns them off to see the cost of the disk), stopped and
/// removed when dropped. `DAVREPL_BENCH_PG_SETTINGS` adds server settings (`name=value`,
/// separated by spaces; `bench/pg-statements.sh` uses it). Panics when PostgreSQL is not
/// installed.
pub fn pg_cluster() -> davrepl_postgres::throwaway::Cluster {
    let mut opts = davrepl_postgres::throwaway::ClusterOptions::default();
    opts.durable = std::env::var("DAVREPL_BENCH_PG_FSYNC").map_or(true, |v| v != "off");
    if let Ok(settings) = std::env::var("DAVREPL_BENCH_PG_SETTINGS") {
        opts.settings = settings.split_whitespace().map(str::to_owned).collect();
    }
    davrepl_postgres::throwaway::Cluster::start(&opts)
        .expect("start PostgreSQL")
        .expect("PostgreSQL binaries not found: install the postgresql package")
}

//! Small-file PUT and GET requests per second through the layer over loopback HTTP/1.1.
//!
//! ```text
//! cargo run --release -p davrepl-bench --bin throughput -- --store memory --store sqlite:/tmp/b
//! ```

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use davrepl::MemStore;
use davrepl_bench::start;

#[derive(Parser)]
struct Args {
    /// Stores to measure: `memory`, `sqlite:DIR` (durable, synchronous=FULL) or
    /// `sqlite-normal:DIR` (synchronous=NORMAL).
    #[arg(long, default_values_t = ["memory".to_owned(), "sqlite:/tmp/davrepl-bench".to_owned()])]
    store: Vec<String>,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs per figure (median reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

async fn phase(base: &str, method: &str, concurrency: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|c| {
            let (base, done, method) = (base.to_owned(), done.clone(), method.to_owned());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let body = "x".repeat(1024);
                let mut i = 0usize;
                while Instant::now() < deadline {
                    let url = format!("{base}/f-{c}-{}", i % 200);
                    let ok = if method == "PUT" {
                        client
                            .put(&url)
                            .body(body.clone())
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success())
                    } else {
                        match client.get(&url).send().await {
                            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                            _ => false,
                        }
                    };
                    assert!(ok, "{method} {url} failed");
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task");
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!(
        "1 KiB files, {} connections, {} s per run, median of {} runs (min–max); client and server share the machine\n",
        args.concurrency, args.seconds, args.runs
    );
    println!("| store | PUT req/s | GET req/s |");
    println!("|---|---:|---:|");
    for spec in &args.store {
        let addr = if let Some((kind, dir)) = spec.split_once(':') {
            std::fs::create_dir_all(dir).expect("bench dir");
            let file = std::path::Path::new(dir).join("throughput.db");
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", file.display()));
            }
            let mut opts = davrepl_sqlite::SqliteOptions::default();
            if kind == "sqlite-normal" {
                opts.synchronous = davrepl_sqlite::Synchronous::Normal;
            }
            start(
                davrepl_sqlite::SqliteStore::open_with(&file, opts)
                    .await
                    .expect("open"),
            )
            .await
        } else {
            start(MemStore::new()).await
        };
        let base = format!("http://{addr}");
        let mut puts = Vec::new();
        let mut gets = Vec::new();
        for _ in 0..args.runs {
            puts.push(phase(&base, "PUT", args.concurrency, args.seconds).await);
            gets.push(phase(&base, "GET", args.concurrency, args.seconds).await);
        }
        let (p, pmin, pmax) = median(puts);
        let (g, gmin, gmax) = median(gets);
        println!("| {spec} | {p:.0} ({pmin:.0}–{pmax:.0}) | {g:.0} ({gmin:.0}–{gmax:.0}) |");
    }
}

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
use futures_util::StreamExt;

#[derive(Parser)]
struct Args {
    /// Stores to measure: `memory`, `sqlite:DIR` (durable, synchronous=FULL),
    /// `sqlite-normal:DIR` (synchronous=NORMAL), `postgres` (one node on a throwaway durable
    /// PostgreSQL cluster) or `postgres2` (two nodes on one database, clients split evenly).
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

/// Files per client connection.
const FILES: usize = 200;

async fn phase(bases: &[String], method: &str, concurrency: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|c| {
            let (base, done, method) = (
                bases[c % bases.len()].clone(),
                done.clone(),
                method.to_owned(),
            );
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let body = "x".repeat(1024);
                let mut i = 0usize;
                while Instant::now() < deadline {
                    let url = format!("{base}/f-{c}-{}", i % FILES);
                    let ok = if method == "PUT" {
                        client
                            .put(&url)
                            .body(body.clone())
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success())
                    } else {
                        match client.get(&url).send().await {
                            Ok(r) if r.status().is_success() => {
                                r.bytes().await.is_ok_and(|b| b.len() == 1024)
                            }
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

/// Writes every file the phases use once, untimed, so GET never asks for a file a slow PUT
/// phase did not reach.
async fn prefill(bases: &[String], concurrency: usize) {
    let client = reqwest::Client::new();
    let body = "x".repeat(1024);
    futures_util::stream::iter((0..concurrency).flat_map(|c| (0..FILES).map(move |i| (c, i))))
        .for_each_concurrent(16, |(c, i)| {
            let url = format!("{}/f-{c}-{i}", bases[c % bases.len()]);
            let (client, body) = (&client, body.clone());
            async move {
                let r = client.put(&url).body(body).send().await.expect("prefill");
                assert!(r.status().is_success(), "prefill {url}: {}", r.status());
            }
        })
        .await;
}

/// "median (min–max)", or "value (1 run)" for a single sample.
fn figure(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.as_slice() {
        [one] => format!("{one:.0} (1 run)"),
        _ => format!("{:.0} ({:.0}–{:.0})", v[v.len() / 2], v[0], v[v.len() - 1]),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!(
        "1 KiB files, {} connections, {} s per run, median of {} run(s) (min–max), PUT and GET runs alternating; client and server share the machine\n",
        args.concurrency, args.seconds, args.runs
    );
    println!("| store | PUT req/s | GET req/s |");
    println!("|---|---:|---:|");
    let mut cluster = None;
    for spec in &args.store {
        let addrs = if spec == "postgres" || spec == "postgres2" {
            let cluster = cluster.get_or_insert_with(davrepl_bench::pg_cluster);
            let url = cluster.create_database().await.expect("database");
            let mut addrs = Vec::new();
            for _ in 0..if spec == "postgres" { 1 } else { 2 } {
                let store = davrepl_postgres::PgStore::connect(&url)
                    .await
                    .expect("connect");
                addrs.push(start(store).await);
            }
            addrs
        } else if let Some((kind, dir)) = spec.split_once(':') {
            std::fs::create_dir_all(dir).expect("bench dir");
            let file = std::path::Path::new(dir).join("throughput.db");
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", file.display()));
            }
            let mut opts = davrepl_sqlite::SqliteOptions::default();
            if kind == "sqlite-normal" {
                opts.synchronous = davrepl_sqlite::Synchronous::Normal;
            }
            vec![
                start(
                    davrepl_sqlite::SqliteStore::open_with(&file, opts)
                        .await
                        .expect("open"),
                )
                .await,
            ]
        } else {
            vec![start(MemStore::new()).await]
        };
        let bases: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
        prefill(&bases, args.concurrency).await;
        let mut puts = Vec::new();
        let mut gets = Vec::new();
        for _ in 0..args.runs {
            puts.push(phase(&bases, "PUT", args.concurrency, args.seconds).await);
            gets.push(phase(&bases, "GET", args.concurrency, args.seconds).await);
        }
        println!("| {spec} | {} | {} |", figure(puts), figure(gets));
    }
}

//! Store operations without HTTP, to compare store implementations (or one store before and
//! after a change) on the same machine:
//!
//! ```text
//! cargo run --release -p davrepl-bench --bin store_ops -- --ops 100000 --runs 5
//! ```
//!
//! Times PUT of new 1 KiB items, PUT replacing them, HEAD and full reads, each over `--ops`
//! distinct paths in one collection, on a fresh store per run (`--store memory` or
//! `--store sqlite:DIR`); prints the median rate (operations per second) with min–max.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use davrepl::{MemStore, PutOptions, ReplStore, ResourcePath};
use futures_util::StreamExt;

#[derive(Parser)]
struct Args {
    /// Operations per phase.
    #[arg(long, default_value_t = 100_000)]
    ops: usize,
    /// Runs per figure.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// `memory`, `sqlite:DIR` (a fresh database per run in DIR, synchronous=FULL) or
    /// `sqlite-normal:DIR` (synchronous=NORMAL: no fsync per commit, so the CPU cost shows).
    #[arg(long, default_value = "memory")]
    store: String,
}

async fn fresh(spec: &str, run: usize) -> davrepl::DynStore {
    let (normal, rest) = match spec.strip_prefix("sqlite-normal:") {
        Some(dir) => (true, Some(dir)),
        None => (false, spec.strip_prefix("sqlite:")),
    };
    match rest {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("bench dir");
            let file = std::path::Path::new(dir).join(format!("store_ops-{run}.db"));
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", file.display()));
            }
            let mut opts = davrepl_sqlite::SqliteOptions::default();
            if normal {
                opts.synchronous = davrepl_sqlite::Synchronous::Normal;
            }
            davrepl::DynStore::new(
                davrepl_sqlite::SqliteStore::open_with(&file, opts)
                    .await
                    .expect("open sqlite"),
            )
        }
        None => davrepl::DynStore::new(MemStore::new()),
    }
}

fn body() -> davrepl::ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from(vec![
        b'x';
        1024
    ]))]))
}

fn figure(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    match v.as_slice() {
        [one] => format!("{one:.0}/s (1 run)"),
        _ => format!(
            "{:.0}/s ({:.0}–{:.0})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        ),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let mut rates: [Vec<f64>; 4] = Default::default();
    for run in 0..args.runs {
        let store = fresh(&args.store, run).await;
        let dir = ResourcePath::parse("/c").expect("path");
        store
            .create_collection(&dir, Default::default())
            .await
            .expect("mkcol");
        let paths: Vec<ResourcePath> = (0..args.ops)
            .map(|i| dir.join(&format!("f{i:07}")).expect("path"))
            .collect();
        let mut phase = |k: usize, t: Instant| {
            rates[k].push(args.ops as f64 / t.elapsed().as_secs_f64());
        };
        let t = Instant::now();
        for p in &paths {
            store
                .put(p, body(), PutOptions::default())
                .await
                .expect("put");
        }
        phase(0, t);
        let t = Instant::now();
        for p in &paths {
            store
                .put(p, body(), PutOptions::default())
                .await
                .expect("put");
        }
        phase(1, t);
        let t = Instant::now();
        for p in &paths {
            let m = store.head(p).await.expect("head");
            assert_eq!(m.len, 1024);
        }
        phase(2, t);
        let t = Instant::now();
        for p in &paths {
            let (_, mut s) = store.read(p, Default::default()).await.expect("read");
            let mut n = 0;
            while let Some(c) = s.next().await {
                n += c.expect("chunk").len();
            }
            assert_eq!(n, 1024);
        }
        phase(3, t);
    }
    println!(
        "{}, {} ops per phase (one at a time), {} run(s), median (min–max):",
        args.store, args.ops, args.runs
    );
    for (name, r) in ["PUT new", "PUT replace", "HEAD", "GET"].iter().zip(rates) {
        println!("| {name} | {} |", figure(r));
    }
}

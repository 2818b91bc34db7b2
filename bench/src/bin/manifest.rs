//! Manifest cost against collection size, and peak memory of a large first sync.
//!
//! ```text
//! cargo run --release -p davrepl-bench --bin manifest -- --sizes 1000,1000000
//! ```
//!
//! For each size it fills `/big`, takes a first-sync collblob and an RFC 6578 sync token (the
//! collection's `DAV:sync-token`), makes 10 changes and times the delta manifest and the delta
//! `sync-collection` report (median of runs, replaying the same collblob and token). For the
//! largest size it also streams a full first sync and samples the process RSS while it runs.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use davrepl::MemStore;
use davrepl_bench::{fill, ms, rss_bytes, start, stats, time_runs};
use futures_util::StreamExt;

#[derive(Parser)]
struct Args {
    /// Collection sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1000,1000000")]
    sizes: Vec<usize>,
    /// `memory`, `sqlite:DIR` (a fresh database file per size is created in DIR), or
    /// `postgres` (a throwaway durable PostgreSQL cluster, a fresh database per size).
    #[arg(long, default_value = "memory")]
    store: String,
    /// Timed runs per full-sync figure.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Timed runs per delta figure, after 10 untimed ones. Every size's server stays up and
    /// the delta runs go round them (one run of each size in turn), so that the machine's
    /// drift hits every size alike: a delta takes a fraction of a millisecond, and measured
    /// one size after the other the ratio of two sizes' medians moved by half between runs.
    #[arg(long, default_value_t = 200)]
    delta_runs: usize,
}

/// Untimed delta runs of every size before the timed ones.
const WARM_RUNS: usize = 10;

/// A size whose server is up, filled, and changed 10 times since `blob` and `token`.
struct Prepared {
    n: usize,
    url: String,
    blob: String,
    token: String,
    /// Rows every delta must return.
    want: usize,
    /// The full first sync: median, min, max.
    full: (Duration, Duration, Duration),
}

const SQL: &str = r#"SELECT "DAV:displayname", "http://schemas.microsoft.com/repl/resourcetag" FROM SCOPE('SHALLOW TRAVERSAL OF "/big/"')"#;

fn body(blob: Option<&str>) -> String {
    let cb = blob.map_or("<R:collblob/>".to_owned(), |b| {
        format!("<R:collblob>{b}</R:collblob>")
    });
    format!(
        r#"<?xml version="1.0"?><D:searchrequest xmlns:D="DAV:" xmlns:R="http://schemas.microsoft.com/repl/"><R:repl>{cb}</R:repl><D:sql>{SQL}</D:sql></D:searchrequest>"#
    )
}

fn blob_of(xml: &str) -> String {
    let start = xml.find("<d:collblob>").expect("collblob") + "<d:collblob>".len();
    let end = xml[start..].find("</d:collblob>").expect("end") + start;
    xml[start..end].to_owned()
}

async fn search(
    client: &reqwest::Client,
    url: &str,
    blob: Option<&str>,
    range: Option<&str>,
) -> reqwest::Response {
    let mut rb = client
        .request(reqwest::Method::from_bytes(b"SEARCH").expect("method"), url)
        .body(body(blob));
    if let Some(r) = range {
        rb = rb.header("Range", r);
    }
    let r = rb.send().await.expect("search");
    assert_eq!(r.status().as_u16(), 207);
    r
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::new();
    println!(
        "machine: {} cores; store {}; client and server in one process over loopback\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.store
    );
    println!(
        "| members | delta of 10 changes: median ms (min–max) | rows | first sync: median ms (min–max) | sync-collection delta of 10: median ms (min–max) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut prepared = Vec::new();
    let largest = args.sizes.iter().copied().max().unwrap_or(0);
    let cluster = (args.store == "postgres").then(davrepl_bench::pg_cluster);
    for &n in &args.sizes {
        let addr = if let Some(cluster) = &cluster {
            let url = cluster.create_database().await.expect("database");
            let store = davrepl_postgres::PgStore::connect(&url)
                .await
                .expect("connect");
            davrepl::ReplStore::create_collection(
                &store,
                &davrepl::ResourcePath::parse("/big").expect("path"),
                Default::default(),
            )
            .await
            .expect("mkcol");
            davrepl_postgres::throwaway::bulk_members(&url, "/big", n as u64)
                .await
                .expect("bulk fill");
            start(store).await
        } else if let Some(dir) = args.store.strip_prefix("sqlite:") {
            let file = std::path::Path::new(dir).join(format!("bench-{n}.db"));
            let _ = std::fs::remove_file(&file);
            let mut opts = davrepl_sqlite::SqliteOptions::default();
            opts.synchronous = davrepl_sqlite::Synchronous::Normal;
            let store = davrepl_sqlite::SqliteStore::open_with(&file, opts)
                .await
                .expect("open sqlite");
            fill(&store, n).await;
            start(store).await
        } else {
            let store = MemStore::new();
            fill(&store, n).await;
            start(store).await
        };
        let url = format!("http://{addr}/big/");
        if n == largest {
            first_sync_memory(&client, &url, n).await;
        }
        // Full first syncs, body streamed and dropped (fewer runs: they are long at 1M).
        let full_runs = if n >= 1_000_000 { 3 } else { args.runs.min(10) };
        let full = time_runs(full_runs, || {
            let (client, url) = (&client, &url);
            async move {
                let (_, rows) = stream_rows(search(client, url, None, None).await).await;
                assert_eq!(rows, n, "a first sync must list every member");
            }
        })
        .await;
        // A caught-up collblob: the one a full (unranged) first sync returns.
        let text = search(&client, &url, None, None)
            .await
            .text()
            .await
            .expect("text");
        let blob = blob_of(&text);
        drop(text);
        let token = sync_token(&client, &url).await;
        for i in 0..10 {
            let p = format!("http://{addr}/big/m{:07}", i * (n / 10).max(1));
            client.put(&p).body("changed").send().await.expect("put");
        }
        // Every timed run must return exactly the 10 changed members (n >= 10).
        prepared.push(Prepared {
            n,
            url,
            blob,
            token,
            want: n.min(10),
            full: stats(full),
        });
    }
    // The deltas, every size in turn (the order reversed every other round).
    let mut deltas = vec![Vec::new(); prepared.len()];
    let mut syncs = vec![Vec::new(); prepared.len()];
    for round in 0..WARM_RUNS + args.delta_runs {
        let mut order: Vec<usize> = (0..prepared.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let p = &prepared[i];
            let t = Instant::now();
            let text = search(&client, &p.url, Some(&p.blob), None)
                .await
                .text()
                .await
                .expect("text");
            let delta = t.elapsed();
            let rows = text.matches(ROW).count();
            assert_eq!(
                rows, p.want,
                "a delta run returned the wrong number of rows"
            );
            let t = Instant::now();
            let text = sync_report(&client, &p.url, &p.token).await;
            let sync = t.elapsed();
            let rows = text.matches("<D:response>").count();
            assert_eq!(
                rows, p.want,
                "a sync delta returned the wrong number of members"
            );
            if round >= WARM_RUNS {
                deltas[i].push(delta);
                syncs[i].push(sync);
            }
        }
    }
    let mut medians = Vec::new();
    for ((p, delta), sync) in prepared.iter().zip(deltas).zip(syncs) {
        let (med, min, max) = stats(delta);
        let (smed, smin, smax) = stats(sync);
        let (fmed, fmin, fmax) = p.full;
        println!(
            "| {} | {} ({}–{}) | {} | {} ({}–{}) | {} ({}–{}) |",
            p.n,
            ms(med),
            ms(min),
            ms(max),
            p.want,
            ms(fmed),
            ms(fmin),
            ms(fmax),
            ms(smed),
            ms(smin),
            ms(smax)
        );
        medians.push((p.n, med, smed));
    }
    if let (Some(a), Some(b)) = (medians.first(), medians.last()) {
        println!(
            "\ndelta cost ratio {} vs {} members: {:.2}x",
            b.0,
            a.0,
            b.1.as_secs_f64() / a.1.as_secs_f64()
        );
        println!(
            "sync-collection delta cost ratio {} vs {} members: {:.2}x",
            b.0,
            a.0,
            b.2.as_secs_f64() / a.2.as_secs_f64()
        );
    }
}

/// The collection's `DAV:sync-token` (a level-1 token of its current state).
async fn sync_token(client: &reqwest::Client, url: &str) -> String {
    let body = r#"<D:propfind xmlns:D="DAV:"><D:prop><D:sync-token/></D:prop></D:propfind>"#;
    let text = client
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").expect("method"),
            url,
        )
        .header("Depth", "0")
        .body(body)
        .send()
        .await
        .expect("propfind")
        .text()
        .await
        .expect("text");
    let start = text.find("<D:sync-token>").expect("sync-token") + "<D:sync-token>".len();
    let end = text[start..].find("</D:sync-token>").expect("end") + start;
    text[start..end].to_owned()
}

/// A level-1 `sync-collection` report from `token`, asking for ETags; the body text.
async fn sync_report(client: &reqwest::Client, url: &str, token: &str) -> String {
    let body = format!(
        r#"<D:sync-collection xmlns:D="DAV:"><D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>"#
    );
    let r = client
        .request(reqwest::Method::from_bytes(b"REPORT").expect("method"), url)
        .header("Depth", "0")
        .body(body)
        .send()
        .await
        .expect("report");
    assert_eq!(r.status().as_u16(), 207);
    r.text().await.expect("text")
}

/// The element that opens one manifest row.
const ROW: &str = "<a:response>";

/// Streams a response body to its end without keeping it; returns its size and the number of
/// manifest rows in it. A row tag split across chunks is counted once: only the last
/// `ROW.len() - 1` bytes are carried over, too few to hold a whole (already counted) tag.
async fn stream_rows(resp: reqwest::Response) -> (usize, usize) {
    let mut stream = resp.bytes_stream();
    let (mut bytes, mut rows) = (0usize, 0usize);
    let mut tail: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        bytes += chunk.len();
        tail.extend_from_slice(&chunk);
        rows += tail
            .windows(ROW.len())
            .filter(|w| *w == ROW.as_bytes())
            .count();
        let keep = tail.len().saturating_sub(ROW.len() - 1);
        tail.drain(..keep);
    }
    (bytes, rows)
}

async fn first_sync_memory(client: &reqwest::Client, url: &str, n: usize) {
    let idle = rss_bytes();
    let peak = Arc::new(AtomicU64::new(idle));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let t = Instant::now();
    let (bytes, rows) = stream_rows(search(client, url, None, None).await).await;
    let elapsed = t.elapsed();
    assert_eq!(rows, n, "the first sync must list every member");
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "\nfirst sync of {n} members: {rows} rows, {:.1} MB streamed in {:.2} s; RSS idle {:.1} MB, peak {:.1} MB, peak above idle {:.1} MB",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        idle as f64 / 1e6,
        peak as f64 / 1e6,
        (peak.saturating_sub(idle)) as f64 / 1e6
    );
}

//! Commit-to-event latency of the event stream: `--streams` clients hold `GET Accept:
//! text/event-stream` open on one collection of one in-process server; a writer PUTs
//! `--writes` items one after another; for every (stream, write) pair the time from sending
//! the PUT to that stream receiving its event is recorded. Prints p50, p99 and max, and the
//! PUT round trip for comparison.
//!
//! ```text
//! cargo run --release -p davrepl-bench --bin events -- --streams 1000 --writes 200
//! cargo run --release -p davrepl-bench --bin events -- --streams 1000 --collections 10
//! ```

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use davrepl::{Limits, MemStore, ReplLayer};
use futures_util::StreamExt;
use tokio::net::TcpListener;

#[derive(Parser)]
struct Args {
    /// Event streams held open.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Writes, one after another.
    #[arg(long, default_value_t = 200)]
    writes: usize,
    /// Pause between writes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    gap_ms: u64,
    /// Collections the streams are spread over (round robin); every write goes to the first,
    /// so only its streams receive events and the others should not be woken.
    #[arg(long, default_value_t = 1)]
    collections: usize,
}

type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

/// The path of collection `c`.
fn coll(c: usize) -> String {
    format!("/feed{c}/")
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut limits = Limits::default();
    limits.max_event_streams = args.streams + 10;
    limits.max_event_streams_per_principal = args.streams + 10;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fallback = tower::service_fn(|_r: http::Request<davrepl_hyper::Incoming>| async {
        Ok::<_, std::convert::Infallible>(
            http::Response::new(http_body_util::Empty::<Bytes>::new()),
        )
    });
    let svc = ReplLayer::new(MemStore::new())
        .limits(limits)
        .service(fallback);
    tokio::spawn(davrepl_hyper::serve(listener, svc, std::future::pending()));
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.streams + 10)
        .build()
        .expect("client");
    let collections = args.collections.max(1);
    for c in 0..collections {
        let r = client
            .request(
                reqwest::Method::from_bytes(b"MKCOL").unwrap(),
                format!("{base}{}", coll(c)),
            )
            .send()
            .await
            .expect("mkcol");
        assert_eq!(r.status().as_u16(), 201);
    }
    // The streams on the collection written to.
    let watching = (0..args.streams).filter(|i| i % collections == 0).count();

    let arrivals: Arrivals = Arc::default();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.streams);
    for i in 0..args.streams {
        let (client, base, arrivals, ready) = (
            client.clone(),
            base.clone(),
            arrivals.clone(),
            ready_tx.clone(),
        );
        let path = coll(i % collections);
        tokio::spawn(async move {
            let resp = client
                .get(format!("{base}{path}"))
                .header("Accept", "text/event-stream")
                .send()
                .await
                .expect("stream");
            assert_eq!(resp.status().as_u16(), 200);
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            let mut announced = false;
            while let Some(chunk) = body.next().await {
                let now = Instant::now();
                buf.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf-8"));
                while let Some(end) = buf.find("\n\n") {
                    let event: String = buf.drain(..end + 2).collect();
                    if event.contains("event: ready") && !announced {
                        announced = true;
                        let _ = ready.send(()).await;
                    }
                    if let Some(i) = event.find("\"href\":\"") {
                        let rest = &event[i + 8..];
                        let href = rest[..rest.find('"').unwrap_or(0)].to_owned();
                        arrivals.lock().unwrap().entry(href).or_default().push(now);
                    }
                }
            }
        });
    }
    drop(ready_tx);
    for _ in 0..args.streams {
        ready_rx.recv().await.expect("a stream failed to open");
    }

    let mut sent = Vec::with_capacity(args.writes);
    let mut round_trips = Vec::with_capacity(args.writes);
    for i in 0..args.writes {
        let href = format!("{}w{i:05}", coll(0));
        let t = Instant::now();
        let r = client
            .put(format!("{base}{href}"))
            .body("x")
            .send()
            .await
            .expect("put");
        assert_eq!(r.status().as_u16(), 201);
        round_trips.push(t.elapsed());
        sent.push((href, t));
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
    }
    // Let the last events arrive.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = {
            let a = arrivals.lock().unwrap();
            sent.iter()
                .all(|(h, _)| a.get(h).is_some_and(|v| v.len() >= watching))
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut lat, missing) = {
        let a = arrivals.lock().unwrap();
        let mut lat: Vec<Duration> = Vec::new();
        let mut missing = 0usize;
        for (h, t) in &sent {
            let got = a.get(h).map_or(&[][..], Vec::as_slice);
            missing += watching.saturating_sub(got.len());
            lat.extend(got.iter().map(|r| r.saturating_duration_since(*t)));
        }
        (lat, missing)
    };
    lat.sort();
    round_trips.sort();
    let pct = |v: &[Duration], p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{} streams over {} collection(s), {} watching the one written to; {} writes ({} ms apart), memory store, one process; {} events delivered, {} missing",
        args.streams,
        collections,
        watching,
        args.writes,
        args.gap_ms,
        lat.len(),
        missing
    );
    println!(
        "write sent → event received: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(pct(&lat, 1.0))
    );
    println!(
        "PUT round trip (for comparison): p50 {:.2} ms, p99 {:.2} ms",
        ms(pct(&round_trips, 0.5)),
        ms(pct(&round_trips, 0.99))
    );

    // Long poll: a sync-collection REPORT held with `Prefer: wait=30`, then a write.
    let report = |token: Option<String>| {
        let body = format!(
            "<?xml version=\"1.0\"?><D:sync-collection xmlns:D=\"DAV:\"><D:sync-token>{}</D:sync-token>\
             <D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>",
            token.unwrap_or_default()
        );
        client
            .request(
                reqwest::Method::from_bytes(b"REPORT").unwrap(),
                format!("{base}{}", coll(0)),
            )
            .header("Depth", "0")
            .header("Prefer", "wait=30")
            .body(body)
            .send()
    };
    let token_of = |text: &str| {
        let start = text
            .find("<D:sync-token>")
            .map(|i| i + "<D:sync-token>".len());
        start.and_then(|s| {
            text[s..]
                .find("</D:sync-token>")
                .map(|e| text[s..s + e].to_owned())
        })
    };
    let first = report(None)
        .await
        .expect("report")
        .text()
        .await
        .expect("body");
    let mut token = token_of(&first).expect("a sync token");
    let mut waits = Vec::new();
    for i in 0..args.writes.min(100) {
        let held = tokio::spawn(report(Some(token.clone())));
        tokio::time::sleep(Duration::from_millis(args.gap_ms.max(20))).await;
        let t = Instant::now();
        let r = client
            .put(format!("{base}{}lp{i:05}", coll(0)))
            .body("x")
            .send()
            .await
            .expect("put");
        assert_eq!(r.status().as_u16(), 201);
        let text = held
            .await
            .expect("task")
            .expect("report")
            .text()
            .await
            .expect("body");
        waits.push(t.elapsed());
        token = token_of(&text).expect("a sync token");
    }
    waits.sort();
    println!(
        "long poll (sync-collection, Prefer: wait=30) answered after the write was sent: p50 {:.2} ms, p99 {:.2} ms ({} rounds, the {} streams still open)",
        ms(pct(&waits, 0.5)),
        ms(pct(&waits, 0.99)),
        waits.len(),
        args.streams
    );
}

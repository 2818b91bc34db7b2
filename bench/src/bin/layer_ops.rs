//! The layer's own cost per request, without sockets: requests are handed to the tower
//! service in process, one after another on a current-thread runtime, and their bodies read
//! to the end. Beside each figure, the same request through a bare axum handler that keeps
//! bodies in a map (the `ceiling` of `overhead`), so the ratio is the layer's share.
//!
//! ```text
//! cargo run --release -p davrepl-bench --bin layer_ops -- --ops 200000 --runs 5
//! ```
//!
//! Prints nanoseconds per request (median of `--runs`, min–max) for GET and PUT of a 1 KiB
//! item and PROPFIND Depth 0. Instruction counts under `valgrind --tool=callgrind` of this
//! binary are repeatable where wall time on a shared machine is not.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use http_body_util::BodyExt;
use tower::Service;
use tower::ServiceExt;

#[derive(Parser)]
struct Args {
    /// Requests per figure.
    #[arg(long, default_value_t = 200_000)]
    ops: usize,
    /// Runs per figure.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Only the rows whose name starts with this (`GET`, `PUT`, `PROPFIND`), davrepl only:
    /// for counting instructions with callgrind.
    #[arg(long)]
    only: Option<String>,
}

type Kept = Arc<RwLock<HashMap<String, Bytes>>>;

/// A row of the table: its name, how to make its request, and whether the bare handler can
/// answer it too.
type Row<'a> = (&'a str, &'a dyn Fn(usize) -> Request, bool);

async fn ceiling(State(kept): State<Kept>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    match req.method().clone() {
        Method::GET => match kept.read().expect("lock").get(&path) {
            Some(b) => b.clone().into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        Method::PUT => {
            let Ok(body) = axum::body::to_bytes(req.into_body(), usize::MAX).await else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            kept.write().expect("lock").insert(path, body);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

fn request(method: &str, path: &str, body: Bytes, depth: Option<&str>) -> Request {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(d) = depth {
        b = b
            .header("depth", d)
            .header("content-type", "application/xml");
    }
    b.body(Body::from(body)).expect("request")
}

async fn time<S, B>(svc: &mut S, ops: usize, make: &dyn Fn(usize) -> Request) -> f64
where
    S: Service<Request, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let started = Instant::now();
    for i in 0..ops {
        let resp = svc
            .ready()
            .await
            .expect("ready")
            .call(make(i))
            .await
            .expect("call");
        assert!(resp.status().is_success(), "{}", resp.status());
        let _ = resp.into_body().collect().await.expect("body");
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "{:>8.0} ns ({:.0}–{:.0})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

const PROPFIND: &str =
    r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>"#;

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let kib = Bytes::from(vec![b'x'; 1024]);
        let bare = axum::Router::new()
            .fallback(ceiling)
            .with_state(Kept::default());
        let fallback = axum::Router::new().fallback(|| async { StatusCode::NOT_FOUND });
        let mut layered = davrepl::ReplLayer::new(davrepl::MemStore::new()).service(fallback);
        let mut bare = bare.into_service::<Body>();
        let first = {
            let k = kib.clone();
            move |_| request("PUT", "/small.bin", k.clone(), None)
        };
        time(&mut layered, 1, &first).await;
        if std::env::var_os("LAYER_OPS_SIZES").is_some() {
            let fut = layered.call(request("GET", "/small.bin", Bytes::new(), None));
            println!("response future: {} bytes", std::mem::size_of_val(&fut));
            drop(fut);
        }
        time(&mut bare, 1, &first).await;
        let put = {
            let k = kib.clone();
            move |_| request("PUT", "/small.bin", k.clone(), None)
        };
        let get = |_| request("GET", "/small.bin", Bytes::new(), None);
        let propfind = |_| {
            request(
                "PROPFIND",
                "/small.bin",
                Bytes::from_static(PROPFIND.as_bytes()),
                Some("0"),
            )
        };
        println!(
            "{:<22} {:>26} {:>26}  ratio",
            "request", "davrepl (memory)", "bare axum"
        );
        let rows: [Row<'_>; 3] = [
            ("GET 1 KiB", &get, true),
            ("PUT 1 KiB (overwrite)", &put, true),
            ("PROPFIND Depth 0", &propfind, false),
        ];
        for (name, make, both) in rows {
            let both = both && args.only.is_none();
            if args
                .only
                .as_ref()
                .is_some_and(|o| !name.starts_with(o.as_str()))
            {
                continue;
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..args.runs {
                a.push(time(&mut layered, args.ops, make).await);
                if both {
                    b.push(time(&mut bare, args.ops, make).await);
                }
            }
            let ratio = if both {
                let (ma, mb) = (median(&a), median(&b));
                format!("{:.2}×", mb / ma)
            } else {
                "–".into()
            };
            let bare = if both { summary(b) } else { "–".into() };
            println!("{name:<22} {:>26} {bare:>26}  {ratio}", summary(a));
        }
    });
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

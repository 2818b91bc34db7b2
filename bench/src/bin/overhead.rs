//! Layer overhead server for the side-by-side benchmark: `overhead bare` serves an axum
//! router with `GET /hello`; `overhead layered` serves the same router wrapped by `ReplLayer`
//! (mounted at `/dav`, so `/hello` takes the pass-through path). Both through
//! `davrepl_hyper::serve`, so the only difference is the layer. Prints
//! `listening on http://ADDR/` once bound.
//!
//! `overhead ceiling` is the ceiling of the plain-WebDAV rows: a bare axum handler that
//! keeps each PUT body in memory under its path and answers GET with it (MKCOL just says
//! 201), so the HTTP stack's own cost is measured with the same requests and bytes.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use davrepl::{MemStore, ReplLayer};

/// The same allocator as `davrepl-server`, so that the ceiling and the layered server differ
/// only in what runs between the socket and the bytes.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type Kept = Arc<RwLock<HashMap<String, Bytes>>>;

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
            // Kept as a copy, as the stores keep it: the body hyper hands over is a slice of
            // the connection's read buffer, and holding it would pin that buffer (hyper then
            // allocates a new one for the next request).
            let body = Bytes::copy_from_slice(&body);
            let old = kept.write().expect("lock").insert(path, body);
            if old.is_some() {
                StatusCode::NO_CONTENT.into_response()
            } else {
                StatusCode::CREATED.into_response()
            }
        }
        m if m.as_str() == "MKCOL" => (StatusCode::CREATED, Body::empty()).into_response(),
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

#[tokio::main]
async fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "bare".into());
    let addr = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let app = Router::new().route("/hello", get(|| async { "hello, world" }));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!(
        "listening on http://{}/",
        listener.local_addr().expect("addr")
    );
    let served = match mode.as_str() {
        "ceiling" => {
            let app = Router::new().fallback(ceiling).with_state(Kept::default());
            davrepl_hyper::serve(listener, app, std::future::pending()).await
        }
        "layered" => {
            let svc = ReplLayer::new(MemStore::new()).mount("/dav").service(app);
            davrepl_hyper::serve(listener, svc, std::future::pending()).await
        }
        _ => davrepl_hyper::serve(listener, app, std::future::pending()).await,
    };
    served.expect("serve");
}

//! Layer overhead server for the side-by-side benchmark: `overhead bare` serves an axum
//! router with `GET /hello`; `overhead layered` serves the same router wrapped by `ReplLayer`
//! (mounted at `/dav`, so `/hello` takes the pass-through path). Both through
//! `davrepl_hyper::serve`, so the only difference is the layer. Prints
//! `listening on http://ADDR/` once bound.

#![allow(clippy::print_stdout)]

use axum::Router;
use axum::routing::get;
use davrepl::{MemStore, ReplLayer};

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
        "layered" => {
            let svc = ReplLayer::new(MemStore::new()).mount("/dav").service(app);
            davrepl_hyper::serve(listener, svc, std::future::pending()).await
        }
        _ => davrepl_hyper::serve(listener, app, std::future::pending()).await,
    };
    served.expect("serve");
}

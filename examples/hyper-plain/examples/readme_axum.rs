//! The README's axum snippet, kept here so `cargo test` proves it compiles.

use axum::{Router, routing::get};
use davrepl::{MemStore, ReplLayer};

#[tokio::main]
async fn main() {
    let app = Router::new().route("/health", get(|| async { "ok" }));
    // Wrap the whole router: WebDAV methods never match an axum route.
    let app = ReplLayer::new(MemStore::new()).mount("/dav").service(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
        .await
        .unwrap();
    davrepl_hyper::serve(listener, app, std::future::pending())
        .await
        .unwrap();
}

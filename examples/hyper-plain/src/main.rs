//! davrepl in front of a plain hyper service. See README.md.

#![allow(clippy::print_stdout)]

use bytes::Bytes;
use davrepl::ReplLayer;
use http_body_util::Full;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3002".into());
    let db = args.next().unwrap_or_else(|| "./example.db".into());
    let store = davrepl_sqlite::SqliteStore::open(&db).await?;
    let app = tower::service_fn(|_req: http::Request<davrepl_hyper::Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
            b"hello from hyper\n",
        ))))
    });
    let svc = ReplLayer::new(store).mount("/dav").service(app);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    davrepl_hyper::serve(listener, svc, shutdown).await?;
    Ok(())
}

//! `dav-server-peer ADDR memfs|localfs:DIR`: serves the `dav-server` crate on ADDR and prints
//! `listening on http://ADDR/` once bound (the line the benchmark script waits for).

use std::convert::Infallible;

use dav_server::{DavHandler, fakels::FakeLs, localfs::LocalFs, memfs::MemFs};
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let fs = args.next().unwrap_or_else(|| "memfs".into());
    let builder = DavHandler::builder().locksystem(FakeLs::new());
    let handler = match fs.strip_prefix("localfs:") {
        Some(dir) => builder.filesystem(LocalFs::new(dir, false, false, false)),
        None => builder.filesystem(MemFs::new()),
    }
    .build_handler();
    let listener = TcpListener::bind(&addr).await.expect("bind");
    println!("listening on http://{}/", listener.local_addr().expect("addr"));
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler.handle(req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

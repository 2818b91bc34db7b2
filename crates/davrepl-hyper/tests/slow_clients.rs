//! Slow and idle clients cannot hold the server's sockets: header-read timeout, inactivity
//! timeout and the connection cap, over real TCP.

use std::time::{Duration, Instant};

use bytes::Bytes;
use davrepl_hyper::{Incoming, ServeOptions, serve_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start(opts: ServeOptions) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = tower::service_fn(|_r: http::Request<Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
            Bytes::from_static(b"ok"),
        )))
    });
    tokio::spawn(serve_with(listener, svc, std::future::pending(), opts));
    addr
}

fn opts(header: u64, idle: u64, max: usize) -> ServeOptions {
    let mut o = ServeOptions::default();
    o.header_read_timeout = Duration::from_millis(header);
    o.idle_timeout = Duration::from_millis(idle);
    o.max_connections = max;
    o
}

/// Reads until the server closes the connection; returns what arrived and when it closed.
async fn until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (got, t.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for {within:?}"),
        }
    }
}

#[tokio::test]
async fn headers_that_never_finish_are_cut_off() {
    let addr = start(opts(300, 10_000, 16)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, after) = until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(after < Duration::from_secs(3), "{after:?}");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let addr = start(opts(10_000, 300, 16)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (got, after) = until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(after < Duration::from_secs(3), "{after:?}");
    // A body that stops arriving half-way is cut off too.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let (_, after) = until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(after < Duration::from_secs(3), "{after:?}");
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let addr = start(opts(10_000, 600, 1)).await;
    // One silent client takes the only slot until the inactivity timeout frees it.
    let _hog = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (got, _) = until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "served at once ({waited:?}): the cap did not hold"
    );
}

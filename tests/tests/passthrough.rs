//! Requests outside the mount prefix reach the wrapped axum router byte-for-byte unchanged, and
//! its answers reach the client unchanged: compared with the same router served with no layer.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::{any, get};
use davrepl::{MemStore, ReplLayer};
use davrepl_tests::{TestServer, serve_plain, serve_with};

/// Echoes everything it received, so the test can compare what arrived with what was sent.
async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> (HeaderMap, Vec<u8>) {
    let mut out = format!("{method} {uri}\n").into_bytes();
    let mut names: Vec<_> = headers
        .iter()
        .filter(|(k, _)| *k != "host")
        .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    names.sort();
    for n in names {
        out.extend_from_slice(n.as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(&body);
    let mut h = HeaderMap::new();
    h.insert("x-inner", "yes".parse().expect("header"));
    h.insert("etag", "\"inner-etag\"".parse().expect("header"));
    (h, out)
}

fn app() -> Router {
    Router::new()
        .route("/api/echo", any(echo))
        .route("/api/echo/{*rest}", any(echo))
        .route("/health", get(|| async { "ok" }))
}

async fn both() -> (TestServer, TestServer) {
    let bare = serve_plain(app()).await;
    let wrapped = serve_with(ReplLayer::new(MemStore::new()).mount("/dav"), app()).await;
    (bare, wrapped)
}

#[tokio::test]
async fn outside_prefix_is_untouched() {
    let (bare, wrapped) = both().await;
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    for (method, path, body) in [
        ("GET", "/health", Vec::new()),
        ("POST", "/api/echo?x=1&y=%20", binary.clone()),
        ("PUT", "/api/echo/deeper/path%2Fx", b"data".to_vec()),
        (
            "PROPFIND",
            "/api/echo",
            b"<propfind xmlns=\"DAV:\"/>".to_vec(),
        ),
        ("MKCOL", "/api/echo", Vec::new()),
        ("GET", "/davx", Vec::new()),
        ("GET", "/missing", Vec::new()),
    ] {
        // Headers the layer reads on its own requests must pass through untouched here.
        let with_headers = |r: reqwest::RequestBuilder| {
            r.header("x-custom", "1")
                .header("if", "(<rt:abc>)")
                .header("if-match", "\"x\"")
                .header("depth", "infinity")
                .header("destination", "/elsewhere")
                .header("overwrite", "F")
                .header("authorization", "Basic dTpw")
                .header("content-type", "text/xml")
                .body(body.clone())
        };
        let a = bare.send(with_headers(bare.req(method, path))).await;
        let b = wrapped.send(with_headers(wrapped.req(method, path))).await;
        assert_eq!(a.status, b.status, "{method} {path}");
        assert!(
            a.body == b.body,
            "{method} {path}: body differs ({} vs {} bytes)",
            a.body.len(),
            b.body.len()
        );
        let strip = |h: &reqwest::header::HeaderMap| {
            let mut v: Vec<_> = h
                .iter()
                .filter(|(k, _)| *k != "date")
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            strip(&a.headers),
            strip(&b.headers),
            "{method} {path}: headers differ"
        );
    }
    // The echo proves the request itself arrived unchanged, body included.
    let r = wrapped
        .send(
            wrapped
                .req("POST", "/api/echo")
                .header("x-custom", "1")
                .body(binary.clone()),
        )
        .await;
    assert!(r.body.ends_with(&binary));
    assert!(
        String::from_utf8_lossy(&r.body).contains("\nx-custom: 1\n"),
        "request header lost on the way in"
    );
    assert_eq!(r.header("x-inner"), Some("yes"));
    assert_eq!(r.header("resourcetag"), None);
    assert_eq!(r.header("dav"), None);
}

#[tokio::test]
async fn inside_prefix_is_served_by_the_layer() {
    let (_, wrapped) = both().await;
    wrapped.put("/dav/file.txt", "hello").await.expect(201);
    let r = wrapped.send(wrapped.req("GET", "/dav/file.txt")).await;
    r.expect(200);
    assert_eq!(r.text(), "hello");
    assert!(
        r.header("resourcetag")
            .is_some_and(|t| t.starts_with("<rt:"))
    );
    // The inner app never sees it.
    let r = wrapped.send(wrapped.req("GET", "/api/echo")).await;
    assert!(r.header("resourcetag").is_none());
}

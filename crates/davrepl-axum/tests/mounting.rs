//! The documented ways to mount davrepl in axum, over real TCP, and why `Router::layer` and
//! `route_layer` are not among them.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use davrepl::{MemStore, ReplLayer};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn app() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/dav/known", get(|| async { "app" }))
}

async fn serve(router_or_svc: impl FnOnce() -> ServeKind) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match router_or_svc() {
        ServeKind::Wrapped(svc) => {
            tokio::spawn(async move {
                axum::serve(listener, davrepl_axum::into_make_service(svc))
                    .await
                    .unwrap();
            });
        }
        ServeKind::Router(r) => {
            tokio::spawn(async move { axum::serve(listener, r).await.unwrap() });
        }
    }
    format!("http://{addr}")
}

enum ServeKind {
    Wrapped(davrepl_axum::Wrapped<MemStore>),
    Router(Router),
}

async fn raw(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn wrap_serves_webdav_and_passes_the_rest() {
    let base = serve(|| {
        ServeKind::Wrapped(davrepl_axum::wrap(
            ReplLayer::new(MemStore::new()).mount("/dav"),
            app(),
        ))
    })
    .await;
    assert_eq!(raw(&base, "PUT", "/dav/a.txt", &[], "hi").await.0, 201);
    let (status, text) = raw(&base, "PROPFIND", "/dav/", &[("Depth", "1")], "").await;
    assert_eq!(status, 207);
    assert!(text.contains("<D:href>/dav/a.txt</D:href>"), "{text}");
    let (status, text) = raw(&base, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    assert!(text.ends_with("ok"));
}

#[tokio::test]
async fn nest_keeps_hrefs_absolute() {
    let router = davrepl_axum::nest(app(), "/files", ReplLayer::new(MemStore::new()));
    let base = serve(|| ServeKind::Router(router)).await;
    assert_eq!(raw(&base, "MKCOL", "/files/docs/", &[], "").await.0, 201);
    assert_eq!(raw(&base, "PUT", "/files/docs/x", &[], "x").await.0, 201);
    let (status, text) = raw(&base, "PROPFIND", "/files/docs/", &[("Depth", "1")], "").await;
    assert_eq!(status, 207);
    assert!(
        text.contains("<D:href>/files/docs/</D:href>")
            && text.contains("<D:href>/files/docs/x</D:href>"),
        "{text}"
    );
    let dest = format!("{base}/files/docs/y");
    assert_eq!(
        raw(
            &base,
            "COPY",
            "/files/docs/x",
            &[("Destination", &dest)],
            ""
        )
        .await
        .0,
        201
    );
    assert_eq!(raw(&base, "GET", "/files/docs/y", &[], "").await.0, 200);
    assert_eq!(raw(&base, "GET", "/health", &[], "").await.0, 200);
}

/// `route_layer` wraps matched routes only: WebDAV requests to paths the router does not
/// know never reach the layer.
#[tokio::test]
async fn route_layer_misses_unknown_paths() {
    let router = app().route_layer(ReplLayer::new(MemStore::new()).mount("/dav"));
    let resp = router
        .oneshot(
            http::Request::builder()
                .method("MKCOL")
                .uri("/dav/new/")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        404,
        "the request went to axum's fallback, not to davrepl"
    );
}

/// `Router::layer` hands the layer the services of known routes too, so a WebDAV method on a
/// path the application owns is answered by davrepl instead of the application (or its 405):
/// the mount prefix is no longer the boundary. `wrap` and `nest` keep it exact.
#[tokio::test]
async fn router_layer_blurs_the_boundary() {
    let router = app().layer(ReplLayer::new(MemStore::new()).mount("/dav"));
    let resp = router
        .oneshot(
            http::Request::builder()
                .method("GET")
                .uri("/dav/known")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_ne!(
        &body[..],
        b"app",
        "GET /dav/known should have been the application's route ({status})"
    );
}

#[tokio::test]
async fn principal_from_an_app_extension() {
    #[derive(Clone)]
    struct User(String);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let layer = ReplLayer::new(MemStore::new()).authorize(move |p, _, path| {
        seen2
            .lock()
            .unwrap()
            .push((p.map(|p| p.0.clone()), path.to_string()));
        true
    });
    let svc = davrepl_axum::wrap(layer, app());
    let stack = tower::ServiceBuilder::new()
        .map_request(|mut r: http::Request<Body>| {
            r.extensions_mut().insert(User("alice".into()));
            r
        })
        .layer(davrepl_axum::principal_from(|u: &User| u.0.clone()))
        .service(svc);
    let resp = stack
        .oneshot(
            http::Request::builder()
                .method("PROPFIND")
                .uri("/x")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[(Some("alice".to_owned()), "/x".to_owned())]
    );
}

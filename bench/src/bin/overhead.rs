//! Layer overhead server for the side-by-side benchmark: `overhead bare` serves an axum
//! router with `GET /hello`; `overhead layered` serves the same router wrapped by `ReplLayer`
//! (mounted at `/dav`, so `/hello` takes the pass-through path). Both through
//! `davrepl_hyper::serve`, so the only difference is the layer. Prints
//! `listening on http://ADDR/` once bound.
//!
//! `overhead ceiling` is the ceiling of the plain-WebDAV rows: a bare axum handler that
//! keeps each PUT body in memory under its path and answers GET with it (MKCOL just says
//! 201), so the HTTP stack's own cost is measured with the same requests and bytes.
//!
//! `overhead ceiling-headers` is the same ceiling answering with the response headers davrepl
//! sends (for GET of an item: ETag, ResourceTag, Last-Modified, Accept-Ranges, Content-Type
//! and the two stored-content safety headers; for PUT: ETag, ResourceTag and Repl-UID) as
//! fixed strings of the same length: what sending those bytes costs the HTTP stack and the
//! client, without the work of making them.

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

/// The ceiling's state: the kept bodies, and whether GET answers with davrepl's headers.
#[derive(Clone, Default)]
struct Ceiling {
    kept: Kept,
    davrepl_headers: bool,
}

/// A davrepl GET's headers beyond the ceiling's own, with values of the lengths davrepl
/// sends (an ETag and a ResourceTag of a store's first item).
const DAVREPL_GET_HEADERS: [(&str, &str); 7] = [
    ETAG,
    RESOURCE_TAG,
    ("last-modified", "Sun, 06 Dec 2026 02:15:35 GMT"),
    ("accept-ranges", "bytes"),
    ("content-type", "application/octet-stream"),
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", "sandbox; default-src 'none'"),
];

/// The headers of davrepl's answer to a PUT.
const DAVREPL_PUT_HEADERS: [(&str, &str); 3] = [
    ETAG,
    RESOURCE_TAG,
    (
        "repl-uid",
        "<rid:b3589dcba048dce3b2150790a44b37c5000000000001>",
    ),
];

const ETAG: (&str, &str) = ("etag", "\"000000000001-000000000001\"");
const RESOURCE_TAG: (&str, &str) = (
    "resourcetag",
    "<rt:b3589dcba048dce3b2150790a44b37c5000000000001b3589dcba048dce3b2150790a44b37c5000000000001>",
);

/// `resp` with `headers` added when the ceiling runs with davrepl's headers.
fn with_headers(
    state: &Ceiling,
    mut resp: Response,
    headers: &[(&'static str, &'static str)],
) -> Response {
    if state.davrepl_headers {
        for &(name, value) in headers {
            resp.headers_mut()
                .insert(name, axum::http::HeaderValue::from_static(value));
        }
    }
    resp
}

async fn ceiling(State(state): State<Ceiling>, req: Request) -> Response {
    let kept = &state.kept;
    let path = req.uri().path().to_owned();
    match req.method().clone() {
        Method::GET => match kept.read().expect("lock").get(&path) {
            Some(b) => with_headers(&state, b.clone().into_response(), &DAVREPL_GET_HEADERS),
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
            let status = match old {
                Some(_) => StatusCode::NO_CONTENT,
                None => StatusCode::CREATED,
            };
            with_headers(&state, status.into_response(), &DAVREPL_PUT_HEADERS)
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
        "ceiling" | "ceiling-headers" => {
            let state = Ceiling {
                davrepl_headers: mode == "ceiling-headers",
                ..Ceiling::default()
            };
            let app = Router::new().fallback(ceiling).with_state(state);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::HeaderMap;
    use tower::{Layer, ServiceExt};

    use super::*;

    /// The ceiling's fixed headers stand for what davrepl sends: the same names and values of
    /// the same lengths (a store's first item), so that `ceiling-headers` keeps measuring
    /// davrepl's response head if that head changes.
    #[tokio::test]
    async fn fixed_headers_match_davrepl() {
        let svc = ReplLayer::new(MemStore::new()).layer(Router::new());
        let put = svc
            .clone()
            .oneshot(
                http::Request::put("/a.bin")
                    .body(Body::from(vec![0u8; 1024]))
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(put.status(), StatusCode::CREATED);
        same_shape(put.headers(), &DAVREPL_PUT_HEADERS);
        let get = svc
            .oneshot(
                http::Request::get("/a.bin")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(get.status(), StatusCode::OK);
        same_shape(get.headers(), &DAVREPL_GET_HEADERS);
    }

    fn same_shape(got: &HeaderMap, fixed: &[(&str, &str)]) {
        // hyper adds these to both servers' responses.
        let names: BTreeSet<&str> = got
            .keys()
            .map(|k| k.as_str())
            .filter(|n| !matches!(*n, "content-length" | "date"))
            .collect();
        let want: BTreeSet<&str> = fixed.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, want);
        for (name, value) in fixed {
            assert_eq!(got[*name].len(), value.len(), "{name}: {:?}", got[*name]);
        }
    }
}

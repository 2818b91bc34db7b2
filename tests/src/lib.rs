//! Harness for the end-to-end tests: starts a real server on a loopback port and gives a small
//! WebDAV client over `reqwest`.

use std::net::SocketAddr;

use bytes::Bytes;
use davrepl::{ReplLayer, ReplStore};
use reqwest::{Method, RequestBuilder, Response};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::Layer;

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Serves `layer` wrapped around `inner` on a fresh loopback port.
pub async fn serve_with<S: ReplStore>(layer: ReplLayer<S>, inner: axum::Router) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let service = layer.layer(inner);
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        davrepl_hyper::serve(listener, service, async {
            let _ = rx.await;
        })
        .await
        .expect("server");
    });
    TestServer {
        addr,
        client: reqwest::Client::new(),
        stop: Some(tx),
    }
}

/// Serves `layer` with a fallback that answers 404.
pub async fn serve<S: ReplStore>(layer: ReplLayer<S>) -> TestServer {
    serve_with(layer, axum::Router::new()).await
}

impl TestServer {
    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request with any method (`PROPFIND`, `MKCOL`, …).
    pub fn req(&self, method: &str, path: &str) -> RequestBuilder {
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        self.client.request(m, self.url(path))
    }

    /// Sends and returns status, headers and body.
    pub async fn send(&self, rb: RequestBuilder) -> Reply {
        let resp: Response = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("body");
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Sends `method raw_target` exactly as given over a raw TCP connection (no client-side
    /// URL normalisation) and returns the status code.
    pub async fn raw_status(&self, method: &str, raw_target: &str, extra_headers: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let req = format!(
            "{method} {raw_target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n{extra_headers}\r\n",
            self.addr
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        let text = String::from_utf8_lossy(&buf);
        text.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// PUT `data` at `path`.
    pub async fn put(&self, path: &str, data: &str) -> Reply {
        self.send(self.req("PUT", path).body(data.to_owned())).await
    }

    /// MKCOL `path`.
    pub async fn mkcol(&self, path: &str) -> Reply {
        self.send(self.req("MKCOL", path)).await
    }

    /// PROPFIND with `depth` and `body`.
    pub async fn propfind(&self, path: &str, depth: &str, body: &str) -> Reply {
        self.send(
            self.req("PROPFIND", path)
                .header("Depth", depth)
                .body(body.to_owned()),
        )
        .await
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as XML.
    pub fn xml(&self) -> xmltree::Element {
        xmltree::Element::parse(&self.body[..])
            .unwrap_or_else(|e| panic!("bad XML ({e}): {}", self.text()))
    }

    /// Asserts the status, showing the body on failure.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }
}

/// All `DAV:response` elements of a multistatus, as (href, element).
pub fn responses(ms: &xmltree::Element) -> Vec<(String, xmltree::Element)> {
    ms.children
        .iter()
        .filter_map(|n| n.as_element())
        .filter(|e| e.name == "response")
        .map(|r| {
            let href = r
                .get_child("href")
                .and_then(|h| h.get_text())
                .map(|t| t.into_owned())
                .unwrap_or_default();
            (href, r.clone())
        })
        .collect()
}

/// The text of the first descendant element named `local` (any namespace).
pub fn find_text(e: &xmltree::Element, local: &str) -> Option<String> {
    for c in e.children.iter().filter_map(|n| n.as_element()) {
        if c.name == local {
            return Some(c.get_text().map(|t| t.into_owned()).unwrap_or_default());
        }
        if let Some(t) = find_text(c, local) {
            return Some(t);
        }
    }
    None
}

/// Whether a descendant element named `local` exists.
pub fn has_element(e: &xmltree::Element, local: &str) -> bool {
    e.children
        .iter()
        .filter_map(|n| n.as_element())
        .any(|c| c.name == local || has_element(c, local))
}

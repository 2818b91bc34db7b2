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
    serve_service(layer.layer(inner)).await
}

/// Serves `inner` alone, with no davrepl layer at all, through the same HTTP server: the
/// reference a pass-through path is compared with.
pub async fn serve_plain(inner: axum::Router) -> TestServer {
    serve_service(inner).await
}

async fn serve_service<T, B>(service: T) -> TestServer
where
    T: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    T::Future: Send + 'static,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
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

/// Serves `layer` (fallback 404) to principals named by an `X-Test-User` header, as an
/// authentication layer in front of davrepl would set them; no header is anonymous.
pub async fn serve_users<S: ReplStore>(layer: ReplLayer<S>) -> TestServer {
    let inner = layer.layer(axum::Router::new());
    let service = tower::ServiceBuilder::new()
        .map_request(|mut req: http::Request<hyper::body::Incoming>| {
            let user = req
                .headers()
                .get("x-test-user")
                .and_then(|v| v.to_str().ok());
            if let Some(user) = user.map(str::to_owned) {
                req.extensions_mut().insert(davrepl::Principal(user));
            }
            req
        })
        .service(inner);
    serve_service(service).await
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
        self.raw_status_line(method, raw_target, extra_headers, "")
            .await
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// Sends a request as raw bytes (target, extra header lines ending in CRLF, and a body);
    /// returns the response's status line as sent (`HTTP/1.1 475 Invalid collblob`).
    pub async fn raw_status_line(
        &self,
        method: &str,
        raw_target: &str,
        extra_headers: &str,
        body: &str,
    ) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let req = format!(
            "{method} {raw_target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n{extra_headers}\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read");
        let text = String::from_utf8_lossy(&buf);
        text.lines().next().unwrap_or("").to_owned()
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

/// One row of a manifest response.
#[derive(Debug, Clone)]
pub struct ManifestRow {
    /// The row's href.
    pub href: String,
    /// `change` or `delete`.
    pub changetype: String,
    /// The `resourcetag` property, if present.
    pub rt: Option<String>,
    /// The `repl-uid` property, if present.
    pub rid: Option<String>,
    /// The whole `response` element.
    pub element: xmltree::Element,
}

/// A parsed manifest response.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The new collblob (`None` for an empty `repl`).
    pub collblob: Option<String>,
    /// The rows in order.
    pub rows: Vec<ManifestRow>,
    /// Namespace URI of the `repl` element.
    pub repl_ns: String,
}

impl Manifest {
    /// Parses a 207 manifest body, checking the envelope rules of spec §2.3.
    pub fn parse(reply: &Reply) -> Manifest {
        reply.expect(207);
        let root = reply.xml();
        let first = root
            .children
            .iter()
            .find_map(|n| n.as_element())
            .expect("multistatus has children");
        assert_eq!(
            first.name, "repl",
            "repl must be the first child of multistatus"
        );
        let repl_ns = first.namespace.clone().unwrap_or_default();
        let collblob = first
            .get_child("collblob")
            .map(|c| c.get_text().map(|t| t.into_owned()).unwrap_or_default());
        let rows = responses(&root)
            .into_iter()
            .map(|(href, element)| {
                let cts: Vec<_> = element
                    .children
                    .iter()
                    .filter_map(|n| n.as_element())
                    .filter(|e| e.name == "changetype")
                    .collect();
                assert_eq!(cts.len(), 1, "exactly one changetype per response");
                assert_eq!(cts[0].namespace.as_deref(), Some(repl_ns.as_str()));
                let changetype = cts[0]
                    .get_text()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                ManifestRow {
                    rt: find_text(&element, "resourcetag"),
                    rid: find_text(&element, "repl-uid"),
                    href,
                    changetype,
                    element,
                }
            })
            .collect();
        Manifest {
            collblob,
            rows,
            repl_ns,
        }
    }

    /// Hrefs of rows with `changetype`.
    pub fn hrefs(&self, changetype: &str) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.changetype == changetype)
            .map(|r| r.href.clone())
            .collect()
    }

    /// The collblob, which must be present.
    pub fn blob(&self) -> String {
        self.collblob.clone().expect("manifest carries a collblob")
    }
}

/// The XML body of a manifest SEARCH.
pub fn search_body(ns: &str, collblob: Option<&str>, sql: Option<&str>, tags: &[&str]) -> String {
    let mut b =
        format!(r#"<?xml version="1.0"?><D:searchrequest xmlns:D="DAV:" xmlns:R="{ns}"><R:repl>"#);
    match collblob {
        Some(c) => b.push_str(&format!("<R:collblob>{c}</R:collblob>")),
        None => b.push_str("<R:collblob/>"),
    }
    if !tags.is_empty() {
        b.push_str("<R:resourcetaglist>");
        for t in tags {
            let t = t
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            b.push_str(&format!("<R:resourcetag>{t}</R:resourcetag>"));
        }
        b.push_str("</R:resourcetaglist>");
    }
    b.push_str("</R:repl>");
    if let Some(q) = sql {
        let q = q.replace('&', "&amp;").replace('<', "&lt;");
        b.push_str(&format!("<D:sql>{q}</D:sql>"));
    }
    b.push_str("</D:searchrequest>");
    b
}

/// The usual replication namespace spelling.
pub const REPL: &str = "http://schemas.microsoft.com/repl/";

impl TestServer {
    /// A manifest SEARCH on `path`.
    pub async fn manifest(
        &self,
        path: &str,
        collblob: Option<&str>,
        sql: Option<&str>,
        tags: &[&str],
        range: Option<&str>,
    ) -> Reply {
        let mut rb = self
            .req("SEARCH", path)
            .header("Content-Type", "text/xml")
            .body(search_body(REPL, collblob, sql, tags));
        if let Some(r) = range {
            rb = rb.header("Range", r);
        }
        self.send(rb).await
    }

    /// The resourcetag of `path` (from a GET's `ResourceTag` header, brackets stripped).
    pub async fn rt(&self, path: &str) -> String {
        let r = self.send(self.req("HEAD", path)).await;
        r.header("resourcetag")
            .expect("ResourceTag")
            .trim_matches(['<', '>'])
            .to_owned()
    }
}

/// A server process started by a test; killed when dropped, pass or fail, so a failed
/// assertion never leaves it running (and the test harness waiting for its output).
#[derive(Debug)]
pub struct Running {
    /// The process.
    pub child: std::process::Child,
    /// `http://host:port` from its `listening on` line.
    pub base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` (a server that prints `listening on http://ADDR/…` first on stdout) and waits
/// for that line.
pub fn spawn_listening(mut cmd: std::process::Command) -> Running {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let stdout = child.stdout.take().expect("stdout");
    let mut running = Running {
        child,
        base: String::new(),
    };
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let rest = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let url = rest.trim_end_matches('/');
    // Keep only scheme://authority: a mount prefix after it is the test's business.
    let authority_end = url.find("://").map_or(url.len(), |i| {
        url[i + 3..].find('/').map_or(url.len(), |j| i + 3 + j)
    });
    running.base = url[..authority_end].to_owned();
    running
}

/// Manifest helpers for tests that talk to a server process with a plain `reqwest` client and
/// read its answers as text (the crash, restore and multi-node tests).
pub mod remote {
    /// The SEARCH body of a manifest request: `sql` since `blob` (`None`: first sync).
    pub fn manifest_body(sql: &str, blob: Option<&str>) -> String {
        let cb = blob.map_or("<R:collblob/>".to_owned(), |b| {
            format!("<R:collblob>{b}</R:collblob>")
        });
        let sql = sql.replace('&', "&amp;").replace('<', "&lt;");
        format!(
            r#"<D:searchrequest xmlns:D="DAV:" xmlns:R="http://schemas.microsoft.com/repl/"><R:repl>{cb}</R:repl><D:sql>{sql}</D:sql></D:searchrequest>"#
        )
    }

    /// Sends a manifest SEARCH to `url`; returns the status and the body text.
    pub async fn manifest(
        client: &reqwest::Client,
        url: &str,
        sql: &str,
        blob: Option<&str>,
    ) -> (u16, String) {
        let r = client
            .request(reqwest::Method::from_bytes(b"SEARCH").expect("method"), url)
            .body(manifest_body(sql, blob))
            .send()
            .await
            .expect("search");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    /// Every piece of `s` between `a` and the next `b`.
    pub fn between<'a>(s: &'a str, a: &str, b: &str) -> Vec<&'a str> {
        s.split(a)
            .skip(1)
            .filter_map(|x| x.split(b).next())
            .collect()
    }

    /// The collblob of a manifest; panics when there is none.
    pub fn blob_of(text: &str) -> String {
        between(text, "<d:collblob>", "</d:collblob>")
            .first()
            .expect("collblob")
            .to_string()
    }

    /// The change sequence number inside a resourcetag (its last 12 hex digits).
    pub fn version(rt: &str) -> u64 {
        u64::from_str_radix(&rt[rt.len() - 12..], 16).expect("hex")
    }
}

/// The body of an RFC 6578 `sync-collection` REPORT: `token` (`None`: initial sync), `level`
/// (`1` or `infinite`), `props` (the inside of `DAV:prop`, e.g. `<D:getetag/>`) and an
/// optional `nresults` limit.
pub fn sync_body(token: Option<&str>, level: &str, props: &str, limit: Option<u64>) -> String {
    let token = token.map_or(String::new(), |t| {
        t.replace('&', "&amp;").replace('<', "&lt;")
    });
    let limit = limit.map_or(String::new(), |n| {
        format!("<D:limit><D:nresults>{n}</D:nresults></D:limit>")
    });
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:"><D:sync-token>{token}</D:sync-token><D:sync-level>{level}</D:sync-level>{limit}<D:prop>{props}</D:prop></D:sync-collection>"#
    )
}

/// A `sync-collection` answer, read the way a client must read it.
#[derive(Debug, Clone)]
pub struct SyncAnswer {
    /// Changed (or new) members: href → its `response` element.
    pub changed: std::collections::BTreeMap<String, xmltree::Element>,
    /// Removed members' hrefs.
    pub removed: std::collections::BTreeSet<String>,
    /// The report was cut short (a `507` response for the collection).
    pub truncated: bool,
    /// The new token.
    pub token: String,
}

impl SyncAnswer {
    /// Parses a `207` answer for the collection at `collection` (its href); panics (failing
    /// the test) where RFC 6578 is broken: a member listed twice, a removed member with a
    /// `propstat`, a changed one without, no token.
    #[track_caller]
    pub fn parse(r: &Reply, collection: &str) -> Self {
        r.expect(207);
        let ms = r.xml();
        let mut out = Self {
            changed: Default::default(),
            removed: Default::default(),
            truncated: false,
            token: String::new(),
        };
        for (href, e) in responses(&ms) {
            let status = e.get_child("status").and_then(|s| s.get_text());
            let has_propstat = e.get_child("propstat").is_some();
            let fresh = match status.as_deref().map(|s| s.split(' ').nth(1).unwrap_or("")) {
                Some("404") => {
                    assert!(!has_propstat, "{href}: a removed member has a propstat");
                    out.removed.insert(href.clone())
                }
                Some("507") => {
                    assert_eq!(href, collection, "507 is for the collection itself");
                    assert!(!out.truncated, "two 507 responses");
                    out.truncated = true;
                    true
                }
                Some(other) => panic!("{href}: unexpected status {other}: {}", r.text()),
                None => {
                    assert!(has_propstat, "{href}: a changed member without a propstat");
                    out.changed.insert(href.clone(), e).is_none()
                }
            };
            assert!(fresh, "{href} appears more than once: {}", r.text());
            assert!(
                !(out.changed.contains_key(&href) && out.removed.contains(&href)),
                "{href} is both changed and removed"
            );
        }
        out.token = ms
            .get_child("sync-token")
            .and_then(|t| t.get_text())
            .map(|t| t.into_owned())
            .unwrap_or_else(|| panic!("no sync-token: {}", r.text()));
        out
    }
}

impl TestServer {
    /// A `sync-collection` REPORT on `path` (Depth: 0).
    pub async fn sync(
        &self,
        path: &str,
        token: Option<&str>,
        level: &str,
        props: &str,
        limit: Option<u64>,
    ) -> Reply {
        self.send(
            self.req("REPORT", path)
                .header("Depth", "0")
                .header("Content-Type", "application/xml")
                .body(sync_body(token, level, props, limit)),
        )
        .await
    }
}

//! A typed async client for a davrepl (or Exchange-style) WebDAV replication server.
//!
//! A [`Client`] is bound to one collection URL (the *base*); every path it takes is relative
//! to that collection, as plain text (`"notes/todo.txt"`) — the client percent-encodes it.
//!
//! - [`Client::manifest`] asks what changed since a collblob (PROPFIND `Depth: infinity,noroot`
//!   with a `repl` element), one `Range: rows=` page at a time, optionally held by the server
//!   until something changes (`Prefer: wait=N`); [`Client::manifest_all`] pages to the end.
//! - Writes take a [`Condition`]: `If: (<resourcetag>)` to replace exactly the version a
//!   client holds, `If-None-Match: *` to create only what does not exist yet. A lost race is
//!   [`ErrorKind::PreconditionFailed`], never a silent overwrite.
//! - [`Client::events`] opens the live event stream (Server-Sent Events), resumable from the
//!   cursor of any event it delivered.
//! - Every error has an [`ErrorKind`] a caller can branch on: a `475 Invalid collblob` means
//!   "start over with a full resync" ([`ErrorKind::InvalidCollblob`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), davrepl_client::Error> {
//! use davrepl_client::{Client, Condition};
//! let client = Client::builder("http://127.0.0.1:8080/notes/").build()?;
//! let page = client.manifest_all(None).await?;          // first sync: everything
//! for row in &page.rows {
//!     println!("{row:?}");
//! }
//! let written = client.put("todo.txt", "milk", Condition::Absent).await?;
//! // later: replace it only if nobody else did meanwhile
//! client.put("todo.txt", "milk, eggs", Condition::Tag(written.tag.unwrap())).await?;
//! let changes = client.manifest_all(Some(&page.collblob)).await?;
//! # let _ = changes; Ok(()) }
//! ```

mod error;
mod events;
mod manifest;
mod paths;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use reqwest::{Method, RequestBuilder, Response, StatusCode};

pub use error::{Error, ErrorKind};
pub use events::{Event, EventStream};
pub use manifest::{Item, ManifestPage, Row};
use paths::encode_path;

/// The condition a write is made under.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Condition {
    /// Unconditional (last writer wins).
    #[default]
    None,
    /// Only if the target is still at this resourcetag (`If: (<rt:…>)`).
    Tag(String),
    /// Only if nothing exists at the target yet (`If-None-Match: *`).
    Absent,
}

/// What the server said about the resource a write left behind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Written {
    /// Its new resourcetag (`ResourceTag` header), when the server sent one.
    pub tag: Option<String>,
    /// Its repl-uid (`Repl-UID` header), when the server sent one.
    pub rid: Option<String>,
    /// `201 Created` (rather than an update).
    pub created: bool,
}

/// A download in progress: the tokens of the version being sent and its body.
#[derive(Debug)]
pub struct Download {
    /// The resourcetag of the version in the body.
    pub tag: Option<String>,
    /// The repl-uid of the resource.
    pub rid: Option<String>,
    /// `Content-Length`, when known.
    pub len: Option<u64>,
    response: Response,
}

impl Download {
    /// The next chunk of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        self.response.chunk().await.map_err(Error::transport)
    }

    /// The whole body in memory.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        self.response.bytes().await.map_err(Error::transport)
    }
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base: String,
    user: Option<(String, String)>,
    timeout: Option<Duration>,
    rows_per_page: usize,
    max_response_bytes: usize,
}

impl ClientBuilder {
    /// HTTP Basic credentials sent with every request.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// A timeout for connecting and for each response's headers (none by default; long polls
    /// add their wait on top).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many manifest rows [`Client::manifest_all`] asks for per request (default 1,000).
    pub fn rows_per_page(mut self, rows: usize) -> Self {
        self.rows_per_page = rows.max(1);
        self
    }

    /// The largest multistatus answer (manifest page, PROPFIND) read into memory; a server
    /// sending more is a [`ErrorKind::Protocol`] error, noticed while reading (default 256 MiB).
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Checks the URL and builds the client.
    pub fn build(self) -> Result<Client, Error> {
        let url = reqwest::Url::parse(&self.base)
            .map_err(|e| Error::usage(format!("{}: {e}", self.base)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::usage(format!("{}: not an http(s) URL", self.base)));
        }
        if url.scheme() == "https" && !cfg!(feature = "tls") {
            return Err(Error::usage(
                "https needs davrepl-client's `tls` feature (built without it)",
            ));
        }
        let mut origin = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        if let Some(port) = url.port() {
            origin.push_str(&format!(":{port}"));
        }
        let mut base_path = paths::decode(url.path())?;
        if !base_path.ends_with('/') {
            base_path.push('/');
        }
        let mut http = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(30));
        if let Some(t) = self.timeout {
            http = http.connect_timeout(t);
        }
        Ok(Client {
            http: http.build().map_err(Error::transport)?,
            origin,
            base_path,
            user: self.user,
            timeout: self.timeout,
            rows_per_page: self.rows_per_page,
            max_response_bytes: self.max_response_bytes,
        })
    }
}

/// An async client bound to one collection of a replication server. Cheap to clone (one
/// connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `scheme://host[:port]`.
    origin: String,
    /// The base collection's path, decoded, ending in `/`.
    base_path: String,
    user: Option<(String, String)>,
    timeout: Option<Duration>,
    rows_per_page: usize,
    max_response_bytes: usize,
}

fn header_token(resp: &Response, name: &str) -> Option<String> {
    let v = resp.headers().get(name)?.to_str().ok()?.trim();
    let v = v
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(v);
    Some(v.to_owned())
}

fn written(resp: &Response) -> Written {
    Written {
        tag: header_token(resp, "resourcetag"),
        rid: header_token(resp, "repl-uid"),
        created: resp.status() == StatusCode::CREATED,
    }
}

impl Client {
    /// Starts building a client for the collection at `url` (`http://host/dav/notes/`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: url.into(),
            user: None,
            timeout: None,
            rows_per_page: 1000,
            max_response_bytes: 256 << 20,
        }
    }

    /// The base collection's URL.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.origin, encode_path(&self.base_path))
    }

    /// The full URL of `path` (relative to the base; a trailing `/` names a collection).
    pub fn url(&self, path: &str) -> String {
        let rel = path.trim_start_matches('/');
        format!(
            "{}{}",
            self.origin,
            encode_path(&format!("{}{rel}", self.base_path))
        )
    }

    fn request(&self, method: &str, path: &str) -> RequestBuilder {
        let method = Method::from_bytes(method.as_bytes()).expect("a valid method name");
        let mut rb = self.http.request(method, self.url(path));
        if let Some((u, p)) = &self.user {
            rb = rb.basic_auth(u, Some(p));
        }
        if let Some(t) = self.timeout {
            rb = rb.timeout(t);
        }
        rb
    }

    async fn send(&self, rb: RequestBuilder, what: &str) -> Result<Response, Error> {
        let resp = rb.send().await.map_err(Error::transport)?;
        if resp.status().is_success() || resp.status() == StatusCode::MULTI_STATUS {
            return Ok(resp);
        }
        Err(Error::from_response(resp, what).await)
    }

    /// Reads an answer's body, refusing it as soon as it passes the limit.
    async fn body(&self, mut resp: Response) -> Result<Bytes, Error> {
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(Error::transport)? {
            if out.len() + chunk.len() > self.max_response_bytes {
                return Err(Error::protocol(format!(
                    "the answer is larger than {} bytes",
                    self.max_response_bytes
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    fn with_condition(rb: RequestBuilder, cond: &Condition) -> RequestBuilder {
        match cond {
            Condition::None => rb,
            Condition::Tag(t) => rb.header("If", format!("(<{t}>)")),
            Condition::Absent => rb.header("If-None-Match", "*"),
        }
    }

    /// `GET path`: the tokens of the version and a body to read.
    pub async fn get(&self, path: &str) -> Result<Download, Error> {
        let resp = self
            .send(self.request("GET", path), &format!("GET {path}"))
            .await?;
        Ok(Download {
            tag: header_token(&resp, "resourcetag"),
            rid: header_token(&resp, "repl-uid"),
            len: resp.content_length(),
            response: resp,
        })
    }

    /// `PUT path` with a body in memory.
    pub async fn put(
        &self,
        path: &str,
        body: impl Into<Bytes>,
        cond: Condition,
    ) -> Result<Written, Error> {
        let rb = Self::with_condition(self.request("PUT", path), &cond).body(body.into());
        let resp = self.send(rb, &format!("PUT {path}")).await?;
        Ok(written(&resp))
    }

    /// `PUT path` streaming a local file, with extra headers (for example `X-OC-Mtime` or
    /// `OC-Checksum: SHA256:…`, which makes the server refuse a body that changed on the way).
    pub async fn put_file(
        &self,
        path: &str,
        file: &Path,
        cond: Condition,
        headers: &[(&str, String)],
    ) -> Result<Written, Error> {
        let f = tokio::fs::File::open(file).await.map_err(Error::io)?;
        let len = f.metadata().await.map_err(Error::io)?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024).map_err(|e| e);
        let mut rb = Self::with_condition(self.request("PUT", path), &cond)
            .header("Content-Length", len)
            .body(reqwest::Body::wrap_stream(stream));
        for (k, v) in headers {
            rb = rb.header(*k, v);
        }
        let resp = self.send(rb, &format!("PUT {path}")).await?;
        Ok(written(&resp))
    }

    /// `DELETE path` (a collection is deleted with everything in it).
    pub async fn delete(&self, path: &str, cond: Condition) -> Result<(), Error> {
        let rb = Self::with_condition(self.request("DELETE", path), &cond);
        self.send(rb, &format!("DELETE {path}")).await?;
        Ok(())
    }

    /// `MKCOL path`.
    pub async fn mkcol(&self, path: &str) -> Result<Written, Error> {
        let resp = self
            .send(self.request("MKCOL", path), &format!("MKCOL {path}"))
            .await?;
        Ok(written(&resp))
    }

    /// `MOVE from to` (the repl-uid travels with the resource). With `overwrite` false an
    /// existing destination is [`ErrorKind::PreconditionFailed`].
    pub async fn move_to(
        &self,
        from: &str,
        to: &str,
        cond: Condition,
        overwrite: bool,
    ) -> Result<Written, Error> {
        let rb = Self::with_condition(self.request("MOVE", from), &cond)
            .header("Destination", self.url(to))
            .header("Overwrite", if overwrite { "T" } else { "F" });
        let resp = self.send(rb, &format!("MOVE {from} → {to}")).await?;
        Ok(written(&resp))
    }

    /// `PROPPATCH path` setting dead or settable properties, given as
    /// (namespace, local name, text value).
    pub async fn proppatch(
        &self,
        path: &str,
        set: &[(&str, &str, &str)],
        cond: Condition,
    ) -> Result<(), Error> {
        let body = manifest::proppatch_body(set);
        let rb = Self::with_condition(self.request("PROPPATCH", path), &cond)
            .header("Content-Type", "application/xml")
            .body(body);
        let resp = self.send(rb, &format!("PROPPATCH {path}")).await?;
        let text = self.body(resp).await?;
        manifest::check_proppatch(&text)
    }

    /// `PROPFIND path` (`Depth: 0` or `1`) for the replication tokens, size, type, time and
    /// checksum of each resource.
    pub async fn propfind(&self, path: &str, depth_one: bool) -> Result<Vec<Item>, Error> {
        let rb = self
            .request("PROPFIND", path)
            .header("Depth", if depth_one { "1" } else { "0" })
            .header("Content-Type", "application/xml")
            .body(manifest::propfind_body(None));
        let resp = self.send(rb, &format!("PROPFIND {path}")).await?;
        let text = self.body(resp).await?;
        let page = manifest::parse(&text, &self.base_path, false)?;
        Ok(page
            .rows
            .into_iter()
            .filter_map(|r| match r {
                Row::Change(i) => Some(i),
                Row::Delete { .. } => None,
            })
            .collect())
    }

    /// One page of the manifest of everything under the base collection since `collblob`
    /// (`None`: a first sync, every item). `rows` asks for at most that many rows
    /// (`Range: rows=0-…`); `wait` asks the server to hold an empty answer until something
    /// changes, up to that long (`Prefer: wait=N`).
    pub async fn manifest(
        &self,
        collblob: Option<&str>,
        rows: Option<usize>,
        wait: Option<Duration>,
    ) -> Result<ManifestPage, Error> {
        let mut rb = self
            .request("PROPFIND", "")
            .header("Depth", "infinity,noroot")
            .header("Brief", "t")
            .header("Content-Type", "application/xml")
            .body(manifest::propfind_body(Some(collblob.unwrap_or(""))));
        if let Some(n) = rows {
            rb = rb.header("Range", format!("rows=0-{}", n.max(1) - 1));
        }
        if let Some(w) = wait {
            let secs = w.as_secs().max(1);
            rb = rb.header("Prefer", format!("wait={secs}"));
            if let Some(t) = self.timeout {
                rb = rb.timeout(t + w);
            }
        }
        let resp = rb.send().await.map_err(Error::transport)?;
        if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            // Past the end: nothing more, and the collblob the client holds stays current.
            return Ok(ManifestPage {
                collblob: collblob.unwrap_or_default().to_owned(),
                rows: Vec::new(),
                total: Some(0),
            });
        }
        if resp.status() != StatusCode::MULTI_STATUS {
            return Err(Error::from_response(resp, "manifest").await);
        }
        let total = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(manifest::content_range_total);
        let text = self.body(resp).await?;
        let mut page = manifest::parse(&text, &self.base_path, true)?;
        page.total = total;
        if page.collblob.is_empty() {
            page.collblob = collblob.unwrap_or_default().to_owned();
        }
        Ok(page)
    }

    /// Opens the event stream of the base collection (`Depth: infinity` when `deep`, else
    /// `1`), starting after `cursor` (an event's cursor) or at the current end of the change
    /// log.
    pub async fn events(&self, deep: bool, cursor: Option<&str>) -> Result<EventStream, Error> {
        let method = Method::GET;
        let mut rb = self
            .http
            .request(method, self.url(""))
            .header("Accept", "text/event-stream")
            .header("Depth", if deep { "infinity" } else { "1" });
        if let Some((u, p)) = &self.user {
            rb = rb.basic_auth(u, Some(p));
        }
        if let Some(c) = cursor {
            rb = rb.header("Last-Event-ID", c);
        }
        let resp = self.send(rb, "event stream").await?;
        Ok(EventStream::new(resp, self.base_path.clone()))
    }

    /// Every row since `collblob`, paging with [`ClientBuilder::rows_per_page`] rows per
    /// request (each request sends the collblob the previous one returned); the returned page
    /// holds them all and the last collblob.
    pub async fn manifest_all(&self, collblob: Option<&str>) -> Result<ManifestPage, Error> {
        let mut blob = collblob.map(str::to_owned);
        let mut all = ManifestPage::default();
        loop {
            let page = self
                .manifest(blob.as_deref(), Some(self.rows_per_page), None)
                .await?;
            let n = page.rows.len();
            let more = match page.total {
                Some(total) => n > 0 && n < total,
                None => n >= self.rows_per_page,
            };
            all.rows.extend(page.rows);
            all.collblob = page.collblob;
            blob = Some(all.collblob.clone());
            if !more {
                break;
            }
        }
        all.total = Some(all.rows.len());
        Ok(all)
    }
}

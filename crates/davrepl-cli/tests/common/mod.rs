//! A real server on a loopback port (SQLite store in a temp dir) and helpers to sync folders
//! with it and compare trees by hash.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use davrepl::ReplLayer;
use davrepl_auth::BasicAuth;
use davrepl_cli::{Options, Summary, Syncer};
use davrepl_client::{Client, Row};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tower::Layer;
use tower_http::auth::AsyncRequireAuthorizationLayer;

/// A server and a scratch directory; the server stops when dropped.
pub(crate) struct World {
    pub(crate) addr: SocketAddr,
    pub(crate) tmp: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl World {
    /// Starts the server and creates the collection `/dav/sync/`.
    pub(crate) async fn start() -> World {
        Self::start_with(None).await
    }

    /// Starts the server, behind HTTP Basic authentication of one user when `user` is given.
    pub(crate) async fn start_with(user: Option<(&str, &str)>) -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = davrepl_sqlite::SqliteStore::open(tmp.path().join("store.db"))
            .await
            .expect("store");
        let app = tower::service_fn(|_req: http::Request<davrepl_hyper::Incoming>| async {
            let mut r = http::Response::new(Full::new(Bytes::from_static(b"not here\n")));
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            Ok::<_, std::convert::Infallible>(r)
        });
        let svc = ReplLayer::new(store).mount("/dav").service(app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel();
        let users: Vec<(String, String)> = user
            .iter()
            .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
            .collect();
        let authed = !users.is_empty();
        tokio::spawn(async move {
            let stop = async {
                let _ = rx.await;
            };
            if authed {
                let auth = AsyncRequireAuthorizationLayer::new(BasicAuth::new(users));
                davrepl_hyper::serve(listener, auth.layer(svc), stop).await
            } else {
                davrepl_hyper::serve(listener, svc, stop).await
            }
            .expect("serve");
        });
        let mut root = Client::builder(format!("http://{addr}/dav/"));
        if let Some((u, p)) = user {
            root = root.basic_auth(u, p);
        }
        let root = root.build().expect("client");
        root.mkcol("sync").await.expect("MKCOL /dav/sync/");
        World {
            addr,
            tmp,
            stop: Some(tx),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/dav/sync/", self.addr)
    }

    pub(crate) fn client(&self) -> Client {
        Client::builder(self.url()).build().expect("client")
    }

    /// A fresh, empty local folder.
    pub(crate) fn folder(&self, name: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }

    /// Syncs `dir` once; every sync must settle without failures.
    pub(crate) async fn sync(&self, dir: &Path) -> Summary {
        let s = self.sync_raw(dir).await;
        assert!(s.failures.is_empty(), "failures: {:?}", s.failures);
        assert!(s.converged, "did not settle: {s:?}");
        s
    }

    /// Syncs `dir` once and returns whatever happened.
    pub(crate) async fn sync_raw(&self, dir: &Path) -> Summary {
        let syncer = Syncer::open(&Options {
            dir: dir.to_path_buf(),
            url: self.url(),
            credentials: None,
            dry_run: false,
            quiet: true,
            concurrency: 4,
        })
        .expect("open");
        syncer.sync_once().await.expect("sync")
    }

    /// The server's tree: path → SHA-256 (folders: `None`), read from a full manifest.
    pub(crate) async fn server_tree(&self) -> BTreeMap<String, Option<String>> {
        let page = self.client().manifest_all(None).await.expect("manifest");
        let mut out = BTreeMap::new();
        for row in page.rows {
            if let Row::Change(item) = row {
                let v = if item.is_collection {
                    None
                } else {
                    Some(item.sha256.clone().expect("server checksum"))
                };
                out.insert(item.path.clone(), v);
            }
        }
        out
    }

    /// The repl-uid the server has for `path`.
    pub(crate) async fn rid(&self, path: &str) -> String {
        let items = self.client().propfind(path, false).await.expect("propfind");
        items[0].rid.clone().expect("rid")
    }
}

/// A local tree: path → SHA-256 (folders: `None`), `.davrepl/` left out.
pub(crate) fn tree(root: &Path) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, Option<String>>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let name = e.file_name().into_string().expect("utf-8 name");
        if rel.is_empty() && name == ".davrepl" {
            continue;
        }
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = e.file_type().expect("type");
        if ft.is_dir() {
            out.insert(path.clone(), None);
            walk(&e.path(), &path, out);
        } else if ft.is_file() {
            out.insert(path, Some(sha256(&std::fs::read(e.path()).expect("read"))));
        }
    }
}

pub(crate) fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a file (parents created).
pub(crate) fn write(root: &Path, path: &str, data: impl AsRef<[u8]>) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

pub(crate) fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).expect("read")
}

/// Both folders and the server hold the same tree.
pub(crate) async fn assert_converged(
    w: &World,
    a: &Path,
    b: &Path,
) -> BTreeMap<String, Option<String>> {
    let ta = tree(a);
    let tb = tree(b);
    let ts = w.server_tree().await;
    assert_eq!(ta, ts, "folder A and the server differ");
    assert_eq!(tb, ts, "folder B and the server differ");
    ts
}

//! Two `davrepl-server` processes on one PostgreSQL database, as behind a load balancer: a
//! collblob from one node works on the other, conflicting conditional writes through both have
//! one winner, and killing a node loses nothing it acknowledged.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use davrepl_postgres::throwaway::Cluster;
use davrepl_tests::remote::{self, between, blob_of, version};
use davrepl_tests::{Running, spawn_listening};

fn node(url: &str) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_davrepl-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--store", url])
        .env("DAVREPL_LOG", "warn")
        .stderr(Stdio::null());
    spawn_listening(cmd)
}

fn method(m: &str) -> reqwest::Method {
    reqwest::Method::from_bytes(m.as_bytes()).expect("method")
}

fn rt_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("resourcetag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_matches(['<', '>'])
        .to_owned()
}

const SQL: &str = r#"SELECT "http://schemas.microsoft.com/repl/resourcetag" FROM SCOPE('SHALLOW TRAVERSAL OF "/data/"')"#;

async fn manifest(client: &reqwest::Client, base: &str, blob: Option<&str>) -> (u16, String) {
    remote::manifest(client, &format!("{base}/data/"), SQL, blob).await
}

/// (file name → changetype) of a manifest.
fn rows(text: &str) -> HashMap<String, String> {
    between(text, "<a:response>", "</a:response>")
        .into_iter()
        .filter_map(|r| {
            let href = between(r, "<a:href>", "</a:href>").first()?.to_string();
            let ct = between(r, "<d:changetype>", "</d:changetype>")
                .first()
                .map_or_else(String::new, |s| s.to_string());
            Some((href.rsplit('/').next()?.to_owned(), ct))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_one_database() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.create_database().await.expect("database");
    let a = node(&url);
    let b = node(&url);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // Write through A.
    let r = client
        .request(method("MKCOL"), format!("{}/data/", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let mut tags = HashMap::new();
    for i in 0..20 {
        let r = client
            .put(format!("{}/data/f{i}", a.base))
            .body(format!("v1 of f{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        tags.insert(i, rt_of(&r));
    }

    // First sync through A, changes through A, delta through B with A's collblob.
    let (status, first) = manifest(&client, &a.base, None).await;
    assert_eq!(status, 207, "{first}");
    assert_eq!(rows(&first).len(), 20, "{first}");
    let blob = blob_of(&first);
    for i in 0..3 {
        let r = client
            .put(format!("{}/data/f{i}", a.base))
            .body("v2")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
        tags.insert(i, rt_of(&r));
    }
    for i in 18..20 {
        let r = client
            .delete(format!("{}/data/f{i}", a.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    let (status, delta) = manifest(&client, &b.base, Some(&blob)).await;
    assert_eq!(status, 207, "A's collblob must be valid on B: {delta}");
    let delta_rows = rows(&delta);
    let mut changed: Vec<_> = delta_rows
        .iter()
        .filter(|(_, ct)| *ct == "change")
        .map(|(n, _)| n.clone())
        .collect();
    changed.sort();
    let mut deleted: Vec<_> = delta_rows
        .iter()
        .filter(|(_, ct)| *ct == "delete")
        .map(|(n, _)| n.clone())
        .collect();
    deleted.sort();
    assert_eq!(changed, ["f0", "f1", "f2"], "{delta}");
    assert_eq!(deleted, ["f18", "f19"], "{delta}");

    // B serves what A wrote, with A's tags.
    let r = client
        .get(format!("{}/data/f0", b.base))
        .send()
        .await
        .unwrap();
    assert_eq!(rt_of(&r), tags[&0]);
    assert_eq!(r.text().await.unwrap(), "v2");

    // Conflicting conditional PUTs through A and B holding the same tag: one winner a round.
    for round in 0..10 {
        let held = tags[&5].clone();
        let put = |base: String, held: String, who: &'static str| {
            let client = client.clone();
            async move {
                let r = client
                    .put(format!("{base}/data/f5"))
                    .header("If", format!("(<{held}>)"))
                    .body(format!("round {round} by {who}"))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), rt_of(&r))
            }
        };
        let (ra, rb) = tokio::join!(
            put(a.base.clone(), held.clone(), "A"),
            put(b.base.clone(), held, "B")
        );
        let mut statuses = [ra.0, rb.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [204, 412], "round {round}: exactly one winner");
        let winner = if ra.0 == 204 { ra.1 } else { rb.1 };
        tags.insert(5, winner);
    }
    let r = client
        .head(format!("{}/data/f5", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(rt_of(&r), tags[&5], "the last winner's tag is current on A");

    // Kill A in the middle of a write storm through both nodes: every acknowledged write is
    // there afterwards, and the collblob taken before the storm reports all of them.
    let (_, before) = manifest(&client, &b.base, None).await;
    let before_blob = blob_of(&before);
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let mut a = a;
    let storm: Vec<_> = (0..6)
        .map(|w| {
            let base = if w % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let (client, acked) = (client.clone(), acked.clone());
            tokio::spawn(async move {
                for i in 0..400 {
                    let path = format!("/data/s-w{w}-{}", i % 4);
                    let Ok(r) = client
                        .put(format!("{base}{path}"))
                        .body(format!("{w}:{i}"))
                        .send()
                        .await
                    else {
                        return;
                    };
                    if !r.status().is_success() {
                        return;
                    }
                    acked.lock().unwrap().insert(path, rt_of(&r));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.child.kill().expect("SIGKILL node A");
    let _ = a.child.wait();
    for t in storm {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 12,
        "too few acknowledged writes to prove anything: {acked:?}"
    );
    let (status, after) = manifest(&client, &b.base, Some(&before_blob)).await;
    assert_eq!(status, 207, "{after}");
    let after_rows = rows(&after);
    for (path, rt) in &acked {
        let name = path.rsplit('/').next().unwrap();
        assert!(
            after_rows.contains_key(name),
            "{path} missing from the manifest"
        );
        let r = client
            .head(format!("{}{path}", b.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let now = rt_of(&r);
        // The acknowledged state, or a later one written by the same writer.
        assert!(
            version(&now) >= version(rt),
            "{path}: {now} older than acknowledged {rt}"
        );
    }
    // A restarted node sees the same.
    let a2 = node(&url);
    let r = client
        .get(format!("{}/data/f0", a2.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "v2");
    drop(b);
}

/// One `sync-collection` REPORT (level infinite, ETags, at most `limit` members) sent to
/// `base`, read as a client must read it.
async fn sync_report(
    client: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    limit: u64,
) -> davrepl_tests::SyncAnswer {
    let r = client
        .request(method("REPORT"), format!("{base}/data/"))
        .header("Depth", "0")
        .body(davrepl_tests::sync_body(
            token,
            "infinite",
            "<D:getetag/>",
            Some(limit),
        ))
        .send()
        .await
        .unwrap();
    davrepl_tests::SyncAnswer::parse(&reply(r).await, "/data/")
}

async fn reply(r: reqwest::Response) -> davrepl_tests::Reply {
    davrepl_tests::Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap(),
    }
}

/// RFC 6578 across nodes: writers on both nodes, a client whose every report goes to the
/// other node than the last (each with the previous node's token, pages of 5), converges on
/// exactly what the database holds — no change skipped between nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_tokens_move_between_nodes_and_skip_nothing() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.create_database().await.expect("database");
    let nodes = [node(&url), node(&url)];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let r = client
        .request(method("MKCOL"), format!("{}/data/", nodes[0].base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, n) in nodes.iter().enumerate() {
        let (client, base, stop) = (client.clone(), n.base.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let target = format!("{base}/data/n{w}-{}", i % 9);
                let _ = if i % 4 == 3 {
                    client.delete(target).send().await
                } else {
                    client.put(target).body(i.to_string()).send().await
                };
                i += 1;
            }
        }));
    }
    let mut replica: HashMap<String, String> = HashMap::new();
    let apply = |replica: &mut HashMap<String, String>, a: &davrepl_tests::SyncAnswer| {
        for (href, e) in &a.changed {
            let etag = davrepl_tests::find_text(e, "getetag").unwrap_or_default();
            replica.insert(href.clone(), etag);
        }
        for href in &a.removed {
            replica.remove(href);
        }
    };
    let mut token: Option<String> = None;
    for round in 0..30 {
        let a = sync_report(&client, &nodes[round % 2].base, token.as_deref(), 5).await;
        apply(&mut replica, &a);
        token = Some(a.token);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    for round in 0.. {
        let a = sync_report(&client, &nodes[round % 2].base, token.as_deref(), 5).await;
        apply(&mut replica, &a);
        token = Some(a.token);
        if !a.truncated {
            break;
        }
    }
    let r = client
        .request(method("PROPFIND"), format!("{}/data/", nodes[1].base))
        .header("Depth", "1")
        .body(r#"<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>"#)
        .send()
        .await
        .unwrap();
    let ms = reply(r).await.xml();
    let truth: HashMap<String, String> = davrepl_tests::responses(&ms)
        .into_iter()
        .filter(|(href, _)| href != "/data/")
        .map(|(href, e)| {
            (
                href,
                davrepl_tests::find_text(&e, "getetag").unwrap_or_default(),
            )
        })
        .collect();
    assert!(!truth.is_empty());
    assert_eq!(replica, truth, "the replica converged across nodes");
}

const LOCKINFO: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>
<D:locktype><D:write/></D:locktype><D:owner>node test</D:owner></D:lockinfo>"#;

/// A lock taken through one node is enforced by the other (lock state lives in the database),
/// and nodes racing for one exclusive lock give exactly one winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locks_hold_across_nodes() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.create_database().await.expect("database");
    let (a, b) = (node(&url), node(&url));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let lock = |base: &str, path: &str| {
        client
            .request(method("LOCK"), format!("{base}{path}"))
            .header("Depth", "0")
            .header("Timeout", "Second-600")
            .body(LOCKINFO)
            .send()
    };
    let r = client
        .put(format!("{}/doc", a.base))
        .body("v1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();

    let r = lock(&a.base, "/doc").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let token = r.headers()["lock-token"].to_str().unwrap().to_owned();
    assert!(token.starts_with("<opaquelocktoken:"), "{token}");
    let r = client
        .put(format!("{}/doc", b.base))
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 423, "node B must see A's lock");
    let r = lock(&b.base, "/doc").await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        423,
        "a second exclusive lock through B"
    );
    let r = client
        .put(format!("{}/doc", b.base))
        .header("If", format!("({token} [{etag}])"))
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "with the token, through B");
    let r = client
        .request(method("UNLOCK"), format!("{}/doc", b.base))
        .header("Lock-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "released through B");
    let r = client
        .put(format!("{}/doc", a.base))
        .body("v3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "free again through A");

    // 16 tasks, half through each node, race for one exclusive lock.
    let r = client
        .put(format!("{}/contended", a.base))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let base = if i % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let (client, barrier) = (client.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let r = client
                    .request(method("LOCK"), format!("{base}/contended"))
                    .header("Depth", "0")
                    .body(LOCKINFO)
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    codes.sort_unstable();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 423), "{codes:?}");
}

/// Live changes across nodes: an event stream open on node B sees a write made through node
/// A (PostgreSQL LISTEN/NOTIFY wakes B), and a subscription made through A is polled on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_changes_cross_nodes() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.create_database().await.expect("database");
    let (a, b) = (node(&url), node(&url));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = client
        .request(method("MKCOL"), format!("{}/feed/", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let sub = client
        .request(method("SUBSCRIBE"), format!("{}/feed/", a.base))
        .header("Notification-Type", "update")
        .send()
        .await
        .unwrap();
    assert_eq!(sub.status().as_u16(), 200);
    let id = sub.headers()["subscription-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let mut stream = client
        .get(format!("{}/feed/", b.base))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let mut seen = String::new();
    // Wait for `ready`, then write through A.
    while !seen.contains("event: ready") {
        let chunk = stream.chunk().await.unwrap().expect("stream open");
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let r = client
        .put(format!("{}/feed/news", a.base))
        .body("n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.contains("event: change") {
            let chunk = stream.chunk().await.unwrap().expect("stream open");
            seen.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    assert!(waited.is_ok(), "B's stream saw A's write: {seen}");
    assert!(seen.contains("/feed/news"), "{seen}");

    let polled = client
        .request(method("POLL"), format!("{}/feed/", b.base))
        .header("Subscription-ID", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(polled.status().as_u16(), 207);
    let text = polled.text().await.unwrap();
    assert!(
        text.contains("200 OK") && text.contains(&format!("<D:li>{id}</D:li>")),
        "{text}"
    );
}

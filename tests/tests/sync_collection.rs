//! RFC 6578 `sync-collection` end to end over TCP: initial and delta syncs, removed members,
//! both levels, limits with `507` paging to completion under concurrent writers, every refused
//! token, property selection, and the same log read through collblob manifests at the same
//! time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use davrepl::{Limits, MemStore, ReplLayer};
use davrepl_tests::{
    Manifest, SyncAnswer, TestServer, find_text, has_element, responses, serve, serve_users,
};

const ETAG: &str = "<D:getetag/>";

async fn server() -> TestServer {
    serve(ReplLayer::new(MemStore::new())).await
}

async fn collection(s: &TestServer, path: &str, items: &[&str]) {
    s.mkcol(path).await.expect(201);
    for i in items {
        s.put(&format!("{path}{i}"), i).await.expect(201);
    }
}

async fn sync(s: &TestServer, path: &str, token: Option<&str>, level: &str) -> SyncAnswer {
    SyncAnswer::parse(&s.sync(path, token, level, ETAG, None).await, path)
}

fn hrefs<'a>(it: impl IntoIterator<Item = &'a String>) -> Vec<&'a str> {
    it.into_iter().map(String::as_str).collect()
}

/// The `DAV:error` condition of a refusal.
#[track_caller]
fn refused(r: &davrepl_tests::Reply, status: u16, condition: &str) {
    r.expect(status);
    assert!(
        has_element(&r.xml(), condition),
        "expected DAV:{condition}: {}",
        r.text()
    );
}

#[tokio::test]
async fn initial_sync_lists_members_and_never_removed_ones() {
    let s = server().await;
    collection(&s, "/cal/", &["a.ics", "b.ics", "gone.ics"]).await;
    s.mkcol("/cal/sub/").await.expect(201);
    s.put("/cal/sub/deep.ics", "d").await.expect(201);
    s.send(s.req("DELETE", "/cal/gone.ics")).await.expect(204);

    let one = sync(&s, "/cal/", None, "1").await;
    assert_eq!(
        hrefs(one.changed.keys()),
        ["/cal/a.ics", "/cal/b.ics", "/cal/sub/"]
    );
    assert!(
        one.removed.is_empty(),
        "an initial sync reports no removed member"
    );
    assert!(!one.truncated);
    assert!(one.token.starts_with("urn:davrepl:sync:"), "{}", one.token);
    for (href, e) in &one.changed {
        let etag = find_text(e, "getetag").unwrap();
        let head = s.send(s.req("HEAD", href)).await;
        assert_eq!(head.header("etag"), Some(etag.as_str()), "{href}");
    }

    let all = sync(&s, "/cal/", None, "infinite").await;
    assert_eq!(
        hrefs(all.changed.keys()),
        ["/cal/a.ics", "/cal/b.ics", "/cal/sub/", "/cal/sub/deep.ics"]
    );
    // An empty `sync-token` element and an absent one both start an initial sync.
    let body = r#"<D:sync-collection xmlns:D="DAV:"><D:sync-level>1</D:sync-level><D:prop/></D:sync-collection>"#;
    let r = s.send(s.req("REPORT", "/cal/").body(body)).await;
    let bare = SyncAnswer::parse(&r, "/cal/");
    assert_eq!(bare.changed.len(), 3);
}

#[tokio::test]
async fn a_delta_reports_exactly_what_changed() {
    let s = server().await;
    collection(&s, "/cal/", &["keep", "edit", "drop", "move"]).await;
    let t0 = sync(&s, "/cal/", None, "1").await.token;

    s.put("/cal/edit", "edited").await.expect(204);
    s.put("/cal/new", "new").await.expect(201);
    s.send(s.req("DELETE", "/cal/drop")).await.expect(204);
    s.send(
        s.req("MOVE", "/cal/move")
            .header("Destination", s.url("/cal/moved")),
    )
    .await
    .expect(201);
    let d = sync(&s, "/cal/", Some(&t0), "1").await;
    assert_eq!(
        hrefs(d.changed.keys()),
        ["/cal/edit", "/cal/moved", "/cal/new"]
    );
    assert_eq!(hrefs(&d.removed), ["/cal/drop", "/cal/move"]);
    assert_eq!(
        find_text(&d.changed["/cal/edit"], "getetag").as_deref(),
        s.send(s.req("HEAD", "/cal/edit")).await.header("etag")
    );

    // Up to date: nothing to report, and the token still moves forward from here (never
    // back to a point that would replay the log).
    let same = sync(&s, "/cal/", Some(&d.token), "1").await;
    assert!(
        same.changed.is_empty() && same.removed.is_empty(),
        "{same:?}"
    );
    s.put("/cal/keep", "touched").await.expect(204);
    let next = sync(&s, "/cal/", Some(&same.token), "1").await;
    assert_eq!(hrefs(next.changed.keys()), ["/cal/keep"]);
    assert!(next.removed.is_empty());
}

#[tokio::test]
async fn recreated_is_changed_and_created_then_deleted_is_removed() {
    let s = server().await;
    collection(&s, "/c/", &["x"]).await;
    let t0 = sync(&s, "/c/", None, "1").await.token;
    // RFC 6578 §3.5.1: deleted then mapped again → changed, never also removed.
    s.send(s.req("DELETE", "/c/x")).await.expect(204);
    s.put("/c/x", "again").await.expect(201);
    // §3.5.2: created and deleted inside the window → removed.
    s.put("/c/brief", "b").await.expect(201);
    s.send(s.req("DELETE", "/c/brief")).await.expect(204);
    let d = sync(&s, "/c/", Some(&t0), "1").await;
    assert_eq!(hrefs(d.changed.keys()), ["/c/x"]);
    assert_eq!(hrefs(&d.removed), ["/c/brief"]);
}

#[tokio::test]
async fn levels_one_and_infinite() {
    let s = server().await;
    collection(&s, "/top/", &["a"]).await;
    collection(&s, "/top/sub/", &["b"]).await;
    let one = sync(&s, "/top/", None, "1").await.token;
    let inf = sync(&s, "/top/", None, "infinite").await.token;

    s.put("/top/sub/b", "changed deep").await.expect(204);
    s.put("/top/sub/c", "new deep").await.expect(201);
    s.mkcol("/top/sub/inner/").await.expect(201);
    s.send(s.req("DELETE", "/top/a")).await.expect(204);
    // Moved out of the scope: removed from it.
    s.mkcol("/elsewhere/").await.expect(201);
    s.send(
        s.req("MOVE", "/top/sub/c")
            .header("Destination", s.url("/elsewhere/c")),
    )
    .await
    .expect(201);

    let d1 = sync(&s, "/top/", Some(&one), "1").await;
    assert!(
        d1.changed.is_empty(),
        "members of members are not level 1: {d1:?}"
    );
    assert_eq!(hrefs(&d1.removed), ["/top/a"]);

    let di = sync(&s, "/top/", Some(&inf), "infinite").await;
    assert_eq!(hrefs(di.changed.keys()), ["/top/sub/b", "/top/sub/inner/"]);
    assert_eq!(hrefs(&di.removed), ["/top/a", "/top/sub/c"]);
    // Tokens are bound to their level.
    let r = s.sync("/top/", Some(&one), "infinite", ETAG, None).await;
    refused(&r, 403, "valid-sync-token");
}

#[tokio::test]
async fn properties_are_selected() {
    let s = server().await;
    collection(&s, "/p/", &["item"]).await;
    s.send(s.req("PROPPATCH", "/p/item").body(
        r#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:color>red</Z:color></D:prop></D:set></D:propertyupdate>"#,
    ))
    .await
    .expect(207);
    let props = r#"<D:getetag/><D:getcontentlength/><R:resourcetag xmlns:R="http://schemas.microsoft.com/repl/"/><R:repl-uid xmlns:R="http://schemas.microsoft.com/repl/"/><Z:color xmlns:Z="urn:z"/><Z:missing xmlns:Z="urn:z"/>"#;
    let a = SyncAnswer::parse(&s.sync("/p/", None, "1", props, None).await, "/p/");
    let e = &a.changed["/p/item"];
    assert_eq!(find_text(e, "getcontentlength").as_deref(), Some("4"));
    assert_eq!(find_text(e, "resourcetag"), Some(s.rt("/p/item").await));
    assert!(find_text(e, "repl-uid").unwrap().starts_with("rid:"));
    assert_eq!(find_text(e, "color").as_deref(), Some("red"));
    let stats: Vec<String> = e
        .children
        .iter()
        .filter_map(|n| n.as_element())
        .filter(|c| c.name == "propstat")
        .map(|p| find_text(p, "status").unwrap())
        .collect();
    assert_eq!(stats, ["HTTP/1.1 200 OK", "HTTP/1.1 404 Not Found"]);
    // No property asked for: hrefs with an empty propstat each.
    let bare = SyncAnswer::parse(&s.sync("/p/", None, "1", "", None).await, "/p/");
    assert_eq!(hrefs(bare.changed.keys()), ["/p/item"]);
}

/// A client's copy of a collection: href → ETag.
#[derive(Debug, Default, PartialEq)]
struct Replica(BTreeMap<String, String>);

impl Replica {
    fn apply(&mut self, a: &SyncAnswer) {
        for (href, e) in &a.changed {
            self.0
                .insert(href.clone(), find_text(e, "getetag").unwrap_or_default());
        }
        for href in &a.removed {
            self.0.remove(href);
        }
    }

    /// One request with `limit`: applies the answer; returns the new token and whether the
    /// report was truncated.
    async fn step(
        &mut self,
        s: &TestServer,
        path: &str,
        token: Option<&str>,
        limit: u64,
    ) -> (String, bool) {
        let r = s.sync(path, token, "infinite", ETAG, Some(limit)).await;
        let a = SyncAnswer::parse(&r, path);
        assert!(
            a.changed.len() + a.removed.len() <= limit as usize,
            "more than nresults members: {}",
            a.changed.len() + a.removed.len()
        );
        self.apply(&a);
        (a.token, a.truncated)
    }

    /// Syncs with `limit` until no `507` is left; returns the last token and the requests
    /// made.
    async fn pull(
        &mut self,
        s: &TestServer,
        path: &str,
        token: Option<String>,
        limit: u64,
    ) -> (String, usize) {
        let mut token = token;
        for requests in 1.. {
            let (t, truncated) = self.step(s, path, token.as_deref(), limit).await;
            token = Some(t);
            if !truncated {
                return (token.unwrap_or_default(), requests);
            }
        }
        unreachable!()
    }
}

/// What the server holds below `path`: every href with its ETag (PROPFIND Depth: infinity).
async fn truth(s: &TestServer, path: &str) -> Replica {
    let r = s
        .propfind(
            path,
            "infinity",
            r#"<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>"#,
        )
        .await;
    r.expect(207);
    Replica(
        responses(&r.xml())
            .into_iter()
            .filter(|(href, _)| href != path)
            .map(|(href, e)| (href, find_text(&e, "getetag").unwrap_or_default()))
            .collect(),
    )
}

#[tokio::test]
async fn a_limit_pages_with_507_and_exactly_nresults() {
    let s = server().await;
    collection(&s, "/l/", &["1", "2", "3", "4", "5", "6", "7"]).await;
    let r = s.sync("/l/", None, "infinite", ETAG, Some(3)).await;
    let a = SyncAnswer::parse(&r, "/l/");
    assert!(a.truncated, "seven members, three asked for: {}", r.text());
    assert_eq!(a.changed.len(), 3, "exactly nresults members");
    let mut replica = Replica::default();
    replica.apply(&a);
    let (_, requests) = replica.pull(&s, "/l/", Some(a.token), 3).await;
    assert_eq!(
        requests, 2,
        "7 = 3 + 3 + 1 (the last page is not truncated)"
    );
    assert_eq!(replica, truth(&s, "/l/").await);

    // The server's own cap truncates the same way.
    let mut limits = Limits::default();
    limits.max_sync_results = 2;
    let capped = serve(ReplLayer::new(MemStore::new()).limits(limits)).await;
    collection(&capped, "/l/", &["1", "2", "3", "4", "5"]).await;
    let mut replica = Replica::default();
    let (_, requests) = replica.pull(&capped, "/l/", None, 100).await;
    assert_eq!(requests, 3);
    assert_eq!(replica, truth(&capped, "/l/").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paging_under_concurrent_writers_loses_nothing() {
    let s = Arc::new(server().await);
    collection(&s, "/w/", &[]).await;
    s.mkcol("/w/sub/").await.expect(201);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (s, stop) = (s.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let dir = if n.is_multiple_of(2) {
                    "/w/"
                } else {
                    "/w/sub/"
                };
                let path = format!("{dir}w{w}-{}", n % 7);
                match n % 5 {
                    3 => {
                        s.send(s.req("DELETE", &path)).await;
                    }
                    _ => {
                        s.put(&path, &format!("{w}/{n}")).await;
                    }
                }
                n += 1;
            }
        }));
    }
    // Pages of four while the writers run (they may well outpace the reader: each request
    // makes progress, none has to catch up), then to completion once they stop.
    let mut replica = Replica::default();
    let mut token = None;
    for _ in 0..40 {
        let (t, _) = replica.step(&s, "/w/", token.as_deref(), 4).await;
        token = Some(t);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    replica.pull(&s, "/w/", token, 4).await;
    assert_eq!(replica, truth(&s, "/w/").await, "the replica converged");
}

#[tokio::test]
async fn refused_tokens_are_403_valid_sync_token() {
    let s = server().await;
    collection(&s, "/a/", &["x"]).await;
    collection(&s, "/b/", &["y"]).await;
    let good = sync(&s, "/a/", None, "1").await.token;

    // Forged: one character of the signed part changed.
    let mut forged = good.clone().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    // From another store (another server), for another collection, not ours at all.
    let other = server().await;
    collection(&other, "/a/", &["x"]).await;
    let foreign = sync(&other, "/a/", None, "1").await.token;
    let for_b = sync(&s, "/b/", None, "1").await.token;
    for (what, token) in [
        ("forged", forged.as_str()),
        ("foreign", foreign.as_str()),
        ("another collection", for_b.as_str()),
        ("not a davrepl token", "http://example.com/sync/1"),
        ("garbage", "urn:davrepl:sync:%%%"),
    ] {
        let r = s.sync("/a/", Some(token), "1", ETAG, None).await;
        assert_eq!(r.status, 403, "{what}: {}", r.text());
        refused(&r, 403, "valid-sync-token");
    }

    // The collection was deleted and re-created at the same path.
    s.send(s.req("DELETE", "/a/")).await.expect(204);
    collection(&s, "/a/", &["x"]).await;
    refused(
        &s.sync("/a/", Some(&good), "1", ETAG, None).await,
        403,
        "valid-sync-token",
    );

    // Expired: the tombstones it needs were purged.
    let t = sync(&s, "/b/", None, "1").await.token;
    s.send(s.req("DELETE", "/b/y")).await.expect(204);
    let store = MemStore::new();
    let purging = serve(ReplLayer::new(store.clone())).await;
    collection(&purging, "/c/", &["z"]).await;
    let old = sync(&purging, "/c/", None, "1").await.token;
    purging
        .send(purging.req("DELETE", "/c/z"))
        .await
        .expect(204);
    davrepl::ReplStore::purge(
        &store,
        std::time::SystemTime::now() + std::time::Duration::from_secs(1),
    )
    .await
    .unwrap();
    refused(
        &purging.sync("/c/", Some(&old), "1", ETAG, None).await,
        403,
        "valid-sync-token",
    );
    // The untouched store still answers its token.
    let d = sync(&s, "/b/", Some(&t), "1").await;
    assert_eq!(hrefs(&d.removed), ["/b/y"]);
}

#[tokio::test]
async fn tokens_are_bound_to_the_principal() {
    let s = serve_users(ReplLayer::new(MemStore::new())).await;
    s.mkcol("/shared/").await.expect(201);
    s.put("/shared/x", "x").await.expect(201);
    let as_user = |u: &str, token: Option<&str>| {
        s.req("REPORT", "/shared/")
            .header("X-Test-User", u.to_owned())
            .body(davrepl_tests::sync_body(token, "1", ETAG, None))
    };
    let alice = SyncAnswer::parse(&s.send(as_user("alice", None)).await, "/shared/").token;
    s.send(as_user("alice", Some(&alice))).await.expect(207);
    refused(
        &s.send(as_user("bob", Some(&alice))).await,
        403,
        "valid-sync-token",
    );
    refused(
        &s.sync("/shared/", Some(&alice), "1", ETAG, None).await,
        403,
        "valid-sync-token",
    );
}

#[tokio::test]
async fn bad_requests() {
    let s = server().await;
    collection(&s, "/c/", &["i"]).await;
    // Depth: infinity is refused; Depth: 1 (sent by deployed clients) reads as 0.
    let with_depth = |d: &str| {
        s.req("REPORT", "/c/")
            .header("Depth", d.to_owned())
            .body(davrepl_tests::sync_body(None, "1", ETAG, None))
    };
    s.send(with_depth("infinity")).await.expect(400);
    let one = SyncAnswer::parse(&s.send(with_depth("1")).await, "/c/");
    assert_eq!(hrefs(one.changed.keys()), ["/c/i"]);
    // Not a collection; a report we do not serve.
    refused(
        &s.sync("/c/i", None, "1", ETAG, None).await,
        403,
        "supported-report",
    );
    let other = r#"<C:calendar-query xmlns:C="urn:ietf:params:xml:ns:caldav"/>"#;
    refused(
        &s.send(s.req("REPORT", "/c/").body(other)).await,
        403,
        "supported-report",
    );
    // Malformed bodies.
    for body in [
        "",
        "<not-xml",
        r#"<D:sync-collection xmlns:D="DAV:"><D:sync-level>2</D:sync-level></D:sync-collection>"#,
        r#"<D:sync-collection xmlns:D="DAV:"><D:limit><D:nresults>0</D:nresults></D:limit></D:sync-collection>"#,
    ] {
        let r = s.send(s.req("REPORT", "/c/").body(body)).await;
        assert_eq!(r.status, 400, "{body:?}: {}", r.text());
    }
    s.sync("/nowhere/", None, "1", ETAG, None).await.expect(404);
    // Level infinite where the server serves no infinite depth.
    let finite = serve(ReplLayer::new(MemStore::new()).allow_depth_infinity(false)).await;
    collection(&finite, "/c/", &[]).await;
    refused(
        &finite.sync("/c/", None, "infinite", ETAG, None).await,
        403,
        "sync-traversal-supported",
    );
    finite.sync("/c/", None, "1", ETAG, None).await.expect(207);
}

#[tokio::test]
async fn the_sync_token_property_and_discovery() {
    let s = server().await;
    collection(&s, "/c/", &["i"]).await;
    let r = s
        .propfind(
            "/c/",
            "1",
            r#"<D:propfind xmlns:D="DAV:"><D:prop><D:sync-token/><D:supported-report-set/></D:prop></D:propfind>"#,
        )
        .await;
    r.expect(207);
    let all = responses(&r.xml());
    let (_, col) = all.iter().find(|(h, _)| h == "/c/").unwrap();
    let token = find_text(col, "sync-token").expect("a collection has a sync-token");
    assert!(has_element(col, "sync-collection"), "{}", r.text());
    let (_, item) = all.iter().find(|(h, _)| h == "/c/i").unwrap();
    assert!(!has_element(item, "sync-collection"));
    // The property's token is a level-1 token of the collection's current state.
    s.put("/c/j", "j").await.expect(201);
    let d = sync(&s, "/c/", Some(&token), "1").await;
    assert_eq!(hrefs(d.changed.keys()), ["/c/j"]);
    // Not in allprop (RFC 6578 §4); protected.
    let r = s.propfind("/c/", "0", "").await;
    assert!(!r.text().contains("sync-token"), "{}", r.text());
    let r = s
        .send(s.req("PROPPATCH", "/c/").body(
            r#"<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:sync-token>x</D:sync-token></D:prop></D:set></D:propertyupdate>"#,
        ))
        .await;
    assert!(r.text().contains("403"), "{}", r.text());
    // REPORT is allowed.
    let r = s.send(s.req("OPTIONS", "/c/")).await;
    assert!(r.header("allow").unwrap().contains("REPORT"));
}

/// One log, two dialects: collblob manifests and sync-collection reports, alternating on one
/// collection under concurrent writers, end at the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manifests_and_sync_reports_converge_together() {
    const SQL: &str = r#"SELECT "DAV:getetag" FROM SCOPE('DEEP TRAVERSAL OF "/m/"')"#;
    let s = Arc::new(server().await);
    collection(&s, "/m/", &["seed"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let path = format!("/m/f{}", n % 11);
                if n % 4 == 3 {
                    s.send(s.req("DELETE", &path)).await;
                } else {
                    s.put(&path, &n.to_string()).await;
                }
                n += 1;
            }
        })
    };
    let mut by_sync = Replica::default();
    let mut by_manifest: BTreeMap<String, String> = BTreeMap::new();
    let (mut token, mut blob): (Option<String>, Option<String>) = (None, None);
    for round in 0..30 {
        if round % 2 == 0 {
            let (t, _) = by_sync.step(&s, "/m/", token.as_deref(), 5).await;
            token = Some(t);
        } else {
            let r = s
                .manifest("/m/", blob.as_deref(), Some(SQL), &[], None)
                .await;
            let m = Manifest::parse(&r);
            apply_manifest(&s, &mut by_manifest, &m);
            blob = Some(m.blob());
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    by_sync.pull(&s, "/m/", token, 5).await;
    let m = Manifest::parse(
        &s.manifest("/m/", blob.as_deref(), Some(SQL), &[], None)
            .await,
    );
    apply_manifest(&s, &mut by_manifest, &m);
    let server_state = truth(&s, "/m/").await;
    assert_eq!(by_sync, server_state, "the sync-collection replica");
    assert_eq!(Replica(by_manifest), server_state, "the manifest replica");
}

/// Applies manifest rows (absolute hrefs) to a path-keyed replica.
fn apply_manifest(s: &TestServer, replica: &mut BTreeMap<String, String>, m: &Manifest) {
    let base = s.url("");
    for row in &m.rows {
        let href = row.href.strip_prefix(&base).unwrap_or(&row.href).to_owned();
        if row.changetype == "delete" {
            replica.remove(&href);
        } else {
            replica.insert(href, find_text(&row.element, "getetag").unwrap_or_default());
        }
    }
}

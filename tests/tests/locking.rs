//! WebDAV class 2 over TCP: what LOCK and UNLOCK answer, what 423 says, what PROPFIND reports,
//! that locks are never content (tags, ETags and manifests stay as they were), and that a lock
//! belongs to the principal that took it.

use davrepl::{MemStore, ReplLayer};
use davrepl_tests::{Manifest, Reply, TestServer, find_text, has_element, serve, serve_users};

const DEEP: &str = r#"SELECT "DAV:getetag" FROM SCOPE('DEEP TRAVERSAL OF "/docs/"')"#;

fn lockinfo(scope: &str, owner: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:{scope}/>\
         </D:lockscope><D:locktype><D:write/></D:locktype><D:owner>{owner}</D:owner>\
         </D:lockinfo>"
    )
}

async fn lock(s: &TestServer, path: &str, depth: &str, scope: &str) -> Reply {
    s.send(
        s.req("LOCK", path)
            .header("Depth", depth)
            .header("Timeout", "Second-600")
            .body(lockinfo(scope, "<D:href>mailto:me@example.com</D:href>")),
    )
    .await
}

fn token(r: &Reply) -> String {
    r.header("lock-token")
        .expect("Lock-Token header")
        .to_owned()
}

#[tokio::test]
async fn lock_answers_and_423_names_the_lock_root() {
    let s = serve(ReplLayer::new(MemStore::new())).await;
    let opts = s.send(s.req("OPTIONS", "/")).await;
    opts.expect(200);
    assert_eq!(opts.header("dav"), Some("1, 2, 3"));
    assert!(opts.header("allow").unwrap().contains("LOCK, UNLOCK"));

    s.mkcol("/docs/").await.expect(201);
    s.put("/docs/a.txt", "a").await.expect(201);
    let r = lock(&s, "/docs/", "infinity", "exclusive").await;
    r.expect(200);
    let t = token(&r);
    let xml = r.xml();
    assert_eq!(find_text(&xml, "depth").as_deref(), Some("infinity"));
    assert_eq!(find_text(&xml, "timeout").as_deref(), Some("Second-600"));
    assert_eq!(
        find_text(&xml, "href").as_deref(),
        Some("mailto:me@example.com"),
        "the owner as sent: {}",
        r.text()
    );
    assert!(r.text().contains(t.trim_matches(['<', '>'])));
    assert!(
        r.text().contains("<D:lockroot><D:href>/docs</D:href>"),
        "{}",
        r.text()
    );

    // A member written without the token: 423 naming the collection.
    let denied = s.put("/docs/a.txt", "b").await;
    denied.expect(423);
    assert!(
        has_element(&denied.xml(), "lock-token-submitted"),
        "{}",
        denied.text()
    );
    assert!(
        denied.text().contains("<D:href>/docs</D:href>"),
        "{}",
        denied.text()
    );
    let conflict = lock(&s, "/docs/a.txt", "0", "shared").await;
    conflict.expect(423);
    assert!(has_element(&conflict.xml(), "no-conflicting-lock"));
    // With the token (tagged with the lock root), the write goes through.
    let ok = s
        .send(
            s.req("PUT", "/docs/new.txt")
                .header("If", format!("<{}> ({t})", s.url("/docs/")))
                .body("n"),
        )
        .await;
    ok.expect(201);
    // POST into the locked collection: the same rule.
    s.send(s.req("POST", "/docs/").body("p")).await.expect(423);
    s.send(
        s.req("POST", "/docs/")
            .header("If", format!("({t})"))
            .body("p"),
    )
    .await
    .expect(201);

    // Discovery through a member, and supportedlock.
    let pf = s
        .propfind(
            "/docs/new.txt",
            "0",
            "<D:propfind xmlns:D=\"DAV:\"><D:prop><D:lockdiscovery/><D:supportedlock/>\
             </D:prop></D:propfind>",
        )
        .await;
    pf.expect(207);
    assert!(
        pf.text().contains(t.trim_matches(['<', '>'])),
        "{}",
        pf.text()
    );
    assert!(
        has_element(&pf.xml(), "shared"),
        "supportedlock lists shared locks"
    );
    // A refresh through a member (an indirect refresh), then the bad cases.
    let refresh = s
        .send(
            s.req("LOCK", "/docs/a.txt")
                .header("If", format!("({t})"))
                .header("Timeout", "Infinite"),
        )
        .await;
    refresh.expect(200);
    assert_eq!(
        find_text(&refresh.xml(), "timeout").as_deref(),
        Some("Second-86400"),
        "Infinite is capped at the server maximum"
    );
    s.send(s.req("LOCK", "/docs/a.txt")).await.expect(400);
    s.send(
        s.req("LOCK", "/docs/")
            .header("Depth", "1")
            .body(lockinfo("shared", "x")),
    )
    .await
    .expect(400);
    s.send(s.req("UNLOCK", "/docs/")).await.expect(400);
    let wrong = s
        .send(
            s.req("UNLOCK", "/docs/")
                .header("Lock-Token", "<opaquelocktoken:nope>"),
        )
        .await;
    wrong.expect(409);
    assert!(has_element(&wrong.xml(), "lock-token-matches-request-uri"));
    s.send(
        s.req("UNLOCK", "/docs/a.txt")
            .header("Lock-Token", t.as_str()),
    )
    .await
    .expect(204);
    s.put("/docs/a.txt", "free").await.expect(204);

    // LOCK on an unmapped URL: 201 and an empty resource.
    let fresh = lock(&s, "/docs/fresh.txt", "0", "exclusive").await;
    fresh.expect(201);
    assert!(fresh.header("etag").is_some());
    let got = s.send(s.req("GET", "/docs/fresh.txt")).await;
    got.expect(200);
    assert_eq!(got.text(), "");
    lock(&s, "/nowhere/x", "0", "exclusive").await.expect(409);
}

#[tokio::test]
async fn locks_change_no_tag_and_no_manifest() {
    let s = serve(ReplLayer::new(MemStore::new())).await;
    s.mkcol("/docs/").await.expect(201);
    s.put("/docs/a.txt", "a").await.expect(201);
    let before = s.send(s.req("HEAD", "/docs/a.txt")).await;
    let first = Manifest::parse(&s.manifest("/docs/", None, Some(DEEP), &[], None).await);
    let blob = first.blob();

    let coll = lock(&s, "/docs/", "infinity", "shared").await;
    coll.expect(200);
    let item = lock(&s, "/docs/a.txt", "0", "shared").await;
    item.expect(200);
    let refreshed = s
        .send(
            s.req("LOCK", "/docs/a.txt")
                .header("If", format!("({})", token(&item))),
        )
        .await;
    refreshed.expect(200);
    let during = s.send(s.req("HEAD", "/docs/a.txt")).await;
    for t in [item, coll] {
        s.send(
            s.req("UNLOCK", "/docs/a.txt")
                .header("Lock-Token", token(&t)),
        )
        .await
        .expect(204);
    }
    let after = s.send(s.req("HEAD", "/docs/a.txt")).await;
    for h in ["etag", "resourcetag", "repl-uid"] {
        assert_eq!(before.header(h), during.header(h), "{h} while locked");
        assert_eq!(before.header(h), after.header(h), "{h} after unlock");
    }
    let delta = Manifest::parse(
        &s.manifest("/docs/", Some(&blob), Some(DEEP), &[], None)
            .await,
    );
    assert!(
        delta.rows.is_empty(),
        "locks are not changes: {:?}",
        delta.rows
    );
}

#[tokio::test]
async fn a_lock_belongs_to_its_principal() {
    let s = serve_users(ReplLayer::new(MemStore::new())).await;
    let r = s
        .send(
            s.req("PUT", "/shared.txt")
                .header("x-test-user", "alice")
                .body("a"),
        )
        .await;
    r.expect(201);
    let l = s
        .send(
            s.req("LOCK", "/shared.txt")
                .header("x-test-user", "alice")
                .header("Depth", "0")
                .body(lockinfo("exclusive", "alice")),
        )
        .await;
    l.expect(200);
    let t = token(&l);
    // Bob holding Alice's token is still refused.
    let bob_put = s
        .send(
            s.req("PUT", "/shared.txt")
                .header("x-test-user", "bob")
                .header("If", format!("({t})"))
                .body("b"),
        )
        .await;
    bob_put.expect(423);
    s.send(
        s.req("UNLOCK", "/shared.txt")
            .header("x-test-user", "bob")
            .header("Lock-Token", t.as_str()),
    )
    .await
    .expect(403);
    s.send(
        s.req("PUT", "/shared.txt")
            .header("x-test-user", "alice")
            .header("If", format!("({t})"))
            .body("a2"),
    )
    .await
    .expect(204);
    s.send(
        s.req("UNLOCK", "/shared.txt")
            .header("x-test-user", "alice")
            .header("Lock-Token", t.as_str()),
    )
    .await
    .expect(204);
}

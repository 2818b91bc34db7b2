//! WebDAV behaviour of the layer over real TCP (RFC 4918 + the replication headers).

use davrepl::{MemStore, ReplLayer};
use davrepl_tests::{TestServer, find_text, has_element, responses, serve};

async fn server() -> TestServer {
    serve(ReplLayer::new(MemStore::new())).await
}

#[tokio::test]
async fn options_advertises_methods() {
    let s = server().await;
    let r = s.send(s.req("OPTIONS", "/")).await;
    r.expect(200);
    assert!(r.header("dav").is_some_and(|d| d.contains('1')));
    let allow = r.header("allow").unwrap_or_default();
    for m in [
        "PROPFIND",
        "PROPPATCH",
        "MKCOL",
        "COPY",
        "MOVE",
        "PUT",
        "DELETE",
    ] {
        assert!(allow.contains(m), "{m} missing from Allow: {allow}");
    }
}

/// `Content-Length` on the wire: exactly once, and right, whether the layer sets it (HEAD) or
/// the HTTP stack writes it from the length a whole body states (GET, ranges, empty items).
#[tokio::test]
async fn content_length_is_sent_once_and_right() {
    let s = server().await;
    s.put("/a.txt", "hello world").await.expect(201);
    s.put("/empty", "").await.expect(201);
    let lengths = |r: &davrepl_tests::Reply| -> Vec<String> {
        r.headers
            .get_all("content-length")
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .collect()
    };
    let g = s.send(s.req("GET", "/a.txt")).await;
    g.expect(200);
    assert_eq!(lengths(&g), ["11"]);
    let r = s
        .send(s.req("GET", "/a.txt").header("range", "bytes=6-"))
        .await;
    r.expect(206);
    assert_eq!(
        (lengths(&r), r.text().as_str()),
        (vec!["5".to_owned()], "world")
    );
    let h = s.send(s.req("HEAD", "/a.txt")).await;
    h.expect(200);
    assert_eq!(lengths(&h), ["11"]);
    for method in ["GET", "HEAD"] {
        let e = s.send(s.req(method, "/empty")).await;
        e.expect(200);
        assert_eq!(lengths(&e), ["0"], "{method} of an empty item");
    }
    let index = s.send(s.req("GET", "/")).await;
    index.expect(200);
    assert_eq!(lengths(&index), [index.body.len().to_string()]);
    let head = s.send(s.req("HEAD", "/")).await;
    head.expect(200);
    assert_eq!(lengths(&head), lengths(&index), "HEAD of a collection");
}

#[tokio::test]
async fn put_get_head_and_tags() {
    let s = server().await;
    let r = s.put("/a.txt", "hello world").await;
    r.expect(201);
    let rt = r.header("resourcetag").expect("ResourceTag").to_owned();
    let rid = r.header("repl-uid").expect("Repl-UID").to_owned();
    assert!(rt.starts_with("<rt:") && rt.len() == 3 + 88 + 2, "{rt}");
    assert!(rid.starts_with("<rid:") && rid.len() == 4 + 44 + 2, "{rid}");
    let etag = r.header("etag").expect("etag").to_owned();

    let g = s.send(s.req("GET", "/a.txt")).await;
    g.expect(200);
    assert_eq!(g.text(), "hello world");
    assert_eq!(g.header("resourcetag"), Some(rt.as_str()));
    assert_eq!(g.header("etag"), Some(etag.as_str()));
    assert!(
        g.header("repl-uid").is_none(),
        "GET does not return Repl-UID (spec §3.1)"
    );

    let h = s.send(s.req("HEAD", "/a.txt")).await;
    h.expect(200);
    assert!(h.body.is_empty());
    assert_eq!(h.header("content-length"), Some("11"));

    let again = s.put("/a.txt", "changed").await;
    again.expect(204);
    assert_eq!(again.header("repl-uid"), Some(rid.as_str()));
    assert_ne!(again.header("resourcetag"), Some(rt.as_str()));
}

#[tokio::test]
async fn byte_ranges() {
    let s = server().await;
    s.put("/r", "0123456789").await.expect(201);
    let r = s
        .send(s.req("GET", "/r").header("Range", "bytes=2-4"))
        .await;
    r.expect(206);
    assert_eq!(r.text(), "234");
    assert_eq!(r.header("content-range"), Some("bytes 2-4/10"));
    let r = s.send(s.req("GET", "/r").header("Range", "bytes=-3")).await;
    r.expect(206);
    assert_eq!(r.text(), "789");
    let r = s
        .send(s.req("GET", "/r").header("Range", "bytes=50-"))
        .await;
    r.expect(416);
    assert_eq!(r.header("content-range"), Some("bytes */10"));
    let r = s
        .send(
            s.req("GET", "/r")
                .header("Range", "bytes=1-2")
                .header("If-Range", "\"stale\""),
        )
        .await;
    r.expect(200);
    assert_eq!(r.text(), "0123456789");
    let etag = s
        .send(s.req("HEAD", "/r"))
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let r = s
        .send(
            s.req("GET", "/r")
                .header("Range", "bytes=1-2")
                .header("If-Range", &etag),
        )
        .await;
    r.expect(206);
    assert_eq!(r.text(), "12");
}

#[tokio::test]
async fn date_conditions() {
    let s = server().await;
    s.put("/d", "dated").await.expect(201);
    let g = s.send(s.req("GET", "/d")).await;
    let modified = g.header("last-modified").unwrap().to_owned();
    s.send(s.req("GET", "/d").header("If-Modified-Since", &modified))
        .await
        .expect(304);
    let old = "Sun, 06 Nov 1994 08:49:37 GMT";
    let r = s
        .send(s.req("GET", "/d").header("If-Modified-Since", old))
        .await;
    r.expect(200);
    assert_eq!(r.text(), "dated");
    s.send(s.req("GET", "/d").header("If-Unmodified-Since", old))
        .await
        .expect(412);
    s.send(s.req("GET", "/d").header("If-Unmodified-Since", &modified))
        .await
        .expect(200);
    // A date that does not parse is ignored (RFC 9110), not refused.
    s.send(s.req("GET", "/d").header("If-Modified-Since", "yesterday"))
        .await
        .expect(200);
    // A header the dispatcher parses for every method is refused when malformed, on a GET too.
    s.send(s.req("GET", "/d").header("Depth", "2"))
        .await
        .expect(400);
}

#[tokio::test]
async fn conditional_requests() {
    let s = server().await;
    let r = s.put("/c", "v1").await;
    let etag = r.header("etag").unwrap().to_owned();
    let rt = r
        .header("resourcetag")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_owned();
    s.send(s.req("GET", "/c").header("If-None-Match", &etag))
        .await
        .expect(304);
    s.send(s.req("GET", "/c").header("If-Match", "\"nope\""))
        .await
        .expect(412);
    s.send(s.req("GET", "/c").header("If", format!("(<{rt}>)")))
        .await
        .expect(200);
    s.send(s.req("GET", "/c").header("If", "(<rt:stale>)"))
        .await
        .expect(412);
    // Conditional PUT: compare-and-swap on the resourcetag.
    s.send(
        s.req("PUT", "/c")
            .header("If", format!("(<{rt}>)"))
            .body("v2"),
    )
    .await
    .expect(204);
    s.send(
        s.req("PUT", "/c")
            .header("If", format!("(<{rt}>)"))
            .body("v3"),
    )
    .await
    .expect(412);
    assert_eq!(s.send(s.req("GET", "/c")).await.text(), "v2");
    s.send(s.req("PUT", "/new").header("If-None-Match", "*").body("x"))
        .await
        .expect(201);
    s.send(s.req("PUT", "/new").header("If-None-Match", "*").body("y"))
        .await
        .expect(412);
    s.send(s.req("DELETE", "/new").header("If", "(Not <DAV:no-lock>)"))
        .await
        .expect(204);
    s.send(s.req("PUT", "/c").header("If", "(<unterminated").body("x"))
        .await
        .expect(400);
}

#[tokio::test]
async fn collections_copy_move_delete() {
    let s = server().await;
    s.mkcol("/col/").await.expect(201);
    s.mkcol("/col/").await.expect(409);
    s.mkcol("/no/such/").await.expect(409);
    s.put("/col/a", "A").await.expect(201);
    s.put("/missing/a", "A").await.expect(409);
    let rid = s
        .send(s.req("PROPFIND", "/col/a").header("Depth", "0"))
        .await;
    let rid = find_text(&rid.xml(), "repl-uid").expect("repl-uid");

    let dest = s.url("/col/b");
    s.send(s.req("COPY", "/col/a").header("Destination", &dest))
        .await
        .expect(201);
    s.send(
        s.req("COPY", "/col/a")
            .header("Destination", &dest)
            .header("Overwrite", "F"),
    )
    .await
    .expect(412);
    s.send(s.req("COPY", "/col/a").header("Destination", &dest))
        .await
        .expect(204);
    s.send(
        s.req("MOVE", "/col/a")
            .header("Destination", s.url("/moved")),
    )
    .await
    .expect(201);
    let moved = s
        .send(s.req("PROPFIND", "/moved").header("Depth", "0"))
        .await;
    assert_eq!(
        find_text(&moved.xml(), "repl-uid"),
        Some(rid),
        "MOVE keeps the repl-uid"
    );
    s.send(
        s.req("MOVE", "/moved")
            .header("Destination", "http://elsewhere.example/x"),
    )
    .await
    .expect(502);
    s.send(s.req("MOVE", "/moved")).await.expect(400);
    s.send(
        s.req("MOVE", "/col")
            .header("Destination", s.url("/col/inside")),
    )
    .await
    .expect(403);
    s.send(s.req("DELETE", "/col/")).await.expect(204);
    s.send(s.req("GET", "/col/b")).await.expect(404);
}

#[tokio::test]
async fn propfind_depths_and_streaming() {
    let s = server().await;
    s.mkcol("/big/").await.expect(201);
    for i in 0..600 {
        s.put(&format!("/big/f{i:04}"), "x").await.expect(201);
    }
    s.mkcol("/big/sub/").await.expect(201);
    s.put("/big/sub/deep", "x").await.expect(201);
    let r = s.propfind("/big/", "1", "").await;
    r.expect(207);
    let rs = responses(&r.xml());
    assert_eq!(rs.len(), 1 + 600 + 1);
    assert_eq!(rs[0].0, "/big/");
    assert!(rs.iter().any(|(h, _)| h == "/big/sub/"));
    assert!(!rs.iter().any(|(h, _)| h == "/big/sub/deep"));
    let r = s.propfind("/big/", "infinity", "").await;
    assert_eq!(responses(&r.xml()).len(), 603);
    let r = s.propfind("/big/", "0", "").await;
    assert_eq!(responses(&r.xml()).len(), 1);
    let (_, root) = &responses(&r.xml())[0];
    assert!(has_element(root, "collection"));
    assert!(find_text(root, "contenttag").is_some_and(|t| t.starts_with("ct:")));
    let r = s.propfind("/big/", "1,noroot", "").await;
    assert_eq!(responses(&r.xml()).len(), 601);
    s.propfind("/nope", "0", "").await.expect(404);
    s.propfind("/big/", "2", "").await.expect(400);
    s.propfind("/big/", "0", "<not-xml").await.expect(400);
}

#[tokio::test]
async fn propfind_named_props_and_brief() {
    let s = server().await;
    s.put("/p", "abc").await.expect(201);
    let body = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:R="http://schemas.microsoft.com/repl/"><D:prop><D:getcontentlength/><R:resourcetag/><D:nothing/></D:prop></D:propfind>"#;
    let r = s.propfind("/p", "0", body).await;
    r.expect(207);
    let x = r.xml();
    assert_eq!(find_text(&x, "getcontentlength").as_deref(), Some("3"));
    assert!(find_text(&x, "resourcetag").is_some_and(|t| t.starts_with("rt:")));
    assert!(r.text().contains("404"));
    let r = s
        .send(
            s.req("PROPFIND", "/p")
                .header("Depth", "0")
                .header("Brief", "t")
                .body(body),
        )
        .await;
    assert!(!r.text().contains("404"), "Brief: t drops 404 propstats");
}

#[tokio::test]
async fn depth_infinity_can_be_disabled() {
    let s = serve(ReplLayer::new(MemStore::new()).allow_depth_infinity(false)).await;
    let r = s.propfind("/", "infinity", "").await;
    r.expect(403);
    assert!(r.text().contains("propfind-finite-depth"));
    s.propfind("/", "1", "").await.expect(207);
}

#[tokio::test]
async fn proppatch_is_atomic() {
    let s = server().await;
    s.put("/p", "x").await.expect(201);
    let set = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:a>1</Z:a><Z:b><Z:inner>deep</Z:inner></Z:b></D:prop></D:set></D:propertyupdate>"#;
    let r = s.send(s.req("PROPPATCH", "/p").body(set)).await;
    r.expect(207);
    assert!(r.header("resourcetag").is_some() && r.header("repl-uid").is_some());
    // A protected property in the same request: nothing is applied, 403 + 424.
    let mixed = r#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:a>2</Z:a><D:getetag>x</D:getetag></D:prop></D:set></D:propertyupdate>"#;
    let r = s.send(s.req("PROPPATCH", "/p").body(mixed)).await;
    r.expect(207);
    assert!(r.text().contains("403") && r.text().contains("424"));
    let get =
        r#"<D:propfind xmlns:D="DAV:" xmlns:Z="urn:z"><D:prop><Z:a/><Z:b/></D:prop></D:propfind>"#;
    let r = s.propfind("/p", "0", get).await;
    assert_eq!(find_text(&r.xml(), "a").as_deref(), Some("1"));
    assert_eq!(find_text(&r.xml(), "inner").as_deref(), Some("deep"));
    s.send(s.req("PROPPATCH", "/nope").body(set))
        .await
        .expect(404);
    s.send(s.req("PROPPATCH", "/p").body("<x"))
        .await
        .expect(400);
}

#[tokio::test]
async fn hostile_basics_get_4xx() {
    let s = server().await;
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><D:propfind xmlns:D="DAV:"><D:prop><D:x>&b;</D:x></D:prop></D:propfind>"#;
    s.propfind("/", "0", bomb).await.expect(400);
    s.put("/inside", "x").await.expect(201);
    for target in [
        "/%2e%2e/etc/passwd",
        "/../inside",
        "/a/%2E%2E/inside",
        "/a%2Fb",
        "/%ff",
        "/a%00b",
        "/%c0%ae%c0%ae/x",
    ] {
        assert_eq!(s.raw_status("GET", target, "").await, 400, "{target}");
    }
    assert_eq!(
        s.raw_status("COPY", "/inside", "Destination: /%2e%2e/x\r\n")
            .await,
        400
    );
    s.send(
        s.req("PUT", "/x")
            .header("Content-Range", "bytes 0-1/2")
            .body("ab"),
    )
    .await
    .expect(400);
    s.send(s.req("COPY", "/").header("Destination", "not a uri"))
        .await
        .expect(400);
    s.send(s.req("BREW", "/")).await.expect(405);
    s.send(s.req("MKCOL", "/withbody").body("x"))
        .await
        .expect(415);
}

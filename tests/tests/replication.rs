//! Every scenario of spec §4 (S1–S26) and invariant I1–I10, end to end over real TCP.

use davrepl::{MemStore, ReplLayer, ReplStore};
use davrepl_tests::{Manifest, REPL, TestServer, find_text, responses, search_body, serve};

const SHALLOW: &str = r#"SELECT "DAV:displayname", "http://schemas.microsoft.com/repl/resourcetag", "http://schemas.microsoft.com/repl/repl-uid" FROM SCOPE('SHALLOW TRAVERSAL OF "/inbox/"')"#;

async fn server() -> TestServer {
    serve(ReplLayer::new(MemStore::new())).await
}

async fn inbox(s: &TestServer, items: &[&str]) {
    s.mkcol("/inbox/").await.expect(201);
    for i in items {
        s.put(&format!("/inbox/{i}"), i).await.expect(201);
    }
}

async fn first(s: &TestServer) -> Manifest {
    Manifest::parse(&s.manifest("/inbox/", None, Some(SHALLOW), &[], None).await)
}

#[tokio::test]
async fn s01_first_manifest_search() {
    let s = server().await;
    inbox(&s, &["msg1", "msg4"]).await;
    let r = s.manifest("/inbox/", None, Some(SHALLOW), &[], None).await;
    assert!(r.header("content-type").unwrap().starts_with("text/xml"));
    assert_eq!(r.header("accept-ranges"), Some("rows"));
    assert!(
        r.header("resourcetag").is_none(),
        "SEARCH never returns ResourceTag"
    );
    assert!(
        r.text().contains("<d:repl>") && r.text().contains("xmlns:a=\"DAV:\""),
        "Exchange-like prefixes"
    );
    let m = Manifest::parse(&r);
    assert!(!m.blob().is_empty());
    assert_eq!(m.rows.len(), 2, "exactly the two members, nothing else");
    assert_eq!(
        m.hrefs("change"),
        vec![s.url("/inbox/msg1"), s.url("/inbox/msg4")]
    );
    for (row, p) in m.rows.iter().zip(["/inbox/msg1", "/inbox/msg4"]) {
        assert_eq!(
            row.rt,
            Some(s.rt(p).await),
            "{p}: the row carries the current tag"
        );
    }
    for row in &m.rows {
        assert!(
            row.rt
                .as_deref()
                .is_some_and(|t| t.starts_with("rt:") && t.len() == 91)
        );
        assert!(row.rid.as_deref().is_some_and(|t| t.starts_with("rid:")));
        assert!(find_text(&row.element, "displayname").is_some());
    }
}

#[tokio::test]
async fn s02_first_manifest_propfind() {
    let s = server().await;
    inbox(&s, &["a", "b"]).await;
    let body = format!(
        r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:r="{REPL}"><r:repl><r:collblob/></r:repl><D:prop><D:displayname/><r:resourcetag/></D:prop></D:propfind>"#
    );
    let r = s
        .send(
            s.req("PROPFIND", "/inbox/")
                .header("Depth", "1")
                .body(body.clone()),
        )
        .await;
    let m = Manifest::parse(&r);
    assert_eq!(m.rows.len(), 3, "the folder itself and both members");
    assert!(m.rows.iter().all(|r| r.changetype == "change"));
    // Updated PROPFIND manifest: only the change.
    s.put("/inbox/a", "new").await.expect(204);
    let again = body.replace(
        "<r:collblob/>",
        &format!("<r:collblob>{}</r:collblob>", m.blob()),
    );
    let m2 = Manifest::parse(
        &s.send(
            s.req("PROPFIND", "/inbox/")
                .header("Depth", "1")
                .body(again.clone()),
        )
        .await,
    );
    assert_eq!(m2.hrefs("change"), vec![s.url("/inbox/a")]);
    // A PROPFIND collblob is not valid for SEARCH, nor for another Depth.
    s.manifest("/inbox/", Some(&m.blob()), Some(SHALLOW), &[], None)
        .await
        .expect(475);
    s.send(
        s.req("PROPFIND", "/inbox/")
            .header("Depth", "infinity")
            .body(again),
    )
    .await
    .expect(475);
}

#[tokio::test]
async fn s03_updated_manifest_and_i9_delete_once() {
    let s = server().await;
    inbox(&s, &["keep", "edit", "gone"]).await;
    let m1 = first(&s).await;
    let gone_rid = m1
        .rows
        .iter()
        .find(|r| r.href.ends_with("/gone"))
        .unwrap()
        .rid
        .clone()
        .unwrap();
    s.put("/inbox/edit", "edited").await.expect(204);
    s.put("/inbox/new", "new").await.expect(201);
    s.send(s.req("DELETE", "/inbox/gone")).await.expect(204);
    let m2 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m1.blob()), Some(SHALLOW), &[], None)
            .await,
    );
    assert_eq!(
        m2.hrefs("change"),
        vec![s.url("/inbox/edit"), s.url("/inbox/new")]
    );
    let del: Vec<_> = m2
        .rows
        .iter()
        .filter(|r| r.changetype == "delete")
        .collect();
    assert_eq!(del.len(), 1);
    assert_eq!(
        del[0].rid.as_deref(),
        Some(gone_rid.as_str()),
        "delete rows carry the repl-uid"
    );
    assert_ne!(m2.blob(), m1.blob());
    let m3 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m2.blob()), Some(SHALLOW), &[], None)
            .await,
    );
    assert!(
        m3.rows.is_empty(),
        "I9: a delete is reported once per lineage"
    );
}

#[tokio::test]
async fn s04_updated_manifest_without_sql_reuses_the_query() {
    let s = server().await;
    inbox(&s, &["a"]).await;
    let m1 = first(&s).await;
    s.put("/inbox/a", "changed").await.expect(204);
    let m2 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m1.blob()), None, &[], None)
            .await,
    );
    assert_eq!(m2.rows.len(), 1);
    assert!(
        m2.rows[0].rt.is_some(),
        "columns come from the stored query"
    );
    s.manifest("/inbox/", None, None, &[], None)
        .await
        .expect(400);
}

#[tokio::test]
async fn s05_resourcetaglist_skips_items_held() {
    let s = server().await;
    inbox(&s, &["d1", "d2", "d3", "d4"]).await;
    let m1 = first(&s).await;
    for d in ["d1", "d2", "d3", "d4"] {
        s.put(&format!("/inbox/{d}"), "v2").await.expect(204);
    }
    let tags: Vec<String> = vec![
        s.rt("/inbox/d1").await,
        format!("<{}>", s.rt("/inbox/d2").await),
        s.rt("/inbox/d3").await.trim_start_matches("rt:").to_owned(),
    ];
    let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    let m2 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m1.blob()), Some(SHALLOW), &tag_refs, None)
            .await,
    );
    assert_eq!(m2.hrefs("change"), vec![s.url("/inbox/d4")]);
    let m3 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m2.blob()), Some(SHALLOW), &[], None)
            .await,
    );
    assert!(
        m3.rows.is_empty(),
        "acknowledged versions are recorded in the new collblob"
    );
    // Stale and foreign tags have no effect.
    s.put("/inbox/d1", "v3").await.expect(204);
    let m4 = Manifest::parse(
        &s.manifest(
            "/inbox/",
            Some(&m3.blob()),
            Some(SHALLOW),
            &[&tags[0], "rt:doc1-01"],
            None,
        )
        .await,
    );
    assert_eq!(m4.hrefs("change"), vec![s.url("/inbox/d1")]);
}

#[tokio::test]
async fn s06_no_changes_default_and_strict() {
    let s = server().await;
    inbox(&s, &["a"]).await;
    let m1 = first(&s).await;
    let m2 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m1.blob()), Some(SHALLOW), &[], None)
            .await,
    );
    assert!(m2.rows.is_empty());
    let m3 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m2.blob()), Some(SHALLOW), &[], None)
            .await,
    );
    assert!(
        m3.rows.is_empty(),
        "the returned collblob is equivalent to the old one"
    );

    let strict = serve(ReplLayer::new(MemStore::new()).strict_empty_repl(true)).await;
    inbox(&strict, &["a"]).await;
    let m1 = first(&strict).await;
    let r = strict
        .manifest("/inbox/", Some(&m1.blob()), Some(SHALLOW), &[], None)
        .await;
    let m = Manifest::parse(&r);
    assert!(
        m.collblob.is_none() && m.rows.is_empty(),
        "strict mode: an empty repl element"
    );
}

#[tokio::test]
async fn s07_recreated_collection_gives_475() {
    let s = server().await;
    inbox(&s, &["a"]).await;
    let m1 = first(&s).await;
    s.send(s.req("DELETE", "/inbox/")).await.expect(204);
    inbox(&s, &["a"]).await;
    let r = s
        .manifest("/inbox/", Some(&m1.blob()), Some(SHALLOW), &[], None)
        .await;
    r.expect(475);
    assert!(first(&s).await.rows.len() == 1, "resync from empty works");
}

#[tokio::test]
async fn s08_changed_query_gives_475() {
    let s = server().await;
    inbox(&s, &["a"]).await;
    let m1 = first(&s).await;
    let filtered = format!("{SHALLOW} WHERE \"DAV:isfolder\" = false");
    s.manifest("/inbox/", Some(&m1.blob()), Some(&filtered), &[], None)
        .await
        .expect(475);
    // Only the column list, quoting, keyword case and ORDER BY may change.
    let cosmetic = r#"select 'DAV:getetag' from scope('shallow traversal of "/inbox"') ORDER BY "DAV:displayname""#;
    s.manifest("/inbox/", Some(&m1.blob()), Some(cosmetic), &[], None)
        .await
        .expect(207);
}

#[tokio::test]
async fn s09_paged_first_sync_and_i6() {
    let s = server().await;
    s.mkcol("/inbox/").await.expect(201);
    for i in 0..250 {
        s.put(&format!("/inbox/m{i:03}"), "x").await.expect(201);
    }
    let mut blob: Option<String> = None;
    let mut seen = Vec::new();
    for (expect_rows, expect_total) in [(100, 250), (100, 150), (50, 50)] {
        let r = s
            .manifest(
                "/inbox/",
                blob.as_deref(),
                Some(SHALLOW),
                &[],
                Some("rows=0-99"),
            )
            .await;
        assert_eq!(
            r.header("content-range"),
            Some(format!("rows 0-{}; total={expect_total}", expect_rows - 1).as_str())
        );
        let m = Manifest::parse(&r);
        assert_eq!(m.rows.len(), expect_rows);
        seen.extend(m.hrefs("change"));
        blob = Some(m.blob());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 250, "every row exactly once across pages");
    // I6: rows not delivered are never marked seen: advancing the offset with the *same* old
    // collblob still reaches every row.
    let m0 = first(&s).await;
    s.put("/inbox/m000", "y").await.expect(204);
    s.put("/inbox/m001", "y").await.expect(204);
    s.put("/inbox/m002", "y").await.expect(204);
    let part = Manifest::parse(
        &s.manifest(
            "/inbox/",
            Some(&m0.blob()),
            Some(SHALLOW),
            &[],
            Some("rows=1-1"),
        )
        .await,
    );
    assert_eq!(part.hrefs("change"), vec![s.url("/inbox/m001")]);
    let rest = Manifest::parse(
        &s.manifest("/inbox/", Some(&part.blob()), Some(SHALLOW), &[], None)
            .await,
    );
    assert_eq!(
        rest.hrefs("change"),
        vec![s.url("/inbox/m000"), s.url("/inbox/m002")]
    );
    s.manifest(
        "/inbox/",
        Some(&rest.blob()),
        Some(SHALLOW),
        &[],
        Some("rows=5-"),
    )
    .await
    .expect(207);
    let past = s
        .manifest("/inbox/", None, Some(SHALLOW), &[], Some("rows=900-"))
        .await;
    past.expect(416);
    assert_eq!(past.header("content-range"), Some("rows */250"));
}

#[tokio::test]
async fn s10_count_only() {
    let s = server().await;
    inbox(&s, &["a"]).await;
    let m1 = first(&s).await;
    for i in 0..7 {
        s.put(&format!("/inbox/n{i}"), "x").await.expect(201);
    }
    let r = s
        .manifest(
            "/inbox/",
            Some(&m1.blob()),
            Some(SHALLOW),
            &[],
            Some("rows=-0"),
        )
        .await;
    assert_eq!(r.header("content-range"), Some("rows */7; total=7"));
    let m = Manifest::parse(&r);
    assert!(m.rows.is_empty());
    assert_eq!(
        m.blob(),
        m1.blob(),
        "count-only returns the collblob unchanged"
    );
}

#[tokio::test]
async fn s11_client_side_conflict_detection() {
    let s = server().await;
    inbox(&s, &["docE"]).await;
    let m1 = first(&s).await;
    s.put("/inbox/docE", "E2").await.expect(204);
    let rt = s.rt("/inbox/docE").await;
    let m2 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m1.blob()), Some(SHALLOW), &[], None)
            .await,
    );
    let got: Vec<_> = m2
        .rows
        .iter()
        .map(|r| (r.href.clone(), r.changetype.as_str(), r.rt.clone()))
        .collect();
    assert_eq!(
        got,
        vec![(s.url("/inbox/docE"), "change", Some(rt))],
        "exactly the changed item, with the tag GET returned"
    );
}

#[tokio::test]
async fn s12_server_side_conflict_detection() {
    let s = server().await;
    inbox(&s, &["docE"]).await;
    let rt = s.rt("/inbox/docE").await;
    s.put("/inbox/docE", "by B").await.expect(204);
    s.send(
        s.req("PUT", "/inbox/docE")
            .header("If", format!("(<{rt}>)"))
            .body("by A"),
    )
    .await
    .expect(412);
    assert_eq!(s.send(s.req("GET", "/inbox/docE")).await.text(), "by B");
}

#[tokio::test]
async fn s13_consistent_content_and_properties() {
    let s = server().await;
    inbox(&s, &["docA"]).await;
    let rt = s.rt("/inbox/docA").await;
    let body = r#"<D:propfind xmlns:D="DAV:"><D:prop><D:displayname/></D:prop></D:propfind>"#;
    let ok = s
        .send(
            s.req("PROPFIND", "/inbox/docA")
                .header("Depth", "1")
                .header("If", format!("(<{rt}>)"))
                .body(body),
        )
        .await;
    ok.expect(207);
    s.put("/inbox/docA", "changed").await.expect(204);
    s.send(
        s.req("PROPFIND", "/inbox/docA")
            .header("Depth", "1")
            .header("If", format!("(<{rt}>)"))
            .body(body),
    )
    .await
    .expect(412);
}

#[tokio::test]
async fn s14_get_integrity_after_delete_recreate_and_a3() {
    let s = server().await;
    inbox(&s, &["item.eml"]).await;
    let rt1 = s.rt("/inbox/item.eml").await;
    let rid1 = s
        .put("/inbox/item.eml", "edit")
        .await
        .header("repl-uid")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_owned();
    let both = format!("(<{rt1}>) (<{rid1}>)");
    let r = s
        .send(s.req("GET", "/inbox/item.eml").header("If", &both))
        .await;
    r.expect(200);
    assert_eq!(r.text(), "edit");
    assert_ne!(
        r.header("resourcetag").unwrap().trim_matches(['<', '>']),
        rt1
    );
    s.send(
        s.req("GET", "/inbox/item.eml")
            .header("If", format!("(<{rt1}> <{rid1}>)")),
    )
    .await
    .expect(412);
    s.send(s.req("DELETE", "/inbox/item.eml")).await.expect(204);
    s.put("/inbox/item.eml", "re-created").await.expect(201);
    s.send(s.req("GET", "/inbox/item.eml").header("If", &both))
        .await
        .expect(412);
}

#[tokio::test]
async fn s15_upload_new_item() {
    let s = server().await;
    inbox(&s, &[]).await;
    let m1 = first(&s).await;
    let r = s.put("/inbox/new.eml", "hello").await;
    r.expect(201);
    let rt = r
        .header("resourcetag")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_owned();
    assert!(r.header("repl-uid").is_some());
    let m2 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m1.blob()), Some(SHALLOW), &[], None)
            .await,
    );
    let got: Vec<_> = m2
        .rows
        .iter()
        .map(|r| (r.href.clone(), r.changetype.as_str(), r.rt.clone()))
        .collect();
    assert_eq!(
        got,
        vec![(s.url("/inbox/new.eml"), "change", Some(rt.clone()))]
    );
    let m3 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m1.blob()), Some(SHALLOW), &[&rt], None)
            .await,
    );
    assert!(m3.rows.is_empty(), "acknowledged with resourcetaglist");
}

#[tokio::test]
async fn s16_server_transformation_gives_210() {
    let store = MemStore::with_transform(std::sync::Arc::new(
        |_p: &davrepl::ResourcePath, b: &bytes::Bytes| {
            b.ends_with(b"\r\n")
                .then(|| bytes::Bytes::from(String::from_utf8_lossy(b).replace("\r\n", "\n")))
        },
    ));
    let s = serve(ReplLayer::new(store)).await;
    let r = s.put("/x", "plain").await;
    r.expect(201);
    let rt = r
        .header("resourcetag")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_owned();
    let r = s
        .send(
            s.req("PUT", "/x")
                .header("If", format!("(<{rt}>)"))
                .body("a\r\nb\r\n"),
        )
        .await;
    r.expect(210);
    assert!(r.header("resourcetag").is_some() && r.header("repl-uid").is_some());
    assert_eq!(s.send(s.req("GET", "/x")).await.text(), "a\nb\n");
}

#[tokio::test]
async fn s17_post_new_item() {
    let s = server().await;
    inbox(&s, &[]).await;
    let r = s
        .send(
            s.req("POST", "/inbox/")
                .header("Content-Type", "message/rfc822")
                .header("If", "(<rt:whatever>)")
                .body("Subject: hi\r\n\r\nbody"),
        )
        .await;
    r.expect(201);
    let loc = r.header("location").expect("Location").to_owned();
    assert!(loc.starts_with(&s.url("/inbox/")) && loc.ends_with(".EML"));
    assert!(r.header("resourcetag").is_some() && r.header("repl-uid").is_some());
    let path = loc.trim_start_matches(&s.url(""));
    assert_eq!(
        s.send(s.req("GET", &format!("/{}", path.trim_start_matches('/'))))
            .await
            .text(),
        "Subject: hi\r\n\r\nbody"
    );
    s.put("/inbox/file", "x").await.expect(201);
    s.send(s.req("POST", "/inbox/file").body("x"))
        .await
        .expect(403);
    s.send(s.req("POST", "/nowhere/").body("x"))
        .await
        .expect(404);
}

#[tokio::test]
async fn s18_create_collection() {
    let s = server().await;
    s.mkcol("/docs/").await.expect(201);
    let r = s.mkcol("/docs/sub/").await;
    r.expect(201);
    assert!(r.header("resourcetag").is_some() && r.header("repl-uid").is_some());
    s.mkcol("/docs/sub/").await.expect(409);
    // Untagged tokens refer to the missing target: false. A tagged contenttag of the parent works.
    let ct = find_text(&s.propfind("/docs/", "0", "").await.xml(), "contenttag").unwrap();
    s.send(s.req("MKCOL", "/docs/x/").header("If", "(<rid:whatever>)"))
        .await
        .expect(412);
    let tagged = format!("<{}> (<{ct}>)", s.url("/docs/"));
    s.send(s.req("MKCOL", "/docs/y/").header("If", &tagged))
        .await
        .expect(201);
    s.send(s.req("MKCOL", "/docs/z/").header("If", &tagged))
        .await
        .expect(412);
}

#[tokio::test]
async fn s19_property_upload_with_conflict_check() {
    let s = server().await;
    s.put("/x", "x").await.expect(201);
    let rt = s.rt("/x").await;
    let body = r#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:p>1</Z:p></D:prop></D:set></D:propertyupdate>"#;
    let r = s
        .send(
            s.req("PROPPATCH", "/x")
                .header("If", format!("(<{rt}>)"))
                .body(body),
        )
        .await;
    r.expect(207);
    let rt3 = r
        .header("resourcetag")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_owned();
    assert_ne!(rt3, rt);
    assert!(r.header("repl-uid").is_some());
    s.send(
        s.req("PROPPATCH", "/x")
            .header("If", format!("(<{rt}>)"))
            .body(body),
    )
    .await
    .expect(412);
}

const DEEP: &str = r#"SELECT "http://schemas.microsoft.com/repl/repl-uid" FROM SCOPE('DEEP TRAVERSAL OF "/root/"')"#;

fn sql_for(path: &str) -> String {
    format!(
        r#"SELECT "http://schemas.microsoft.com/repl/repl-uid" FROM SCOPE('SHALLOW TRAVERSAL OF "{path}"')"#
    )
}

#[tokio::test]
async fn s20_move_and_i10() {
    let s = server().await;
    s.mkcol("/root/").await.expect(201);
    s.mkcol("/root/a/").await.expect(201);
    s.mkcol("/root/b/").await.expect(201);
    s.put("/root/a/x", "x").await.expect(201);
    s.put("/root/b/x2", "taken").await.expect(201);
    let rid = s
        .send(s.req("PROPFIND", "/root/a/x").header("Depth", "0"))
        .await;
    let rid = find_text(&rid.xml(), "repl-uid").unwrap();
    let ma = Manifest::parse(
        &s.manifest("/root/a/", None, Some(&sql_for("/root/a/")), &[], None)
            .await,
    );
    let mb = Manifest::parse(
        &s.manifest("/root/b/", None, Some(&sql_for("/root/b/")), &[], None)
            .await,
    );
    let md = Manifest::parse(&s.manifest("/root/", None, Some(DEEP), &[], None).await);
    let dest = s.url("/root/b/x2");
    s.send(
        s.req("MOVE", "/root/a/x")
            .header("Destination", &dest)
            .header("Overwrite", "F"),
    )
    .await
    .expect(412);
    let r = s
        .send(
            s.req("MOVE", "/root/a/x")
                .header("Destination", s.url("/root/b/x"))
                .header("If", format!("(<{rid}>)"))
                .header("Overwrite", "F"),
        )
        .await;
    r.expect(201);
    assert!(r.header("resourcetag").is_none() && r.header("repl-uid").is_none());
    let a2 = Manifest::parse(
        &s.manifest("/root/a/", Some(&ma.blob()), None, &[], None)
            .await,
    );
    assert_eq!(a2.rows.len(), 1);
    assert_eq!(
        (a2.rows[0].changetype.as_str(), a2.rows[0].rid.as_deref()),
        ("delete", Some(rid.as_str()))
    );
    let b2 = Manifest::parse(
        &s.manifest("/root/b/", Some(&mb.blob()), None, &[], None)
            .await,
    );
    assert_eq!(b2.hrefs("change"), vec![s.url("/root/b/x")]);
    assert_eq!(b2.rows[0].rid.as_deref(), Some(rid.as_str()));
    let d2 = Manifest::parse(
        &s.manifest("/root/", Some(&md.blob()), None, &[], None)
            .await,
    );
    let pos = |ct: &str| {
        d2.rows
            .iter()
            .position(|r| r.changetype == ct && r.rid.as_deref() == Some(rid.as_str()))
            .unwrap()
    };
    assert!(
        pos("delete") < pos("change"),
        "I10: delete before change for one repl-uid"
    );
}

#[tokio::test]
async fn s21_copy() {
    let s = server().await;
    s.mkcol("/a/").await.expect(201);
    s.mkcol("/b/").await.expect(201);
    s.put("/a/x", "x").await.expect(201);
    let rt = s.rt("/a/x").await;
    let mb = Manifest::parse(
        &s.manifest("/b/", None, Some(&sql_for("/b/")), &[], None)
            .await,
    );
    s.send(
        s.req("COPY", "/a/x")
            .header("Destination", s.url("/b/x"))
            .header("If", format!("(<{rt}>)")),
    )
    .await
    .expect(201);
    let b2 = Manifest::parse(&s.manifest("/b/", Some(&mb.blob()), None, &[], None).await);
    assert_eq!(b2.hrefs("change"), vec![s.url("/b/x")]);
    let src_rid = find_text(&s.propfind("/a/x", "0", "").await.xml(), "repl-uid").unwrap();
    assert_ne!(
        b2.rows[0].rid.as_deref(),
        Some(src_rid.as_str()),
        "a copy is a new resource"
    );
}

#[tokio::test]
async fn s22_delete_item() {
    let s = server().await;
    s.mkcol("/a/").await.expect(201);
    s.put("/a/y", "y").await.expect(201);
    let ma = Manifest::parse(
        &s.manifest("/a/", None, Some(&sql_for("/a/")), &[], None)
            .await,
    );
    let rt = s.rt("/a/y").await;
    let r = s
        .send(s.req("DELETE", "/a/y").header("If", format!("(<{rt}>)")))
        .await;
    r.expect(204);
    assert_eq!(
        r.header("resourcetag").map(|t| t.trim_matches(['<', '>'])),
        Some(rt.as_str())
    );
    let m = Manifest::parse(&s.manifest("/a/", Some(&ma.blob()), None, &[], None).await);
    assert_eq!(m.hrefs("delete"), vec![s.url("/a/y")]);
}

#[tokio::test]
async fn s23_delete_collection_only_if_untouched() {
    let s = server().await;
    s.mkcol("/sub/").await.expect(201);
    let ct = find_text(&s.propfind("/sub/", "0", "").await.xml(), "contenttag").unwrap();
    s.put("/sub/new", "x").await.expect(201);
    s.send(s.req("DELETE", "/sub/").header("If", format!("(<{ct}>)")))
        .await
        .expect(412);
    let ct = find_text(&s.propfind("/sub/", "0", "").await.xml(), "contenttag").unwrap();
    s.send(s.req("DELETE", "/sub/").header("If", format!("(<{ct}>)")))
        .await
        .expect(204);
}

#[tokio::test]
async fn s24_hierarchy_change_detection() {
    let s = server().await;
    for c in ["/root/", "/root/f1/", "/root/f2/", "/other/"] {
        s.mkcol(c).await.expect(201);
    }
    let body = format!(
        r#"<D:propfind xmlns:D="DAV:" xmlns:R="{REPL}"><D:prop><R:contenttag/><R:repl-uid/></D:prop></D:propfind>"#
    );
    let snapshot = |r: davrepl_tests::Reply| -> Vec<(String, String, String)> {
        responses(&r.xml())
            .into_iter()
            .map(|(h, e)| {
                (
                    h,
                    find_text(&e, "contenttag").unwrap_or_default(),
                    find_text(&e, "repl-uid").unwrap_or_default(),
                )
            })
            .collect()
    };
    let before = snapshot(s.propfind("/root/", "1", &body).await);
    s.put("/root/f1/item", "x").await.expect(201);
    let after = snapshot(s.propfind("/root/", "1", &body).await);
    let changed: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0.clone())
        .collect();
    assert_eq!(changed, vec!["/root/f1/".to_owned()]);
    let f2_rid = after.iter().find(|r| r.0 == "/root/f2/").unwrap().2.clone();
    s.send(
        s.req("MOVE", "/root/f2/")
            .header("Destination", s.url("/root/f3/")),
    )
    .await
    .expect(201);
    let moved = snapshot(s.propfind("/root/", "1", &body).await);
    assert_eq!(
        moved.iter().find(|r| r.2 == f2_rid).map(|r| r.0.as_str()),
        Some("/root/f3/"),
        "known repl-uid under a new href: moved"
    );
}

#[tokio::test]
async fn s25_deep_and_hierarchical_parents_first() {
    let s = server().await;
    s.mkcol("/root/").await.expect(201);
    s.mkcol("/root/p/").await.expect(201);
    s.put("/root/p/child", "x").await.expect(201);
    s.mkcol("/root/p/q/").await.expect(201);
    s.put("/root/p/q/leaf", "x").await.expect(201);
    // The parent changes after its members: it must still come first in a first sync.
    let body = r#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:p>1</Z:p></D:prop></D:set></D:propertyupdate>"#;
    s.send(s.req("PROPPATCH", "/root/p/").body(body))
        .await
        .expect(207);
    let m = Manifest::parse(&s.manifest("/root/", None, Some(DEEP), &[], None).await);
    let hrefs = m.hrefs("change");
    let mut set = hrefs.clone();
    set.sort();
    assert_eq!(
        set,
        ["/root/p/", "/root/p/child", "/root/p/q/", "/root/p/q/leaf"].map(|p| s.url(p)),
        "exactly every descendant"
    );
    assert_eq!(m.rows.len(), 4);
    for (i, h) in hrefs.iter().enumerate() {
        for later in &hrefs[i + 1..] {
            assert!(
                !h.starts_with(later.as_str()) || h == later,
                "{later} (a parent) came after {h}"
            );
        }
    }
    let hier = r#"SELECT "DAV:displayname" FROM SCOPE('HIERARCHICAL TRAVERSAL OF "/root/"')"#;
    let m = Manifest::parse(&s.manifest("/root/", None, Some(hier), &[], None).await);
    assert_eq!(
        m.hrefs("change"),
        vec![s.url("/root/p/"), s.url("/root/p/q/")]
    );
}

#[tokio::test]
async fn s26_item_leaving_the_filter() {
    let s = server().await;
    inbox(&s, &["m1", "m2"]).await;
    let set = |v: &str| {
        format!(
            r#"<D:propertyupdate xmlns:D="DAV:" xmlns:H="urn:schemas:httpmail:"><D:set><D:prop><H:read>{v}</H:read></D:prop></D:set></D:propertyupdate>"#
        )
    };
    for m in ["/inbox/m1", "/inbox/m2"] {
        s.send(s.req("PROPPATCH", m).body(set("0")))
            .await
            .expect(207);
    }
    let unread = format!("{SHALLOW} WHERE \"urn:schemas:httpmail:read\" = false");
    let m1 = Manifest::parse(&s.manifest("/inbox/", None, Some(&unread), &[], None).await);
    assert_eq!(m1.rows.len(), 2);
    let rid = m1
        .rows
        .iter()
        .find(|r| r.href.ends_with("/m1"))
        .unwrap()
        .rid
        .clone();
    s.send(s.req("PROPPATCH", "/inbox/m1").body(set("1")))
        .await
        .expect(207);
    let m2 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m1.blob()), None, &[], None)
            .await,
    );
    assert_eq!(m2.rows.len(), 1);
    assert_eq!(
        (m2.rows[0].changetype.as_str(), &m2.rows[0].rid),
        ("delete", &rid)
    );
}

#[tokio::test]
async fn invariants_i1_to_i5() {
    let s = server().await;
    s.mkcol("/c/").await.expect(201);
    s.put("/c/i", "1").await.expect(201);
    let all = s.propfind("/", "infinity", "").await;
    for (_, e) in responses(&all.xml()) {
        assert!(
            find_text(&e, "resourcetag").is_some_and(|t| t.starts_with("rt:")),
            "I1"
        );
        assert!(
            find_text(&e, "repl-uid").is_some_and(|t| t.starts_with("rid:")),
            "I1"
        );
        if davrepl_tests::has_element(&e, "collection") {
            assert!(
                find_text(&e, "contenttag").is_some(),
                "I1: collections have a contenttag"
            );
        }
    }
    let rt1 = s.rt("/c/i").await;
    assert_eq!(s.rt("/c/i").await, rt1, "I2: reads do not change the tag");
    s.put("/c/i", "2").await.expect(204);
    let rt2 = s.rt("/c/i").await;
    assert_ne!(rt1, rt2, "I2");
    let rid = |r: davrepl_tests::Reply| find_text(&r.xml(), "repl-uid").unwrap();
    let rid1 = rid(s.propfind("/c/i", "0", "").await);
    s.send(s.req("MOVE", "/c/i").header("Destination", s.url("/c/j")))
        .await
        .expect(201);
    assert_eq!(rid(s.propfind("/c/j", "0", "").await), rid1, "I3");
    s.send(s.req("DELETE", "/c/j")).await.expect(204);
    s.put("/c/j", "2").await.expect(201);
    assert_ne!(rid(s.propfind("/c/j", "0", "").await), rid1, "I4");
    let ct = |r: davrepl_tests::Reply| find_text(&r.xml(), "contenttag").unwrap();
    let ct1 = ct(s.propfind("/c/", "0", "").await);
    s.put("/other", "x").await.expect(201);
    assert_eq!(
        ct(s.propfind("/c/", "0", "").await),
        ct1,
        "I5: unrelated change"
    );
    s.put("/c/j", "3").await.expect(204);
    assert_ne!(
        ct(s.propfind("/c/", "0", "").await),
        ct1,
        "I5: member change"
    );
}

#[tokio::test]
async fn invariants_i7_replay_and_i8_first_sync() {
    let s = server().await;
    inbox(&s, &["a", "b", "c"]).await;
    s.send(s.req("DELETE", "/inbox/c")).await.expect(204);
    let m0 = first(&s).await;
    assert!(
        m0.hrefs("delete").is_empty(),
        "I8: a first sync never reports deletes"
    );
    s.put("/inbox/a", "2").await.expect(204);
    s.send(s.req("DELETE", "/inbox/b")).await.expect(204);
    let r1 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m0.blob()), None, &[], None)
            .await,
    );
    let r2 = Manifest::parse(
        &s.manifest("/inbox/", Some(&m0.blob()), None, &[], None)
            .await,
    );
    let key = |m: &Manifest| {
        m.rows
            .iter()
            .map(|r| (r.href.clone(), r.changetype.clone(), r.rt.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&r1), key(&r2), "I7: replay is idempotent");
    let rt_a = s.rt("/inbox/a").await;
    assert_eq!(
        key(&r1),
        vec![
            (s.url("/inbox/a"), "change".to_owned(), Some(rt_a)),
            (s.url("/inbox/b"), "delete".to_owned(), None),
        ],
        "exactly the change and the delete, in log order"
    );
}

#[tokio::test]
async fn invalid_collblobs_give_475() {
    let store = MemStore::new();
    let s = serve(ReplLayer::new(store.clone())).await;
    inbox(&s, &["a"]).await;
    let m = first(&s).await;
    let blob = m.blob();
    s.manifest("/inbox/", Some("garbled!!"), Some(SHALLOW), &[], None)
        .await
        .expect(475);
    let mut chars: Vec<char> = blob.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    s.manifest("/inbox/", Some(&tampered), Some(SHALLOW), &[], None)
        .await
        .expect(475);
    let other = serve(ReplLayer::new(MemStore::new())).await;
    inbox(&other, &["a"]).await;
    other
        .manifest("/inbox/", Some(&blob), Some(SHALLOW), &[], None)
        .await
        .expect(475);
    // Expired: the tombstones it needs were purged.
    s.send(s.req("DELETE", "/inbox/a")).await.expect(204);
    store
        .purge(std::time::SystemTime::now() + std::time::Duration::from_secs(1))
        .await
        .unwrap();
    s.manifest("/inbox/", Some(&blob), Some(SHALLOW), &[], None)
        .await
        .expect(475);
}

#[tokio::test]
async fn input_spellings_are_accepted() {
    let s = server().await;
    inbox(&s, &["a"]).await;
    for ns in [
        "http://schemas.microsoft.com/repl/",
        "https://schemas.microsoft.com/repl/",
        "http://schemas.microsoft.com/repl",
        "https://schemas.microsoft.com/repl",
    ] {
        for sql in [
            r#"SELECT "DAV:displayname" FROM SCOPE('SHALLOW TRAVERSAL OF "/inbox/"')"#,
            r#"select 'DAV:displayname' from scope ('shallow traversal of "/inbox"')"#,
            r#"SELECT "DAV:displayname" FROM "/inbox/""#,
            r#"SELECT "DAV:displayname" FROM SCOPE('SHALLOW TRAVERSAL OF ""')"#,
        ] {
            let body = search_body(ns, None, Some(sql), &[])
                .replace("<R:collblob/>", "<R:CollBlob>  </R:CollBlob>");
            let r = s.send(s.req("SEARCH", "/inbox/").body(body)).await;
            let m = Manifest::parse(&r);
            assert_eq!(m.repl_ns, ns, "the client's namespace spelling is echoed");
            assert_eq!(m.rows.len(), 1, "{ns} {sql}");
        }
    }
    let abs = format!(
        r#"SELECT "DAV:displayname" FROM SCOPE('SHALLOW TRAVERSAL OF "{}"')"#,
        s.url("/inbox/")
    );
    assert_eq!(
        Manifest::parse(&s.manifest("/inbox/", None, Some(&abs), &[], None).await)
            .rows
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_manifest_requests() {
    let s = server().await;
    inbox(&s, &["a"]).await;
    for (sql, status) in [
        ("SELECT nonsense", 400),
        (r#"SELECT "a" FROM "/inbox/" WHERE CONTAINS('x')"#, 422),
        (r#"SELECT "a" FROM "/elsewhere/""#, 403),
        (r#"SELECT "a" FROM "/inbox/a""#, 400),
    ] {
        s.manifest("/inbox/", None, Some(sql), &[], None)
            .await
            .expect(status);
    }
    s.manifest("/nope/", None, Some(SHALLOW), &[], None)
        .await
        .expect(404);
    s.manifest("/inbox/", None, Some(SHALLOW), &[], Some("rows=x"))
        .await
        .expect(400);
    s.send(
        s.req("SEARCH", "/inbox/")
            .body("<D:searchrequest xmlns:D=\"DAV:\"><D:basicsearch/></D:searchrequest>"),
    )
    .await
    .expect(422);
    s.send(
        s.req("SEARCH", "/inbox/")
            .header("If", "(<rt:stale>)")
            .body(search_body(REPL, None, Some(SHALLOW), &[])),
    )
    .await
    .expect(412);
}

#[tokio::test]
async fn plain_search_with_rows() {
    let s = server().await;
    s.mkcol("/docs/").await.expect(201);
    for i in 0..12 {
        s.put(&format!("/docs/d{i:02}"), &"x".repeat(i))
            .await
            .expect(201);
    }
    let q = r#"<D:searchrequest xmlns:D="DAV:"><D:sql>SELECT "DAV:getcontentlength" FROM "/docs/" WHERE "DAV:getcontentlength" &gt;= 5 ORDER BY "DAV:getcontentlength" DESC</D:sql></D:searchrequest>"#;
    let r = s.send(s.req("SEARCH", "/docs/").body(q)).await;
    r.expect(207);
    assert_eq!(r.header("accept-ranges"), Some("rows"));
    assert!(!r.text().contains("changetype") && !r.text().contains("repl>"));
    let lens: Vec<String> = responses(&r.xml())
        .iter()
        .map(|(_, e)| find_text(e, "getcontentlength").unwrap())
        .collect();
    assert_eq!(
        lens,
        (5..12)
            .rev()
            .map(|i: usize| i.to_string())
            .collect::<Vec<_>>()
    );
    let r = s
        .send(
            s.req("SEARCH", "/docs/")
                .header("Range", "rows=0-2")
                .body(q),
        )
        .await;
    assert_eq!(r.header("content-range"), Some("rows 0-2; total=7"));
    assert_eq!(responses(&r.xml()).len(), 3);
}

#[tokio::test]
async fn manifests_carry_checksums_of_small_and_large_items() {
    const SUMS: &str = r#"SELECT "http://owncloud.org/ns/checksums", "http://schemas.microsoft.com/repl/resourcetag" FROM SCOPE('SHALLOW TRAVERSAL OF "/inbox/"')"#;
    let s = server().await;
    // Uploaded without OC-Checksum: the manifest completes the digests, the small items
    // together, the large one on its own.
    inbox(&s, &["msg1", "msg4"]).await;
    s.put("/inbox/big", &"z".repeat(100_000)).await.expect(201);
    let tag = s.rt("/inbox/msg1").await;
    for round in 0..2 {
        let r = s.manifest("/inbox/", None, Some(SUMS), &[], None).await;
        let text = r.text();
        assert_eq!(text.matches("MD5:").count(), 3, "round {round}: {text}");
        for digest in [
            "MD5:3fccf7e8ef8bb6df5c1a77f579c5b914",
            "SHA256:289e5175e02c788c2d442cfe81d6be0533d8c13e253ef763fda45d37accfe4d4",
            "MD5:820b15b38cc6291a266ea029c49a1253",
            "SHA256:51b5df22eaeaf7a6101b57cfb45084cb98864b1502c6ed1a692da604366a13a4",
            "MD5:c8a63b8dc8a30221a1fa4804e6dcd9bf",
            "SHA256:7e9470bdc2048db4667681aed70b1dd034b5310feac2f34e96220565d47638b2",
        ] {
            assert!(text.contains(digest), "round {round}: {digest} in {text}");
        }
    }
    assert_eq!(
        s.rt("/inbox/msg1").await,
        tag,
        "recording digests is no change"
    );
}

//! Requests that used to take the whole process down, stall it or cross a boundary (issue
//! "No request may take the server down"): each gets a clear 4xx (or a correct answer) quickly,
//! and the server keeps serving.

use std::time::{Duration, Instant};

use davrepl::{MemStore, ReplLayer};
use davrepl_tests::{TestServer, serve};

async fn server() -> TestServer {
    let s = serve(ReplLayer::new(MemStore::new())).await;
    s.mkcol("/c/").await.expect(201);
    s.put("/c/f", "x").await.expect(201);
    s
}

async fn still_serving(s: &TestServer) {
    let r = s.send(s.req("GET", "/c/f")).await;
    r.expect(200);
    assert_eq!(r.text(), "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_bodies_are_refused_not_a_stack_overflow() {
    let s = server().await;
    for (method, root, close) in [
        (
            "PROPFIND",
            r#"<D:propfind xmlns:D="DAV:">"#,
            "</D:propfind>",
        ),
        (
            "PROPPATCH",
            r#"<D:propertyupdate xmlns:D="DAV:">"#,
            "</D:propertyupdate>",
        ),
        (
            "SEARCH",
            r#"<D:searchrequest xmlns:D="DAV:">"#,
            "</D:searchrequest>",
        ),
    ] {
        for closed in [false, true] {
            let inner = if closed {
                format!("{}{}", "<a>".repeat(20_000), "</a>".repeat(20_000))
            } else {
                "<a>".repeat(20_000)
            };
            let r = s
                .send(s.req(method, "/c/").body(format!("{root}{inner}{close}")))
                .await;
            r.expect(400);
        }
    }
    still_serving(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_declaration_blow_up_is_refused() {
    let s = server().await;
    let decls: String = (0..500)
        .map(|i| format!(" xmlns:p{i}=\"urn:x:{i}\""))
        .collect();
    let body = format!(
        "<D:propfind xmlns:D=\"DAV:\"{decls}><D:prop>{}</D:prop></D:propfind>",
        "<D:getetag/>".repeat(5000)
    );
    let t = Instant::now();
    let r = s.send(s.req("PROPFIND", "/c/").body(body)).await;
    assert!((400..500).contains(&r.status), "{}", r.status);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    still_serving(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_after_the_root_element_is_malformed() {
    let s = server().await;
    let r = s
        .send(
            s.req("PROPFIND", "/c/")
                .body(r#"<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>trailing"#),
        )
        .await;
    r.expect(400);
}

fn search(scope: &str, tail: &str) -> String {
    format!(
        r#"<D:searchrequest xmlns:D="DAV:"><D:sql>SELECT "DAV:displayname" FROM SCOPE('SHALLOW TRAVERSAL OF "{scope}"') {tail}</D:sql></D:searchrequest>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pathological_like_patterns_finish() {
    let s = server().await;
    for i in 0..50 {
        s.put(&format!("/c/{}", "a".repeat(30 + i)), "x")
            .await
            .expect(201);
    }
    let pattern = format!("{}x", "%".repeat(40));
    let t = Instant::now();
    let r = s
        .send(s.req("SEARCH", "/c/").body(search(
            "/c/",
            &format!(r#"WHERE "DAV:displayname" LIKE '{pattern}'"#),
        )))
        .await;
    r.expect(207);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let long = "%a".repeat(300);
    let r = s
        .send(s.req("SEARCH", "/c/").body(search(
            "/c/",
            &format!(r#"WHERE "DAV:displayname" LIKE '{long}'"#),
        )))
        .await;
    r.expect(422);
    still_serving(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_by_over_mixed_numbers_and_text_does_not_panic() {
    let s = server().await;
    let mut names: Vec<String> = (0..200)
        .map(|i| match i % 4 {
            0 => i.to_string(),
            1 => format!("{i}a"),
            2 => format!("{i}.5"),
            _ => format!("x{i}"),
        })
        .collect();
    names.push("NaN".into());
    for n in &names {
        s.put(&format!("/c/{n}"), "x").await.expect(201);
    }
    let r = s
        .send(
            s.req("SEARCH", "/c/")
                .body(search("/c/", r#"ORDER BY "DAV:displayname""#)),
        )
        .await;
    r.expect(207);
    // Numbers (by value) come before other text (by text), whatever the input order.
    let text = r.text();
    let pos = |name: &str| {
        text.find(&format!("/c/{name}<"))
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert!(pos("4") < pos("40"));
    assert!(pos("40") < pos("100"));
    assert!(pos("196") < pos("1a"));
    still_serving(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_search_scope_must_lie_inside_the_request_uri() {
    let s = server().await;
    s.mkcol("/alice/").await.expect(201);
    s.put("/alice/secret", "x").await.expect(201);
    s.mkcol("/bob/").await.expect(201);
    let r = s
        .send(s.req("SEARCH", "/bob/").body(search("/alice/", "")))
        .await;
    r.expect(403);
    assert!(!r.text().contains("secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_html_is_served_inert() {
    let s = server().await;
    s.send(
        s.req("PUT", "/c/page.html")
            .header("Content-Type", "text/html")
            .body("<script>alert(document.cookie)</script>"),
    )
    .await
    .expect(201);
    let r = s.send(s.req("GET", "/c/page.html")).await;
    r.expect(200);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(
        r.header("content-security-policy")
            .is_some_and(|v| v.contains("sandbox"))
    );
}

/// An authorizer that hides `/alice` from everyone (reads and writes), allows the rest.
fn hide_alice(
    _: Option<&davrepl::Principal>,
    access: davrepl::Access,
    p: &davrepl::ResourcePath,
) -> bool {
    let first = p.segments().next();
    match first {
        Some("alice") => false,
        // The root's subtree contains /alice: recursive access to it is refused too.
        None => !access.is_tree(),
        _ => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_requests_and_if_headers_respect_the_authorizer() {
    let store = MemStore::new();
    let admin = serve(ReplLayer::new(store.clone())).await;
    admin.mkcol("/alice/").await.expect(201);
    admin.put("/alice/secret", "s").await.expect(201);
    admin.mkcol("/bob/").await.expect(201);
    let rt = admin.rt("/alice/secret").await;
    let s = serve(ReplLayer::new(store).authorize(hide_alice)).await;
    // A tagged If list naming a hidden resource is never looked up: it cannot match, so its
    // resourcetag cannot be confirmed by probing.
    let secret_url = s.url("/alice/secret");
    s.send(
        s.req("PUT", "/bob/probe")
            .header("If", format!("<{secret_url}> (<{rt}>)"))
            .body("x"),
    )
    .await
    .expect(412);
    // Recursive reads and writes of the root reach /alice: refused; one resource is fine.
    s.send(s.req("PROPFIND", "/").header("Depth", "1"))
        .await
        .expect(403);
    s.send(s.req("PROPFIND", "/").header("Depth", "0"))
        .await
        .expect(207);
    s.send(s.req("DELETE", "/")).await.expect(403);
    s.send(
        s.req("COPY", "/bob/")
            .header("Destination", s.url("/alice/bob-copy/")),
    )
    .await
    .expect(403);
    s.send(s.req("SEARCH", "/").body(search("/", "")))
        .await
        .expect(403);
    // A sync-collection report reads the whole tree too (any level): refused on the root,
    // served on a collection the principal may read.
    for level in ["1", "infinite"] {
        s.sync("/", None, level, "<D:getetag/>", None)
            .await
            .expect(403);
        s.sync("/bob/", None, level, "<D:getetag/>", None)
            .await
            .expect(207);
    }
    s.sync("/alice/", None, "1", "<D:getetag/>", None)
        .await
        .expect(403);
    // Watching a collection reveals its members like listing them: a subscription to the
    // root's members or to /alice is refused; LOCK on /alice too.
    for (path, depth) in [("/", "1"), ("/alice/", "0")] {
        s.send(
            s.req("SUBSCRIBE", path)
                .header("Notification-Type", "update")
                .header("Depth", depth),
        )
        .await
        .expect(403);
    }
    s.send(
        s.req("SUBSCRIBE", "/bob/")
            .header("Notification-Type", "update"),
    )
    .await
    .expect(200);
    s.send(
        s.req("LOCK", "/alice/secret")
            .header("Depth", "0")
            .body("<D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"),
    )
    .await
    .expect(403);
    // An event stream on /alice is refused (one on the root never shows its paths: events.rs).
    s.send(
        s.req("GET", "/alice/")
            .header("Accept", "text/event-stream"),
    )
    .await
    .expect(403);
    admin
        .send(admin.req("GET", "/alice/secret"))
        .await
        .expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smaller_hardening() {
    let s = server().await;
    // Column names and aliases become element names: anything that is not an XML name is 400.
    for tail in [r#"'x><y attr="1"/>'"#, r#""bad name""#] {
        let sql = format!(
            r#"<D:searchrequest xmlns:D="DAV:"><D:sql>SELECT "DAV:displayname" AS {} FROM SCOPE('SHALLOW TRAVERSAL OF "/c/"')</D:sql></D:searchrequest>"#,
            tail.replace('<', "&lt;")
        );
        let r = s.send(s.req("SEARCH", "/c/").body(sql)).await;
        assert!(matches!(r.status, 400 | 422), "{tail}: {}", r.status);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain")),
            "the refusal is plain text; the alias never reaches XML output"
        );
    }
    let sql = r#"<D:searchrequest xmlns:D="DAV:"><D:sql>SELECT "urn:x:a&lt;b" FROM SCOPE('SHALLOW TRAVERSAL OF "/c/"')</D:sql></D:searchrequest>"#;
    s.send(s.req("SEARCH", "/c/").body(sql)).await.expect(400);
    // Destination obeys the path limits of the Request-URI.
    let long = format!("/c/{}", "d/".repeat(100));
    s.send(s.req("COPY", "/c/f").header("Destination", s.url(&long)))
        .await
        .expect(414);
    // 475 goes out with its reason phrase.
    let body = r#"<D:searchrequest xmlns:D="DAV:" xmlns:R="http://schemas.microsoft.com/repl/"><R:repl><R:collblob>garbled</R:collblob></R:repl><D:sql>SELECT "DAV:displayname" FROM SCOPE('SHALLOW TRAVERSAL OF "/c/"')</D:sql></D:searchrequest>"#;
    let line = s.raw_status_line("SEARCH", "/c/", "", body).await;
    assert_eq!(line, "HTTP/1.1 475 Invalid collblob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_work_is_budgeted_per_request() {
    let mut limits = davrepl::Limits::default();
    limits.sql.max_eval_steps = 5_000_000;
    let s = serve(ReplLayer::new(MemStore::new()).limits(limits)).await;
    s.mkcol("/c/").await.expect(201);
    let value = "a".repeat(100_000);
    for i in 0..5 {
        let p = format!("/c/{i}");
        s.put(&p, "x").await.expect(201);
        let body = format!(
            r#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z:"><D:set><D:prop><Z:v>{value}</Z:v></D:prop></D:set></D:propertyupdate>"#
        );
        s.send(s.req("PROPPATCH", &p).body(body)).await.expect(207);
    }
    // One `%` and a long literal: each row costs ~100,000 × 200 comparisons.
    let pattern = format!("%{}b", "a".repeat(200));
    let t = Instant::now();
    let r = s
        .send(s.req("SEARCH", "/c/").body(search(
            "/c/",
            &format!(r#"WHERE "urn:z:v" LIKE '{pattern}'"#),
        )))
        .await;
    r.expect(422);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // A cheap filter over the same rows is fine.
    let r = s
        .send(
            s.req("SEARCH", "/c/")
                .body(search("/c/", r#"WHERE "urn:z:v" LIKE 'a%'"#)),
        )
        .await;
    r.expect(207);
}

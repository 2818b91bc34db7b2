//! Every handler's error path, driven by a store that fails on demand: each method answers a
//! clean 500 or 503 (never a panic, a hang or the store's own text), and a content stream that
//! breaks half-way ends that response only.

use davrepl::{MemStore, ReplLayer};
use davrepl_testkit::faulty::{Failure, FaultyStore, INJECTED};
use davrepl_tests::{REPL, TestServer, serve};

const SQL: &str = r#"SELECT "DAV:displayname" FROM SCOPE('SHALLOW TRAVERSAL OF "/c/"')"#;

/// One request: method, path, headers, body.
type Request = (&'static str, String, Vec<(&'static str, String)>, String);

/// One request of every kind the layer serves.
fn requests(s: &TestServer, blob: &str) -> Vec<Request> {
    let search = |repl: &str| {
        format!(
            r#"<D:searchrequest xmlns:D="DAV:" xmlns:R="{REPL}">{repl}<D:sql>{SQL}</D:sql></D:searchrequest>"#
        )
    };
    vec![
        ("GET", "/c/f".into(), vec![], String::new()),
        ("HEAD", "/c/f".into(), vec![], String::new()),
        ("GET", "/c/".into(), vec![], String::new()),
        ("PUT", "/c/f".into(), vec![], "new".into()),
        ("PUT", "/c/g".into(), vec![("If-None-Match", "*".into())], "new".into()),
        ("POST", "/c/".into(), vec![], "posted".into()),
        ("DELETE", "/c/f".into(), vec![], String::new()),
        ("MKCOL", "/c/sub/".into(), vec![], String::new()),
        ("COPY", "/c/f".into(), vec![("Destination", s.url("/c/copy"))], String::new()),
        ("MOVE", "/c/f".into(), vec![("Destination", s.url("/c/moved"))], String::new()),
        ("PROPFIND", "/c/".into(), vec![("Depth", "0".into())], String::new()),
        ("PROPFIND", "/c/".into(), vec![("Depth", "1".into())], String::new()),
        (
            "PROPPATCH",
            "/c/f".into(),
            vec![],
            r#"<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z:"><D:set><D:prop><Z:a>1</Z:a></D:prop></D:set></D:propertyupdate>"#.into(),
        ),
        ("SEARCH", "/c/".into(), vec![], search("")),
        ("SEARCH", "/c/".into(), vec![], search("<R:repl><R:collblob/></R:repl>")),
        (
            "SEARCH",
            "/c/".into(),
            vec![],
            search(&format!("<R:repl><R:collblob>{blob}</R:collblob></R:repl>")),
        ),
        (
            "PROPFIND",
            "/c/".into(),
            vec![("Depth", "1".into())],
            format!(r#"<D:propfind xmlns:D="DAV:" xmlns:R="{REPL}"><R:repl><R:collblob>{blob}</R:collblob></R:repl><D:allprop/></D:propfind>"#),
        ),
    ]
}

async fn fixture() -> (TestServer, FaultyStore<MemStore>, String) {
    let store = FaultyStore::new(MemStore::new());
    let s = serve(ReplLayer::new(store.clone())).await;
    s.mkcol("/c/").await.expect(201);
    s.put("/c/f", "content").await.expect(201);
    let m = davrepl_tests::Manifest::parse(&s.manifest("/c/", None, Some(SQL), &[], None).await);
    (s, store, m.blob())
}

#[tokio::test]
async fn every_method_answers_a_clean_server_error() {
    let (s, store, blob) = fixture().await;
    for (kind, want) in [
        (davrepl::ErrorKind::Internal, 500),
        (davrepl::ErrorKind::Unavailable, 503),
    ] {
        store.fail(Some(Failure::Calls(kind)));
        for (method, path, headers, body) in requests(&s, &blob) {
            let mut rb = s.req(method, &path).body(body);
            for (k, v) in headers {
                rb = rb.header(k, v);
            }
            let r = s.send(rb).await;
            assert_eq!(r.status, want, "{method} {path} with a failing store");
            assert!(
                !r.text().contains(INJECTED),
                "{method} {path}: the store's own text reached the client: {}",
                r.text()
            );
        }
    }
    // OPTIONS touches no store.
    s.send(s.req("OPTIONS", "/c/")).await.expect(200);
    store.fail(None);
    let r = s.send(s.req("GET", "/c/f")).await;
    r.expect(200);
    assert_eq!(
        r.text(),
        "content",
        "nothing was changed by the failed requests"
    );
}

#[tokio::test]
async fn a_content_stream_that_breaks_ends_only_that_response() {
    let (s, store, _) = fixture().await;
    store.fail(Some(Failure::MidStream));
    // The content fails after the handler answered 200 with Content-Length 7: the client must
    // see a broken exchange (the connection ends before the head or inside the body), never a
    // response that looks complete.
    let broken = match reqwest::Client::new().get(s.url("/c/f")).send().await {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(
        broken,
        "a failed content stream looked like a complete response"
    );
    store.fail(None);
    s.send(s.req("GET", "/c/f")).await.expect(200);
    s.put("/c/h", "after").await.expect(201);
}

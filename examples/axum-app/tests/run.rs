//! Runs the example binary and drives it like a user would.

use std::process::Command;

use davrepl_tests::spawn_listening;

#[tokio::test]
async fn the_example_works() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_example-axum-app"));
    cmd.arg("127.0.0.1:0");
    let child = spawn_listening(cmd);
    let base = child.base.clone();
    let c = reqwest::Client::new();
    let m = |s: &str| reqwest::Method::from_bytes(s.as_bytes()).unwrap();
    // The app's own routes are untouched and need no credentials.
    assert_eq!(
        c.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let n: usize = c
        .post(format!("{base}/api/notes"))
        .header("content-type", "application/json")
        .body("\"hello\"")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(n, 1);
    // /dav needs credentials.
    assert_eq!(
        c.request(m("PROPFIND"), format!("{base}/dav/"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let alice = |rb: reqwest::RequestBuilder| rb.basic_auth("alice", Some("alice-pw"));
    let bob = |rb: reqwest::RequestBuilder| rb.basic_auth("bob", Some("bob-pw"));
    assert_eq!(
        alice(c.request(m("MKCOL"), format!("{base}/dav/users/")))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    assert_eq!(
        alice(c.request(m("MKCOL"), format!("{base}/dav/users/alice/")))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    assert_eq!(
        alice(c.put(format!("{base}/dav/users/alice/a.txt")).body("A"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    // Bob may read alice's files but not write them.
    assert_eq!(
        bob(c.get(format!("{base}/dav/users/alice/a.txt")))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        bob(c.put(format!("{base}/dav/users/alice/a.txt")).body("B"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    // Hrefs carry the nesting prefix.
    let r = alice(
        c.request(m("PROPFIND"), format!("{base}/dav/users/alice/"))
            .header("Depth", "1"),
    )
    .send()
    .await
    .unwrap();
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("<D:href>/dav/users/alice/a.txt</D:href>")
    );
    // A collblob is bound to its user.
    let sql = r#"SELECT "DAV:displayname" FROM SCOPE('SHALLOW TRAVERSAL OF "/dav/users/alice/"')"#;
    let body = |blob: &str| {
        format!(
            r#"<D:searchrequest xmlns:D="DAV:" xmlns:R="http://schemas.microsoft.com/repl/"><R:repl><R:collblob>{blob}</R:collblob></R:repl><D:sql>{sql}</D:sql></D:searchrequest>"#
        )
    };
    let r = alice(
        c.request(m("SEARCH"), format!("{base}/dav/users/alice/"))
            .body(body("")),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 207);
    let text = r.text().await.unwrap();
    let blob = text
        .split("<d:collblob>")
        .nth(1)
        .unwrap()
        .split("</d:collblob>")
        .next()
        .unwrap()
        .to_owned();
    let status = |who: &str| {
        let rb = c
            .request(m("SEARCH"), format!("{base}/dav/users/alice/"))
            .body(body(&blob));
        if who == "alice" { alice(rb) } else { bob(rb) }
    };
    assert_eq!(status("alice").send().await.unwrap().status().as_u16(), 207);
    assert_eq!(status("bob").send().await.unwrap().status().as_u16(), 475);

    // Recursive requests are authorized for everything below their target: bob cannot reach
    // alice's home through a parent collection, a MOVE, a COPY destination or an If header.
    let code = |rb: reqwest::RequestBuilder| async move {
        bob(rb).send().await.unwrap().status().as_u16()
    };
    assert_eq!(
        code(c.request(m("MKCOL"), format!("{base}/dav/users/bob/"))).await,
        201
    );
    assert_eq!(
        code(c.put(format!("{base}/dav/users/bob/b.txt")).body("mine")).await,
        201
    );
    assert_eq!(
        code(c.delete(format!("{base}/dav/users/"))).await,
        403,
        "DELETE of the parent of alice's home"
    );
    assert_eq!(
        code(
            c.request(m("MOVE"), format!("{base}/dav/users/alice/a.txt"))
                .header("Destination", format!("{base}/dav/users/bob/stolen.txt"))
        )
        .await,
        403
    );
    assert_eq!(
        code(
            c.request(m("COPY"), format!("{base}/dav/users/bob/b.txt"))
                .header("Destination", format!("{base}/dav/users/alice/a.txt"))
        )
        .await,
        403
    );
    assert_eq!(
        code(
            c.request(m("MOVE"), format!("{base}/dav/users/bob/"))
                .header("Destination", format!("{base}/dav/users/"))
        )
        .await,
        403
    );
    let r = alice(c.get(format!("{base}/dav/users/alice/a.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "alice's file survived: {r:?}");
    assert_eq!(r.text().await.unwrap(), "A");
    drop(child);
}

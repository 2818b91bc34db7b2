//! The client against a real server (memory store) on a loopback port.

use std::time::Duration;

use bytes::Bytes;
use davrepl::{MemStore, ReplLayer};
use davrepl_client::{Client, Condition, ErrorKind, Event, Row};
use http_body_util::Full;
use tokio::sync::oneshot;

struct Server {
    url: String,
    _stop: oneshot::Sender<()>,
}

async fn server() -> Server {
    let app = tower::service_fn(|_req: http::Request<davrepl_hyper::Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
    });
    let svc = ReplLayer::new(MemStore::new()).mount("/dav").service(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        davrepl_hyper::serve(listener, svc, async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    Client::builder(format!("http://{addr}/dav/"))
        .build()
        .expect("client")
        .mkcol("c")
        .await
        .expect("MKCOL");
    Server {
        url: format!("http://{addr}/dav/c/"),
        _stop: tx,
    }
}

#[tokio::test]
async fn conditional_writes_are_compare_and_swap() {
    let s = server().await;
    let c = Client::builder(&s.url).build().expect("client");
    let w = c
        .put("a b.txt", "one", Condition::Absent)
        .await
        .expect("create");
    assert!(w.created);
    let tag = w.tag.clone().expect("ResourceTag");
    assert!(tag.starts_with("rt:") && w.rid.as_deref().is_some_and(|r| r.starts_with("rid:")));
    let again = c.put("a b.txt", "two", Condition::Absent).await;
    assert_eq!(
        again.expect_err("exists").kind(),
        ErrorKind::PreconditionFailed
    );
    let w2 = c
        .put("a b.txt", "two", Condition::Tag(tag.clone()))
        .await
        .expect("update");
    assert!(!w2.created);
    let stale = c.put("a b.txt", "three", Condition::Tag(tag.clone())).await;
    assert_eq!(
        stale.expect_err("stale").kind(),
        ErrorKind::PreconditionFailed
    );
    let dl = c.get("a b.txt").await.expect("get");
    assert_eq!(dl.tag, w2.tag);
    assert_eq!(dl.bytes().await.expect("body"), "two");
    let del = c.delete("a b.txt", Condition::Tag(tag)).await;
    assert_eq!(
        del.expect_err("stale").kind(),
        ErrorKind::PreconditionFailed
    );
    assert_eq!(
        c.get("missing").await.expect_err("404").kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        c.mkcol("no/parent").await.expect_err("409").kind(),
        ErrorKind::Conflict
    );
}

#[tokio::test]
async fn manifests_page_and_report_changes_deletes_and_moves() {
    let s = server().await;
    let c = Client::builder(&s.url)
        .rows_per_page(10)
        .build()
        .expect("client");
    c.mkcol("sub").await.expect("mkcol");
    for i in 0..24 {
        c.put(&format!("sub/{i}.txt"), format!("{i}"), Condition::Absent)
            .await
            .expect("put");
    }
    let first = c.manifest_all(None).await.expect("manifest");
    assert_eq!(first.rows.len(), 25, "24 files and their folder");
    let Row::Change(one) = first
        .rows
        .iter()
        .find(|r| matches!(r, Row::Change(i) if i.path == "sub/1.txt"))
        .expect("row")
    else {
        unreachable!()
    };
    assert_eq!(one.len, Some(1));
    assert!(one.sha256.as_deref().is_some_and(|h| h.len() == 64));
    let rid = one.rid.clone().expect("rid");
    // Nothing changed: an empty page, and the same state.
    let none = c.manifest_all(Some(&first.collblob)).await.expect("again");
    assert!(none.rows.is_empty(), "{:?}", none.rows);
    c.move_to("sub/1.txt", "moved.txt", Condition::None, false)
        .await
        .expect("move");
    c.delete("sub/2.txt", Condition::None)
        .await
        .expect("delete");
    let delta = c.manifest_all(Some(&none.collblob)).await.expect("delta");
    let moved_here = delta.rows.iter().any(
        |r| matches!(r, Row::Change(i) if i.path == "moved.txt" && i.rid.as_deref() == Some(&rid)),
    );
    let gone = delta
        .rows
        .iter()
        .any(|r| matches!(r, Row::Delete { path, .. } if path == "sub/2.txt"));
    assert!(moved_here && gone, "{:?}", delta.rows);
    let bad = c.manifest_all(Some("not-a-collblob")).await;
    assert_eq!(bad.expect_err("475").kind(), ErrorKind::InvalidCollblob);
}

#[tokio::test]
async fn a_long_poll_returns_when_something_changes() {
    let s = server().await;
    let c = Client::builder(&s.url).build().expect("client");
    let blob = c.manifest_all(None).await.expect("first").collblob;
    let writer = c.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer
            .put("late.txt", "x", Condition::Absent)
            .await
            .expect("put");
    });
    let started = std::time::Instant::now();
    let page = c
        .manifest(Some(&blob), Some(10), Some(Duration::from_secs(20)))
        .await
        .expect("long poll");
    assert_eq!(page.rows.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn the_event_stream_delivers_changes_and_resumes_from_a_cursor() {
    let s = server().await;
    let c = Client::builder(&s.url).build().expect("client");
    let mut stream = c.events(true, None).await.expect("stream");
    let Some(Event::Ready { cursor }) = stream.next().await.expect("ready") else {
        panic!("the stream starts with ready");
    };
    c.put("e.txt", "1", Condition::Absent).await.expect("put");
    c.delete("e.txt", Condition::None).await.expect("delete");
    let ev = stream.next().await.expect("event").expect("open");
    assert!(
        matches!(&ev, Event::Change { path, is_collection: false, .. } if path == "e.txt"),
        "{ev:?}"
    );
    let ev = stream.next().await.expect("event").expect("open");
    assert!(
        matches!(&ev, Event::Delete { path, .. } if path == "e.txt"),
        "{ev:?}"
    );
    drop(stream);
    // Resuming from the ready cursor replays what came after it (a resource changed several
    // times yields its latest state: here, deleted).
    let mut again = c.events(true, cursor.as_deref()).await.expect("resume");
    let next = async {
        loop {
            match again.next().await.expect("event").expect("open") {
                Event::Ready { .. } => {}
                e => return e,
            }
        }
    };
    let ev = tokio::time::timeout(Duration::from_secs(20), next)
        .await
        .expect("an event after the cursor");
    assert!(
        matches!(&ev, Event::Delete { path, .. } if path == "e.txt"),
        "{ev:?}"
    );
    let mut forged = c.events(true, Some("forged")).await.expect("stream");
    assert_eq!(forged.next().await.expect("reset"), Some(Event::Reset));
}

#[tokio::test]
async fn proppatch_and_propfind() {
    let s = server().await;
    let c = Client::builder(&s.url).build().expect("client");
    c.put("p.txt", "x", Condition::Absent).await.expect("put");
    c.proppatch(
        "p.txt",
        &[("urn:example:", "color", "blue")],
        Condition::None,
    )
    .await
    .expect("proppatch");
    let items = c.propfind("", true).await.expect("propfind");
    assert!(items.iter().any(|i| i.path.is_empty() && i.is_collection));
    let p = items.iter().find(|i| i.path == "p.txt").expect("p.txt");
    assert_eq!(p.len, Some(1));
    let bad = c
        .proppatch(
            "p.txt",
            &[("DAV:", "getcontentlength", "5")],
            Condition::None,
        )
        .await;
    assert!(bad.is_err());
}

/// A "server" that answers every request with a `207` whose body never ends.
async fn endless_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = "HTTP/1.1 207 Multi-Status\r\nContent-Type: text/xml\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", "<".repeat(0x10000));
                while sock.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    format!("http://{addr}/dav/")
}

#[tokio::test]
async fn an_answer_past_the_limit_is_refused_while_it_is_read() {
    let url = endless_server().await;
    let c = Client::builder(url)
        .max_response_bytes(1 << 20)
        .build()
        .expect("client");
    let e = tokio::time::timeout(Duration::from_secs(20), c.manifest(None, None, None))
        .await
        .expect("refused before the end of a body that has none")
        .expect_err("too large");
    assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
    assert!(e.to_string().contains("larger than"), "{e}");
}

//! Long polling with `Prefer: wait=N`: a collblob manifest or a `sync-collection` report that
//! would be empty is held until a change in scope commits (then answered with it) or the wait
//! ends (then answered empty). The store's change signal wakes the held request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use davrepl::{MemStore, ReplLayer};
use davrepl_tests::{Manifest, REPL, SyncAnswer, TestServer, search_body, serve, sync_body};

const SHALLOW: &str = r#"SELECT "DAV:getetag" FROM SCOPE('SHALLOW TRAVERSAL OF "/box/"')"#;

async fn held_manifest(s: &TestServer, blob: &str, wait: u64) -> davrepl_tests::Reply {
    s.send(
        s.req("SEARCH", "/box/")
            .header("Content-Type", "text/xml")
            .header("Prefer", format!("return=minimal, wait={wait}"))
            .body(search_body(REPL, Some(blob), Some(SHALLOW), &[])),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_manifest_is_answered_when_a_change_commits() {
    let s = Arc::new(serve(ReplLayer::new(MemStore::new())).await);
    s.mkcol("/box/").await.expect(201);
    s.put("/box/a", "a").await.expect(201);
    let first = Manifest::parse(&s.manifest("/box/", None, Some(SHALLOW), &[], None).await);
    let blob = first.blob();

    // Nothing changes: held for the whole wait, then answered empty.
    let t = Instant::now();
    let idle = Manifest::parse(&held_manifest(&s, &blob, 1).await);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "held: {:?}",
        t.elapsed()
    );
    assert!(idle.rows.is_empty());

    // A change in scope ends the wait and is in the answer.
    let held = {
        let (s, blob) = (s.clone(), blob.clone());
        tokio::spawn(async move {
            let r = held_manifest(&s, &blob, 30).await;
            (Instant::now(), r)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.put("/box/b", "b").await.expect(201);
    let committed = Instant::now();
    let (answered, reply) = held.await.unwrap();
    let m = Manifest::parse(&reply);
    let changed = m.hrefs("change");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].ends_with("/box/b"), "{changed:?}");
    let latency = answered.saturating_duration_since(committed);
    // Woken by the commit, not by the 30 s deadline (this is not a speed claim: the latency
    // figures are in docs/benchmarks).
    assert!(latency < Duration::from_secs(10), "{latency:?}");

    // A change outside the scope does not end it.
    let t = Instant::now();
    let held = {
        let (s, blob) = (s.clone(), m.blob());
        tokio::spawn(async move { held_manifest(&s, &blob, 1).await })
    };
    s.mkcol("/elsewhere/").await.expect(201);
    let r = Manifest::parse(&held.await.unwrap());
    assert!(r.rows.is_empty());
    assert!(t.elapsed() >= Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_sync_report_is_answered_when_a_change_commits() {
    let s = Arc::new(serve(ReplLayer::new(MemStore::new())).await);
    s.mkcol("/cal/").await.expect(201);
    let first = SyncAnswer::parse(
        &s.sync("/cal/", None, "1", "<D:getetag/>", None).await,
        "/cal/",
    );
    let token = first.token.clone();
    let held = {
        let (s, token) = (s.clone(), token.clone());
        tokio::spawn(async move {
            s.send(
                s.req("REPORT", "/cal/")
                    .header("Depth", "0")
                    .header("Prefer", "wait=30")
                    .body(sync_body(Some(&token), "1", "<D:getetag/>", None)),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.put("/cal/e.ics", "e").await.expect(201);
    let t = Instant::now();
    let answer = SyncAnswer::parse(&held.await.unwrap(), "/cal/");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(
        answer
            .changed
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["/cal/e.ics"]
    );
}

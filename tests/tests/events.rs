//! Live changes over TCP: a Server-Sent Events stream on a collection delivers every change
//! exactly once, in log order, resumes after its last event id, resets when the cursor cannot
//! be served, and shows a user only the paths the authorizer lets them read.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use davrepl::{Limits, MemStore, ReplLayer, ReplStore};
use davrepl_tests::remote::version;
use davrepl_tests::{TestServer, serve, serve_users};

/// One parsed event.
#[derive(Debug, Clone)]
struct Event {
    id: Option<String>,
    kind: String,
    data: String,
}

impl Event {
    /// A string field of the JSON data (flat objects of strings only).
    fn field(&self, name: &str) -> Option<String> {
        let key = format!("\"{name}\":\"");
        let start = self.data.find(&key)? + key.len();
        let rest = &self.data[start..];
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => out.push(chars.next()?),
                c => out.push(c),
            }
        }
        None
    }
}

/// An open stream, read event by event.
struct Stream {
    resp: reqwest::Response,
    buf: String,
}

impl Stream {
    async fn open(
        s: &TestServer,
        path: &str,
        depth: &str,
        cursor: Option<&str>,
        user: Option<&str>,
    ) -> Self {
        let mut rb = s
            .req("GET", path)
            .header("Accept", "text/event-stream")
            .header("Depth", depth);
        if let Some(c) = cursor {
            rb = rb.header("Last-Event-ID", c);
        }
        if let Some(u) = user {
            rb = rb.header("x-test-user", u);
        }
        let resp = rb.send().await.expect("stream");
        assert_eq!(resp.status().as_u16(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` when the stream ended.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut e = Event {
                    id: None,
                    kind: "message".into(),
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        e.id = Some(v.to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        e.kind = v.to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        e.data = v.to_owned();
                        any = true;
                    }
                }
                if any {
                    return Some(e);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.resp.chunk())
                .await
                .expect("an event within 20 s")
                .expect("body");
            self.buf
                .push_str(std::str::from_utf8(&chunk?).expect("utf-8"));
        }
    }

    /// The next event that is not the opening `ready`.
    async fn next_change(&mut self) -> Event {
        loop {
            let e = self.next().await.expect("the stream ended");
            if e.kind != "ready" {
                return e;
            }
        }
    }
}

async fn put(s: &TestServer, path: &str) {
    let r = s.put(path, "x").await;
    assert!(r.status == 201 || r.status == 204, "{path}: {}", r.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_change_of_concurrent_writers_arrives_once_in_order_and_resumes() {
    let s = std::sync::Arc::new(serve(ReplLayer::new(MemStore::new())).await);
    s.mkcol("/live/").await.expect(201);
    let mut stream = Stream::open(&s, "/live/", "1", None, None).await;
    let ready = stream.next().await.unwrap();
    assert_eq!(ready.kind, "ready");
    const N: usize = 1000;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in (w..N).step_by(8) {
                    put(&s, &format!("/live/f{i}")).await;
                }
            })
        })
        .collect();
    // Read 400, then drop the connection mid-way and resume from the last id.
    let mut seen = HashSet::new();
    let mut last_version = 0;
    let mut last_id = None;
    for _ in 0..400 {
        let e = stream.next_change().await;
        assert_eq!(e.kind, "change", "{e:?}");
        let href = e.field("href").unwrap();
        assert!(seen.insert(href.clone()), "{href} twice");
        let v = version(&e.field("resourcetag").unwrap());
        assert!(v > last_version, "log order");
        last_version = v;
        last_id = e.id.clone();
    }
    drop(stream);
    for w in writers {
        w.await.unwrap();
    }
    let mut resumed = Stream::open(&s, "/live/", "1", last_id.as_deref(), None).await;
    while seen.len() < N {
        let e = resumed.next_change().await;
        assert_eq!(e.kind, "change", "{e:?}");
        let href = e.field("href").unwrap();
        assert!(seen.insert(href.clone()), "{href} twice after resuming");
        let v = version(&e.field("resourcetag").unwrap());
        assert!(v > last_version, "log order after resuming");
        last_version = v;
    }
    assert_eq!(seen.len(), N);
    // A deletion arrives as a delete event; depth 1 sees no grandchildren.
    s.mkcol("/live/sub/").await.expect(201);
    put(&s, "/live/sub/deep").await;
    s.send(s.req("DELETE", "/live/f0")).await.expect(204);
    let e = resumed.next_change().await;
    assert_eq!(
        (e.kind.as_str(), e.field("href").unwrap().as_str()),
        ("change", "/live/sub/")
    );
    let e = resumed.next_change().await;
    assert_eq!(
        (e.kind.as_str(), e.field("href").unwrap().as_str()),
        ("delete", "/live/f0")
    );
    assert!(e.field("repl-uid").unwrap().starts_with("rid:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_cursors_get_a_reset() {
    let store = MemStore::new();
    let mut limits = Limits::default();
    limits.event_heartbeat = Duration::from_millis(50);
    let s = serve(ReplLayer::new(store.clone()).limits(limits)).await;
    s.mkcol("/c/").await.expect(201);
    put(&s, "/c/a").await;
    let mut st = Stream::open(&s, "/c/", "1", None, None).await;
    let ready = st.next().await.unwrap();
    let cursor = ready.id.clone().unwrap();
    // Idle: heartbeats keep it open, no events.
    tokio::time::sleep(Duration::from_millis(150)).await;
    put(&s, "/c/b").await;
    assert_eq!(st.next_change().await.field("href").unwrap(), "/c/b");
    drop(st);
    for bad in ["garbage", &cursor[..cursor.len() - 4]] {
        let mut r = Stream::open(&s, "/c/", "1", Some(bad), None).await;
        let e = r.next().await.unwrap();
        assert_eq!(e.kind, "reset", "{bad}");
        assert!(r.next().await.is_none(), "the stream ends after a reset");
    }
    // A cursor for another depth or collection is refused too.
    let mut r = Stream::open(&s, "/c/", "infinity", Some(&cursor), None).await;
    assert_eq!(r.next().await.unwrap().kind, "reset");
    // Below the low-water mark: a delete after the cursor, then its tombstone purged.
    s.send(s.req("DELETE", "/c/a")).await.expect(204);
    store
        .purge(SystemTime::now() + Duration::from_secs(60))
        .await
        .unwrap();
    let mut r = Stream::open(&s, "/c/", "1", Some(&cursor), None).await;
    let e = r.next().await.unwrap();
    assert_eq!(e.kind, "reset", "{e:?}");
    assert!(e.data.contains("purged"), "{e:?}");
    // Depth 0 makes no sense for a stream.
    let r = s
        .send(
            s.req("GET", "/c/")
                .header("Accept", "text/event-stream")
                .header("Depth", "0"),
        )
        .await;
    r.expect(400);
}

/// Bob sees nothing under /alice, and his cursors are not Alice's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_shows_only_what_the_principal_may_read() {
    fn only_own_home(
        who: Option<&davrepl::Principal>,
        _: davrepl::Access,
        p: &davrepl::ResourcePath,
    ) -> bool {
        match p.segments().nth(1) {
            Some(home) if p.segments().next() == Some("homes") => who.is_some_and(|w| w.0 == home),
            _ => true,
        }
    }
    let s = serve_users(ReplLayer::new(MemStore::new()).authorize(only_own_home)).await;
    s.mkcol("/homes/").await.expect(201);
    for u in ["alice", "bob"] {
        s.send(
            s.req("MKCOL", &format!("/homes/{u}/"))
                .header("x-test-user", u),
        )
        .await
        .expect(201);
    }
    let mut bob = Stream::open(&s, "/homes/", "infinity", None, Some("bob")).await;
    let ready = bob.next().await.unwrap();
    for u in ["alice", "bob", "alice"] {
        let r = s
            .send(
                s.req("PUT", &format!("/homes/{u}/{}.txt", version_tag()))
                    .header("x-test-user", u)
                    .body("secret"),
            )
            .await;
        r.expect(201);
    }
    let e = bob.next_change().await;
    assert!(e.field("href").unwrap().starts_with("/homes/bob/"), "{e:?}");
    // Alice cannot resume Bob's stream.
    let mut alice = Stream::open(
        &s,
        "/homes/",
        "infinity",
        ready.id.as_deref(),
        Some("alice"),
    )
    .await;
    assert_eq!(alice.next().await.unwrap().kind, "reset");
}

/// A unique name per call.
fn version_tag() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("n{}", N.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_limited_per_principal() {
    let mut limits = Limits::default();
    limits.max_event_streams_per_principal = 2;
    let s = serve(ReplLayer::new(MemStore::new()).limits(limits)).await;
    s.mkcol("/l/").await.expect(201);
    let a = Stream::open(&s, "/l/", "1", None, None).await;
    let b = Stream::open(&s, "/l/", "1", None, None).await;
    let third = s
        .send(s.req("GET", "/l/").header("Accept", "text/event-stream"))
        .await;
    third.expect(429);
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _again = Stream::open(&s, "/l/", "1", None, None).await;
}

/// Every wake-up lost: the stream and a long poll still deliver every change, only later
/// (the stream after its next heartbeat, the long poll at the end of its wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_notifications_cost_only_latency() {
    let store = davrepl_testkit::faulty::FaultyStore::new(MemStore::new()).dropping_notifications();
    let mut limits = Limits::default();
    limits.event_heartbeat = Duration::from_millis(200);
    let s = std::sync::Arc::new(serve(ReplLayer::new(store).limits(limits)).await);
    s.mkcol("/d/").await.expect(201);
    let mut st = Stream::open(&s, "/d/", "1", None, None).await;
    assert_eq!(st.next().await.unwrap().kind, "ready");
    for i in 0..5 {
        put(&s, &format!("/d/f{i}")).await;
    }
    let mut got = HashSet::new();
    while got.len() < 5 {
        let e = st.next_change().await;
        assert!(got.insert(e.field("href").unwrap()), "{e:?}");
    }
    // A sync-collection long poll: answered with the change when its wait ends.
    let first = davrepl_tests::SyncAnswer::parse(
        &s.sync("/d/", None, "1", "<D:getetag/>", None).await,
        "/d/",
    );
    let held = {
        let s = s.clone();
        tokio::spawn(async move {
            s.send(
                s.req("REPORT", "/d/")
                    .header("Depth", "0")
                    .header("Prefer", "wait=1")
                    .body(davrepl_tests::sync_body(
                        Some(&first.token),
                        "1",
                        "<D:getetag/>",
                        None,
                    )),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    put(&s, "/d/late").await; // its wake-up is lost
    let answer = davrepl_tests::SyncAnswer::parse(&held.await.unwrap(), "/d/");
    assert!(
        answer.changed.contains_key("/d/late"),
        "{:?}",
        answer.changed.keys()
    );
}

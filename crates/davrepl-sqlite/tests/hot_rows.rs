//! The hot-row cache (point reads served from memory) never shows a state older than the last
//! acknowledged write, and a step it serves sees one state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use davrepl_sqlite::SqliteStore;
use davrepl_store::{
    ByteRange, DeadProp, ErrorKind, GetOptions, PatchOptions, PropName, PropPatch, PutOptions,
    ReplStore, TransferOptions,
};
use davrepl_testkit::{body, mkcol, path, put, read_string};
use futures_util::StreamExt;

async fn read_range(s: &SqliteStore, p: &str, first: u64, last: u64) -> String {
    let range = ByteRange {
        start: first,
        end: last,
    };
    let (_, mut stream) = s
        .read(&path(p), GetOptions::range(Some(range)))
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(c) = stream.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn every_write_is_seen_by_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("store.db"))
        .await
        .unwrap();
    mkcol(&s, "/c").await;
    for i in 0..50 {
        let text = format!("version {i:04}");
        let meta = put(&s, "/c/a", &text).await;
        // The first read of each version may fill the cache; the second is served from it.
        for _ in 0..2 {
            assert_eq!(read_string(&s, "/c/a").await, text);
            assert_eq!(s.head(&path("/c/a")).await.unwrap(), meta);
            assert_eq!(read_range(&s, "/c/a", 8, 11).await, format!("{i:04}"));
        }
    }
    s.delete(&path("/c/a"), Default::default()).await.unwrap();
    let gone = s.head(&path("/c/a")).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    put(&s, "/c/a", "back").await;
    assert_eq!(read_string(&s, "/c/a").await, "back");
    s.rename(&path("/c/a"), &path("/c/b"), TransferOptions::default())
        .await
        .unwrap();
    let moved = s.read(&path("/c/a"), Default::default()).await.err();
    assert_eq!(moved.map(|e| e.kind()), Some(ErrorKind::NotFound));
    assert_eq!(read_string(&s, "/c/b").await, "back");
    // A collection's row is cached like an item's; reading it as content still fails.
    for _ in 0..2 {
        let e = s.read(&path("/c"), Default::default()).await.err();
        assert_eq!(e.map(|e| e.kind()), Some(ErrorKind::IsCollection));
    }
    // Content long enough for a file of its own, read through the cached row.
    let long = "x".repeat(200 * 1024);
    s.put(&path("/c/long"), body(long.clone()), PutOptions::default())
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(read_string(&s, "/c/long").await, long);
    }
    put(&s, "/c/long", "short now").await;
    assert_eq!(read_string(&s, "/c/long").await, "short now");
    // Dead properties read by a PROPFIND of one resource are cached with its row.
    for i in 0..3 {
        let value = format!("v{i}");
        let set = PropPatch::Set(DeadProp {
            name: PropName::new("urn:t", "p"),
            value: value.clone(),
        });
        s.patch_props(&path("/c/b"), vec![set], PatchOptions::default())
            .await
            .unwrap();
        for _ in 0..2 {
            let e = s.props(&path("/c/b")).await.unwrap();
            assert_eq!(e.props.len(), 1);
            assert_eq!(e.props[0].value, value);
            assert_eq!(e.meta, s.head(&path("/c/b")).await.unwrap());
        }
    }
}

/// Readers on several threads hammer one item while a writer replaces it: a read never shows
/// a version older than one acknowledged before it began, nor older than one the same reader
/// saw before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_never_go_back_in_time_under_concurrent_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("store.db"))
        .await
        .unwrap();
    put(&s, "/n", "00000").await;
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (s, acked, done) = (s.clone(), acked.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut last = 0u64;
            let mut reads = 0u64;
            while !done.load(Ordering::SeqCst) {
                let floor = acked.load(Ordering::SeqCst);
                let seen: u64 = read_string(&s, "/n").await.parse().unwrap();
                let meta = s.head(&path("/n")).await.unwrap();
                assert!(seen >= floor, "read {seen} after {floor} was acknowledged");
                assert!(seen >= last, "read {seen} after reading {last}");
                last = seen;
                assert!(meta.len == 5);
                reads += 1;
            }
            reads
        }));
    }
    for i in 1..=400u64 {
        put(&s, "/n", &format!("{i:05}")).await;
        acked.store(i, Ordering::SeqCst);
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    done.store(true, Ordering::SeqCst);
    let mut total = 0;
    for r in readers {
        total += r.await.unwrap();
    }
    assert!(total > 0);
    assert_eq!(read_string(&s, "/n").await, "00400");
}

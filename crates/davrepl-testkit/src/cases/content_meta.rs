//! What a store keeps about content besides the bytes: digests computed as the body streams
//! in, a modification time the client sets, and checksums the client expects.

use davrepl_store::{Checksum, Digests, PatchOptions};

use super::*;

fn checksum_of(data: &[u8]) -> Checksum {
    Checksum::Sha1(Digests::of(data).sha1.expect("all three"))
}

/// A PUT computes only the digest its checksum names; [`ReplStore::digests`] computes the
/// others from the content and records them with the item, without a new version or a
/// change; COPY and MOVE keep them, new content starts again; collections have none.
pub async fn digests_follow_content<S: ReplStore>(store: &S) {
    let m = put(store, "/d", "abc").await;
    assert_eq!(m.digests, None, "a PUT without a checksum hashes nothing");
    let mark = store.watermark().await.unwrap();
    let all = Digests::of(b"abc");
    let d = store.digests(&path("/d")).await.unwrap();
    assert_eq!(d.digests, Some(all));
    assert_eq!(
        (d.rid, d.version, d.content_version, d.len),
        (m.rid, m.version, m.content_version, m.len),
        "the same item and content"
    );
    // Recorded, and no change: same version, same watermark, nothing new in the log.
    let head = store.head(&path("/d")).await.unwrap();
    assert_eq!(head.digests, Some(all));
    assert_eq!(head.version, m.version);
    assert_eq!(store.watermark().await.unwrap(), mark);
    assert!(all_changes(store, "/", mark).await.0.is_empty());
    assert_eq!(store.digests(&path("/d")).await.unwrap(), head);

    // A checksummed PUT computes that digest only; the rest come later.
    let big = "x".repeat(300_000);
    let full = Digests::of(big.as_bytes());
    let mut opts = PutOptions::default();
    opts.checksum = Some(Checksum::Sha256(full.sha256.unwrap()));
    let b = store
        .put(&path("/big"), body(big.clone()), opts)
        .await
        .unwrap()
        .meta;
    let sha256_only = Digests {
        sha256: full.sha256,
        ..Digests::default()
    };
    assert_eq!(b.digests, Some(sha256_only));
    assert_eq!(store.head(&path("/big")).await.unwrap().digests, b.digests);
    assert_eq!(
        store.digests(&path("/big")).await.unwrap().digests,
        Some(full)
    );

    let c = store
        .copy(&path("/d"), &path("/copy"), TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(c.meta.digests, Some(all));
    let moved = store
        .rename(&path("/copy"), &path("/moved"), TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(moved.meta.digests, Some(all));
    let r = put(store, "/d", "changed").await;
    assert_eq!(r.digests, None, "new content, none known");
    let changed = store.digests(&path("/d")).await.unwrap();
    assert_eq!(changed.digests, Some(Digests::of(b"changed")));
    put(store, "/empty", "").await;
    assert_eq!(
        store.digests(&path("/empty")).await.unwrap().digests,
        Some(Digests::of(b""))
    );
    assert_eq!(mkcol(store, "/dir").await.digests, None);
    assert_eq!(
        kind_of(store.digests(&path("/dir")).await),
        ErrorKind::IsCollection
    );
    assert_eq!(
        kind_of(store.digests(&path("/nothing")).await),
        ErrorKind::NotFound
    );
    let listed = list_all(store, "/", Depth::One).await;
    let d = listed.iter().find(|e| e.path == path("/d")).unwrap();
    assert_eq!(d.digests, changed.digests);

    // Several at once: one answer per path, in order; each missing item or collection fails
    // on its own; all computed are recorded, still without a change.
    let texts = ["one", "two", "three"];
    let mut puts = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        puts.push(put(store, &format!("/many{i}"), t).await);
    }
    let mark = store.watermark().await.unwrap();
    let asked = [
        path("/many0"),
        path("/nothing"),
        path("/many1"),
        path("/dir"),
        path("/many2"),
        path("/d"),
    ];
    let got = store.digests_many(&asked).await.unwrap();
    assert_eq!(got.len(), asked.len());
    for (i, at) in [0, 2, 4].into_iter().enumerate() {
        let m = got[at].as_ref().unwrap();
        assert_eq!(m.path, asked[at]);
        assert_eq!(m.digests, Some(Digests::of(texts[i].as_bytes())));
        assert_eq!((m.rid, m.version), (puts[i].rid, puts[i].version));
    }
    let failed = |at: usize| got[at].as_ref().err().map(|e| e.kind());
    assert_eq!(failed(1), Some(ErrorKind::NotFound));
    assert_eq!(failed(3), Some(ErrorKind::IsCollection));
    assert_eq!(got[5].as_ref().unwrap().digests, changed.digests);
    assert_eq!(store.watermark().await.unwrap(), mark);
    assert!(all_changes(store, "/", mark).await.0.is_empty());
    for (i, t) in texts.iter().enumerate() {
        let head = store.head(&path(&format!("/many{i}"))).await.unwrap();
        assert_eq!(head.digests, Some(Digests::of(t.as_bytes())), "recorded");
        assert_eq!(head.version, puts[i].version);
    }
    assert!(store.digests_many(&[]).await.unwrap().is_empty());
}

/// A modification time the client gives is recorded as it is, by PUT and by PROPPATCH, in the
/// same write.
pub async fn client_modification_time<S: ReplStore>(store: &S) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let mut opts = PutOptions::default();
    opts.modified = Some(t);
    let m = store
        .put(&path("/old"), body("o"), opts)
        .await
        .unwrap()
        .meta;
    assert_eq!(m.modified, t);
    assert_eq!(store.head(&path("/old")).await.unwrap().modified, t);
    let later = t + Duration::from_secs(86_400);
    let mut patch = PatchOptions::default();
    patch.modified = Some(later);
    let p = store
        .patch_props(&path("/old"), Vec::new(), patch)
        .await
        .unwrap()
        .meta;
    assert_eq!(p.modified, later);
    assert!(p.version > m.version, "a new time is a change");
    let (changes, _) = all_changes(store, "/", m.version).await;
    assert_eq!(changes.len(), 1);
    // Without one, the time of the write.
    let before = SystemTime::now() - Duration::from_secs(5);
    let n = put(store, "/old", "new").await;
    assert!(n.modified > before);
}

/// PUT with a checksum the content does not have is refused and writes nothing.
pub async fn checksum_mismatch_writes_nothing<S: ReplStore>(store: &S) {
    let old = put(store, "/c", "old").await;
    let mark = store.watermark().await.unwrap();
    let mut opts = PutOptions::default();
    opts.checksum = Some(checksum_of(b"something else"));
    let r = store.put(&path("/c"), body("new"), opts).await;
    assert_eq!(kind_of(r), ErrorKind::ChecksumMismatch);
    let mut opts = PutOptions::default();
    opts.checksum = Some(Checksum::Md5(Digests::of(b"other").md5.unwrap()));
    let r = store.put(&path("/fresh"), body("x"), opts).await;
    assert_eq!(kind_of(r), ErrorKind::ChecksumMismatch);
    assert_eq!(store.head(&path("/c")).await.unwrap(), old);
    assert_eq!(read_string(store, "/c").await, "old");
    assert_eq!(
        kind_of(store.head(&path("/fresh")).await),
        ErrorKind::NotFound
    );
    assert_eq!(store.watermark().await.unwrap(), mark);
    // The right one (any of the three algorithms) passes.
    for c in [
        checksum_of(b"new"),
        Checksum::Md5(Digests::of(b"new").md5.unwrap()),
        Checksum::Sha256(Digests::of(b"new").sha256.unwrap()),
    ] {
        let mut opts = PutOptions::default();
        opts.checksum = Some(c);
        store.put(&path("/c"), body("new"), opts).await.unwrap();
    }
    assert_eq!(read_string(store, "/c").await, "new");
}

/// The store counts the bytes it holds; a write that would take it over a quota is refused and
/// writes nothing, one that does not add bytes always passes.
pub async fn quota_refuses_and_writes_nothing<S: ReplStore>(store: &S) {
    let Some(base) = store.usage().await.unwrap() else {
        return; // this store does not count bytes
    };
    let used = || async { store.usage().await.unwrap().unwrap() - base };
    let with_quota = |q: u64| {
        let mut o = PutOptions::default();
        o.quota = Some(base + q);
        o
    };
    let hundred = "h".repeat(100);
    store
        .put(&path("/q1"), body(hundred.clone()), with_quota(150))
        .await
        .unwrap();
    assert_eq!(used().await, 100);
    let mark = store.watermark().await.unwrap();
    let r = store
        .put(&path("/q2"), body(hundred.clone()), with_quota(150))
        .await;
    assert_eq!(kind_of(r), ErrorKind::QuotaExceeded);
    assert_eq!(kind_of(store.head(&path("/q2")).await), ErrorKind::NotFound);
    assert_eq!(store.watermark().await.unwrap(), mark);
    assert_eq!(used().await, 100);
    store
        .put(&path("/q1"), body("r".repeat(120)), with_quota(150))
        .await
        .unwrap();
    assert_eq!(used().await, 120);
    // Over a (lowered) quota, shrinking still works.
    store
        .put(&path("/q1"), body("s".repeat(10)), with_quota(5))
        .await
        .unwrap();
    assert_eq!(used().await, 10);
    let mut copy = TransferOptions::new();
    copy.quota = Some(base + 15);
    let r = store.copy(&path("/q1"), &path("/q3"), copy.clone()).await;
    assert_eq!(kind_of(r), ErrorKind::QuotaExceeded);
    assert_eq!(kind_of(store.head(&path("/q3")).await), ErrorKind::NotFound);
    copy.quota = Some(base + 20);
    store.copy(&path("/q1"), &path("/q3"), copy).await.unwrap();
    assert_eq!(used().await, 20);
    mkcol(store, "/qd").await;
    store
        .rename(&path("/q3"), &path("/qd/q3"), TransferOptions::new())
        .await
        .unwrap();
    assert_eq!(used().await, 20, "a move holds the same bytes");
    store
        .delete(&path("/qd"), Default::default())
        .await
        .unwrap();
    store
        .delete(&path("/q1"), Default::default())
        .await
        .unwrap();
    assert_eq!(used().await, 0);
}

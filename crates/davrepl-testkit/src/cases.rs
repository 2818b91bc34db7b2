//! The conformance cases. Each takes a fresh, empty store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use davrepl_store::{
    ByteRange, ByteStream, ChangeKind, ChangesQuery, Condition, DeadProp, Depth, EntityMatch,
    ErrorKind, GetOptions, IfList, IfResource, IfTerm, ListOptions, Meta, PropName, PropPatch,
    PutOptions, ReplStore, StoreError, TransferOptions,
};

use crate::helpers::*;

fn kind_of<T: std::fmt::Debug>(r: Result<T, StoreError>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind(),
    }
}

/// PUT creates then replaces; repl-uid stays, version and tags move; DELETE removes.
pub async fn crud_item<S: ReplStore>(store: &S) {
    let p = path("/a.txt");
    let made = store
        .put(&p, body("one"), PutOptions::default())
        .await
        .unwrap();
    assert!(made.created);
    assert!(!made.transformed);
    assert_eq!(made.meta.len, 3);
    assert_eq!(read_string(store, "/a.txt").await, "one");
    let head = store.head(&p).await.unwrap();
    assert_eq!(head, made.meta);
    assert_eq!(head.resource_tag().len(), 91);
    assert_eq!(head.repl_uid().len(), 48);
    assert!(head.content_tag().is_none());

    let opts = PutOptions::default().content_type(Some("text/plain".into()));
    let again = store.put(&p, body("second"), opts).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.meta.rid, made.meta.rid);
    assert!(again.meta.version > made.meta.version);
    assert_ne!(again.meta.resource_tag(), made.meta.resource_tag());
    assert_ne!(again.meta.etag(), made.meta.etag());
    assert_eq!(again.meta.content_type.as_deref(), Some("text/plain"));
    assert_eq!(read_string(store, "/a.txt").await, "second");

    let gone = store.delete(&p, Default::default()).await.unwrap();
    assert_eq!(gone.rid, made.meta.rid);
    assert_eq!(kind_of(store.head(&p).await), ErrorKind::NotFound);
    assert_eq!(
        kind_of(store.delete(&p, Default::default()).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(store.read(&p, Default::default()).await.map(|(m, _)| m)),
        ErrorKind::NotFound
    );
}

/// PUT under a missing parent, or under an item, fails with `ParentMissing`.
pub async fn put_needs_parent<S: ReplStore>(store: &S) {
    let r = store
        .put(&path("/no/such.txt"), body("x"), PutOptions::default())
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::ParentMissing);
    put(store, "/file", "x").await;
    let r = store
        .put(&path("/file/child"), body("x"), PutOptions::default())
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::ParentMissing);
    assert_eq!(kind_of(store.head(&path("/no")).await), ErrorKind::NotFound);
}

/// PUT onto a collection fails with `IsCollection` and changes nothing.
pub async fn put_onto_collection_fails<S: ReplStore>(store: &S) {
    let c = mkcol(store, "/c").await;
    let r = store
        .put(&path("/c"), body("x"), PutOptions::default())
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::IsCollection);
    assert_eq!(store.head(&path("/c")).await.unwrap(), c);
    assert_eq!(
        kind_of(
            store
                .read(&path("/c"), Default::default())
                .await
                .map(|(m, _)| m)
        ),
        ErrorKind::IsCollection
    );
}

/// MKCOL: new collections have tags; existing target and missing parent fail.
pub async fn mkcol_rules<S: ReplStore>(store: &S) {
    let c = mkcol(store, "/c").await;
    assert!(c.is_collection());
    assert!(c.content_tag().is_some());
    let again = store
        .create_collection(&path("/c"), Default::default())
        .await;
    assert_eq!(kind_of(again.map(|o| o.meta)), ErrorKind::AlreadyExists);
    put(store, "/f", "x").await;
    let over = store
        .create_collection(&path("/f"), Default::default())
        .await;
    assert_eq!(kind_of(over.map(|o| o.meta)), ErrorKind::AlreadyExists);
    let orphan = store
        .create_collection(&path("/x/y"), Default::default())
        .await;
    assert_eq!(kind_of(orphan.map(|o| o.meta)), ErrorKind::ParentMissing);
    let root = store
        .head(&davrepl_store::ResourcePath::root())
        .await
        .unwrap();
    assert!(root.is_collection());
}

/// A byte range reads exactly those bytes; a range past the end is refused.
pub async fn read_range<S: ReplStore>(store: &S) {
    put(store, "/r", "0123456789").await;
    let (meta, mut s) = store
        .read(
            &path("/r"),
            GetOptions::range(Some(ByteRange { start: 2, end: 5 })),
        )
        .await
        .unwrap();
    assert_eq!(meta.len, 10);
    let mut got = Vec::new();
    while let Some(c) = futures_util::StreamExt::next(&mut s).await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, b"2345");
    let bad = store
        .read(
            &path("/r"),
            GetOptions::range(Some(ByteRange { start: 5, end: 10 })),
        )
        .await;
    assert_eq!(kind_of(bad.map(|(m, _)| m)), ErrorKind::InvalidInput);
}

/// Depth 1 lists direct members only, depth infinity everything, both in path order and in
/// pages that continue exactly where the last stopped.
pub async fn list_depths_and_pages<S: ReplStore>(store: &S) {
    mkcol(store, "/d").await;
    mkcol(store, "/d/sub").await;
    mkcol(store, "/d-x").await;
    for i in 0..25 {
        put(store, &format!("/d/f{i:02}"), "x").await;
    }
    put(store, "/d/sub/deep", "x").await;
    put(store, "/d-x/other", "x").await;

    let one = list_all(store, "/d", Depth::One).await;
    let names: Vec<_> = one.iter().map(|m| m.path.as_str().to_owned()).collect();
    let mut expect: Vec<String> = (0..25).map(|i| format!("/d/f{i:02}")).collect();
    expect.push("/d/sub".into());
    assert_eq!(names, expect);

    let all = list_all(store, "/d", Depth::Infinity).await;
    assert_eq!(all.len(), 27);
    assert!(all.iter().any(|m| m.path.as_str() == "/d/sub/deep"));
    assert!(all.iter().all(|m| m.path.as_str().starts_with("/d/")));
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(all, sorted);

    let page = store
        .list(&path("/d"), ListOptions::new(Depth::One, 10))
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 10);
    assert!(page.next.is_some());
    let with = store
        .list(
            &path("/d/sub"),
            ListOptions::new(Depth::One, 10).with_props(true),
        )
        .await
        .unwrap();
    assert_eq!(with.entries.len(), 1);
    assert!(with.next.is_none());
    let top = list_all(store, "/", Depth::One).await;
    let top: Vec<_> = top.iter().map(|m| m.path.as_str().to_owned()).collect();
    assert_eq!(
        top,
        vec!["/d".to_owned(), "/d-x".to_owned()],
        "the root lists its members, not itself"
    );
    assert_eq!(list_all(store, "/", Depth::Infinity).await.len(), 30);
    let on_item = store
        .list(&path("/d/f00"), ListOptions::new(Depth::One, 10))
        .await;
    assert_eq!(
        kind_of(on_item.map(|l| l.entries.len())),
        ErrorKind::NotCollection
    );
}

/// Deleting a collection removes every descendant and leaves one tombstone for each.
pub async fn delete_tree_leaves_tombstones<S: ReplStore>(store: &S) {
    mkcol(store, "/t").await;
    mkcol(store, "/t/a").await;
    let f = put(store, "/t/a/f", "x").await;
    let g = put(store, "/t/g", "x").await;
    let (_, mark) = all_changes(store, "/", 0).await;
    let gone = store.delete(&path("/t"), Default::default()).await.unwrap();
    assert_eq!(gone.path, path("/t"));
    for p in ["/t", "/t/a", "/t/a/f", "/t/g"] {
        assert_eq!(
            kind_of(store.head(&path(p)).await),
            ErrorKind::NotFound,
            "{p}"
        );
    }
    let (rows, _) = all_changes(store, "/", mark).await;
    let removed: HashMap<_, _> = rows
        .iter()
        .filter_map(|c| match &c.kind {
            ChangeKind::Removed { rid, path, .. } => Some((*rid, path.as_str().to_owned())),
            ChangeKind::Upsert(_) => None,
        })
        .collect();
    assert_eq!(removed.len(), 4);
    assert_eq!(removed.get(&f.rid).map(String::as_str), Some("/t/a/f"));
    assert_eq!(removed.get(&g.rid).map(String::as_str), Some("/t/g"));
    assert!(
        rows.iter()
            .all(|c| matches!(c.kind, ChangeKind::Removed { .. }))
    );
}

/// The root can be neither deleted, moved, replaced nor re-created, and the attempts leave the
/// tree and the log as they were.
pub async fn root_is_immutable<S: ReplStore>(store: &S) {
    let root = davrepl_store::ResourcePath::root();
    mkcol(store, "/x").await;
    put(store, "/x/f", "kept").await;
    let (rows_before, mark) = all_changes(store, "/", 0).await;
    assert_eq!(
        kind_of(store.delete(&root, Default::default()).await),
        ErrorKind::RootImmutable
    );
    let r = store
        .rename(&root, &path("/x/y"), TransferOptions::new())
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::RootImmutable);
    let r = store.put(&root, body("flat"), PutOptions::default()).await;
    assert!(matches!(
        kind_of(r.map(|o| o.meta)),
        ErrorKind::IsCollection | ErrorKind::RootImmutable
    ));
    let r = store.create_collection(&root, Default::default()).await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::AlreadyExists);
    let r = store.copy(&path("/x"), &root, TransferOptions::new()).await;
    assert!(r.is_err(), "copying onto the root replaced it: {r:?}");
    assert!(store.head(&root).await.unwrap().is_collection());
    assert_eq!(read_string(store, "/x/f").await, "kept");
    assert_eq!(all_changes(store, "/", 0).await, (rows_before, mark));
}

/// MOVE keeps every repl-uid, changes paths and tags, and logs tombstone-before-upsert.
pub async fn move_keeps_repl_uid<S: ReplStore>(store: &S) {
    mkcol(store, "/src").await;
    mkcol(store, "/dst").await;
    let col = mkcol(store, "/src/c").await;
    let item = put(store, "/src/c/i", "data").await;
    let (_, mark) = all_changes(store, "/", 0).await;
    let out = store
        .rename(&path("/src/c"), &path("/dst/c2"), TransferOptions::new())
        .await
        .unwrap();
    assert!(out.created);
    assert_eq!(out.meta.rid, col.rid);
    let moved = store.head(&path("/dst/c2/i")).await.unwrap();
    assert_eq!(moved.rid, item.rid);
    assert_ne!(moved.resource_tag(), item.resource_tag());
    assert_eq!(read_string(store, "/dst/c2/i").await, "data");
    assert_eq!(
        kind_of(store.head(&path("/src/c")).await),
        ErrorKind::NotFound
    );
    let (rows, _) = all_changes(store, "/", mark).await;
    for rid in [col.rid, item.rid] {
        let pos = |removed: bool| {
            rows.iter()
                .position(|c| {
                    c.rid() == rid && matches!(c.kind, ChangeKind::Removed { .. }) == removed
                })
                .unwrap_or_else(|| panic!("no row for {rid} removed={removed}"))
        };
        assert!(
            pos(true) < pos(false),
            "tombstone must precede the upsert (I10)"
        );
    }
}

/// `Overwrite: F` refuses an existing destination; `T` replaces it atomically.
pub async fn move_and_copy_overwrite<S: ReplStore>(store: &S) {
    put(store, "/a", "A").await;
    let b = put(store, "/b", "B").await;
    let no = TransferOptions::new().overwrite(false);
    assert_eq!(
        kind_of(
            store
                .rename(&path("/a"), &path("/b"), no.clone())
                .await
                .map(|o| o.meta)
        ),
        ErrorKind::DestinationExists
    );
    assert_eq!(
        kind_of(
            store
                .copy(&path("/a"), &path("/b"), no)
                .await
                .map(|o| o.meta)
        ),
        ErrorKind::DestinationExists
    );
    assert_eq!(read_string(store, "/b").await, "B");
    let out = store
        .copy(&path("/a"), &path("/b"), TransferOptions::new())
        .await
        .unwrap();
    assert!(!out.created);
    assert_ne!(out.meta.rid, b.rid);
    assert_eq!(read_string(store, "/b").await, "A");
    mkcol(store, "/c").await;
    put(store, "/c/inner", "i").await;
    let out = store
        .rename(&path("/a"), &path("/c"), TransferOptions::new())
        .await
        .unwrap();
    assert!(!out.created);
    assert!(!out.meta.is_collection());
    assert_eq!(
        kind_of(store.head(&path("/c/inner")).await),
        ErrorKind::NotFound
    );
    let missing = store
        .copy(&path("/a"), &path("/zz"), TransferOptions::new())
        .await;
    assert_eq!(kind_of(missing.map(|o| o.meta)), ErrorKind::NotFound);
    let orphan = store
        .copy(&path("/c"), &path("/no/c"), TransferOptions::new())
        .await;
    assert_eq!(kind_of(orphan.map(|o| o.meta)), ErrorKind::ParentMissing);
}

/// COPY makes new resources with new repl-uids, the source untouched.
pub async fn copy_makes_new_repl_uid<S: ReplStore>(store: &S) {
    mkcol(store, "/s").await;
    let i = put(store, "/s/i", "data").await;
    let props = vec![PropPatch::Set(DeadProp {
        name: PropName::new("urn:x", "p"),
        value: "v".into(),
    })];
    store
        .patch_props(&path("/s/i"), props, Default::default())
        .await
        .unwrap();
    let out = store
        .copy(&path("/s"), &path("/t"), TransferOptions::new())
        .await
        .unwrap();
    assert!(out.created);
    let copy = store.props(&path("/t/i")).await.unwrap();
    assert_ne!(copy.meta.rid, i.rid);
    assert_eq!(copy.props.len(), 1);
    assert_eq!(read_string(store, "/t/i").await, "data");
    assert_eq!(store.head(&path("/s/i")).await.unwrap().rid, i.rid);
}

/// COPY Depth 0 of a collection copies the collection without members.
///
/// A store without [`Capabilities::shallow_copy`](davrepl_store::Capabilities) must refuse it
/// with [`ErrorKind::Unsupported`] and write nothing.
pub async fn copy_depth_zero<S: ReplStore>(store: &S) {
    mkcol(store, "/s").await;
    put(store, "/s/i", "x").await;
    let r = store
        .copy(
            &path("/s"),
            &path("/t"),
            TransferOptions::new().depth(Depth::Zero),
        )
        .await;
    if !store.capabilities().shallow_copy {
        assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::Unsupported);
        assert_eq!(kind_of(store.head(&path("/t")).await), ErrorKind::NotFound);
        return;
    }
    r.unwrap();
    assert!(store.head(&path("/t")).await.unwrap().is_collection());
    assert!(list_all(store, "/t", Depth::Infinity).await.is_empty());
}

/// MOVE or COPY onto itself or into its own subtree fails and changes nothing.
pub async fn transfer_onto_itself_fails<S: ReplStore>(store: &S) {
    let c = mkcol(store, "/c").await;
    let same = store
        .rename(&path("/c"), &path("/c"), TransferOptions::new())
        .await;
    assert_eq!(kind_of(same.map(|o| o.meta)), ErrorKind::SameResource);
    let inside = store
        .copy(&path("/c"), &path("/c/d"), TransferOptions::new())
        .await;
    assert_eq!(
        kind_of(inside.map(|o| o.meta)),
        ErrorKind::DestinationInsideSource
    );
    let inside = store
        .rename(&path("/c"), &path("/c/d"), TransferOptions::new())
        .await;
    assert_eq!(
        kind_of(inside.map(|o| o.meta)),
        ErrorKind::DestinationInsideSource
    );
    assert_eq!(store.head(&path("/c")).await.unwrap(), c);
}

/// Delete + re-create at the same path gives a different repl-uid and resourcetag.
pub async fn recreate_gets_new_repl_uid<S: ReplStore>(store: &S) {
    let a = put(store, "/x", "same").await;
    store.delete(&path("/x"), Default::default()).await.unwrap();
    let b = put(store, "/x", "same").await;
    assert_ne!(a.rid, b.rid);
    assert_ne!(a.resource_tag(), b.resource_tag());
    let c1 = mkcol(store, "/col").await;
    store
        .delete(&path("/col"), Default::default())
        .await
        .unwrap();
    let c2 = mkcol(store, "/col").await;
    assert_ne!(c1.rid, c2.rid);
    assert_ne!(c1.content_tag(), c2.content_tag());
}

/// Every kind of mutation raises the version and appears in the change log.
pub async fn every_mutation_bumps_version_and_logs<S: ReplStore>(store: &S) {
    let mut last = 0;
    let mut step = |what: &str, version: u64, rows: &[davrepl_store::Change]| {
        assert!(version > last, "{what}: version {version} not above {last}");
        assert!(
            rows.iter().any(|c| c.seq == version),
            "{what}: not in the change log"
        );
        last = version;
    };
    let m = mkcol(store, "/c").await;
    step("mkcol", m.version, &all_changes(store, "/", 0).await.0);
    let m = put(store, "/c/i", "1").await;
    step("put new", m.version, &all_changes(store, "/", 0).await.0);
    let m = put(store, "/c/i", "2").await;
    step("put again", m.version, &all_changes(store, "/", 0).await.0);
    let patch = vec![PropPatch::Set(DeadProp {
        name: PropName::new("urn:x", "p"),
        value: "v".into(),
    })];
    let m = store
        .patch_props(&path("/c/i"), patch, Default::default())
        .await
        .unwrap()
        .meta;
    step("proppatch", m.version, &all_changes(store, "/", 0).await.0);
    let m = store
        .rename(&path("/c/i"), &path("/c/j"), TransferOptions::new())
        .await
        .unwrap()
        .meta;
    step("move", m.version, &all_changes(store, "/", 0).await.0);
    let m = store
        .copy(&path("/c/j"), &path("/c/k"), TransferOptions::new())
        .await
        .unwrap()
        .meta;
    step("copy", m.version, &all_changes(store, "/", 0).await.0);
    store
        .delete(&path("/c/k"), Default::default())
        .await
        .unwrap();
    let (rows, mark) = all_changes(store, "/", 0).await;
    step("delete", mark, &rows);
    assert_eq!(
        store.watermark().await.unwrap(),
        mark,
        "watermark is the last sequence number"
    );
}

/// A collection's contenttag changes iff its direct membership or a direct member changed.
pub async fn content_tag_follows_membership<S: ReplStore>(store: &S) {
    mkcol(store, "/c").await;
    mkcol(store, "/c/sub").await;
    mkcol(store, "/other").await;
    let ct = |m: davrepl_store::Meta| m.content_tag().expect("collection has a contenttag");
    let before = ct(store.head(&path("/c")).await.unwrap());
    let rt_before = store.head(&path("/c")).await.unwrap().resource_tag();
    put(store, "/other/x", "x").await;
    put(store, "/c/sub/deep", "x").await;
    assert_eq!(
        ct(store.head(&path("/c")).await.unwrap()),
        before,
        "unrelated change"
    );
    let mut seen = vec![before];
    put(store, "/c/i", "1").await;
    seen.push(ct(store.head(&path("/c")).await.unwrap()));
    put(store, "/c/i", "2").await;
    seen.push(ct(store.head(&path("/c")).await.unwrap()));
    store
        .rename(&path("/c/i"), &path("/other/i"), TransferOptions::new())
        .await
        .unwrap();
    seen.push(ct(store.head(&path("/c")).await.unwrap()));
    store
        .rename(&path("/other/x"), &path("/c/x"), TransferOptions::new())
        .await
        .unwrap();
    seen.push(ct(store.head(&path("/c")).await.unwrap()));
    store
        .delete(&path("/c/x"), Default::default())
        .await
        .unwrap();
    seen.push(ct(store.head(&path("/c")).await.unwrap()));
    let mut uniq = seen.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(
        uniq.len(),
        seen.len(),
        "every membership change gives a new contenttag: {seen:?}"
    );
    assert_eq!(
        store.head(&path("/c")).await.unwrap().resource_tag(),
        rt_before
    );
}

/// Dead properties: set, replace, remove, all-or-nothing, returned by `props`.
///
/// A store without [`Capabilities::dead_properties`](davrepl_store::Capabilities) must refuse
/// every patch with [`ErrorKind::Unsupported`] and report no properties.
pub async fn dead_properties<S: ReplStore>(store: &S) {
    let before = put(store, "/p", "x").await;
    let a = PropName::new("urn:a", "one");
    let b = PropName::new("", "nons");
    let set = |n: &PropName, v: &str| {
        PropPatch::Set(DeadProp {
            name: n.clone(),
            value: v.into(),
        })
    };
    if !store.capabilities().dead_properties {
        let r = store
            .patch_props(&path("/p"), vec![set(&a, "1")], Default::default())
            .await;
        assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::Unsupported);
        let e = store.props(&path("/p")).await.unwrap();
        assert!(e.props.is_empty(), "{:?}", e.props);
        assert_eq!(e.meta.version, before.version);
        return;
    }
    store
        .patch_props(
            &path("/p"),
            vec![set(&a, "1"), set(&b, "<x xmlns=\"urn:q\">t</x>")],
            (Condition::none()).clone().into(),
        )
        .await
        .unwrap();
    let e = store.props(&path("/p")).await.unwrap();
    let got: BTreeMap<_, _> = e
        .props
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect();
    assert_eq!(got.get(&a).map(String::as_str), Some("1"));
    assert_eq!(
        got.get(&b).map(String::as_str),
        Some("<x xmlns=\"urn:q\">t</x>")
    );
    store
        .patch_props(
            &path("/p"),
            vec![set(&a, "2"), PropPatch::Remove(b.clone()), set(&a, "3")],
            (Condition::none()).clone().into(),
        )
        .await
        .unwrap();
    let e = store.props(&path("/p")).await.unwrap();
    assert_eq!(e.props.len(), 1);
    assert_eq!(e.props[0].value, "3");
    let bad = store
        .patch_props(&path("/nope"), vec![set(&a, "1")], Default::default())
        .await;
    assert_eq!(kind_of(bad.map(|o| o.meta)), ErrorKind::NotFound);
}

/// Purging tombstones raises the low-water mark reported with every change page.
pub async fn low_water_mark<S: ReplStore>(store: &S) {
    put(store, "/a", "x").await;
    put(store, "/b", "x").await;
    store.delete(&path("/a"), Default::default()).await.unwrap();
    let (rows, _) = all_changes(store, "/", 0).await;
    let tomb_seq = rows
        .iter()
        .find(|c| matches!(c.kind, ChangeKind::Removed { .. }))
        .unwrap()
        .seq;
    let first = store
        .changes(ChangesQuery::new(path("/"), Depth::Infinity, 0, 100))
        .await
        .unwrap();
    assert!(first.low_water < tomb_seq);
    let report = store
        .purge(SystemTime::now() + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(report.removed, 1);
    assert!(report.low_water >= tomb_seq);
    let page = store
        .changes(ChangesQuery::new(path("/"), Depth::Infinity, 0, 100))
        .await
        .unwrap();
    assert_eq!(page.low_water, report.low_water);
    assert!(
        page.changes
            .iter()
            .all(|c| matches!(c.kind, ChangeKind::Upsert(_)))
    );
    let again = store.purge(SystemTime::UNIX_EPOCH).await.unwrap();
    assert_eq!(again.removed, 0);
    assert_eq!(again.low_water, report.low_water);
}

/// `If` lists: resourcetag, repl-uid, contenttag, `Not`, OR of lists, tagged lists.
pub async fn conditions_if_header<S: ReplStore>(store: &S) {
    let c = mkcol(store, "/c").await;
    let m = put(store, "/c/i", "1").await;
    let rt = m.resource_tag();
    let ok = |c: Condition| PutOptions::with_condition(c);
    let m2 = store
        .put(&path("/c/i"), body("2"), ok(if_token(&rt)))
        .await
        .unwrap()
        .meta;
    let stale = store.put(&path("/c/i"), body("3"), ok(if_token(&rt))).await;
    assert_eq!(
        kind_of(stale.map(|o| o.meta)),
        ErrorKind::PreconditionFailed
    );
    let by_rid = store
        .put(&path("/c/i"), body("3"), ok(if_token(&m.repl_uid())))
        .await
        .unwrap();
    assert_eq!(by_rid.meta.rid, m.rid);
    let either = if_lists(vec![
        vec![(false, IfTerm::Token(m2.resource_tag()))],
        vec![(false, IfTerm::Token(m.repl_uid()))],
    ]);
    store
        .put(&path("/c/i"), body("4"), ok(either))
        .await
        .unwrap();
    let not_old = if_lists(vec![vec![(true, IfTerm::Token(rt.clone()))]]);
    store
        .put(&path("/c/i"), body("5"), ok(not_old))
        .await
        .unwrap();
    let both = if_lists(vec![vec![
        (false, IfTerm::Token(m.repl_uid())),
        (false, IfTerm::Token(rt.clone())),
    ]]);
    let r = store.put(&path("/c/i"), body("6"), ok(both)).await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::PreconditionFailed);

    // A contenttag of the parent, in a tagged list, guards creating a member.
    let ct_now = store
        .head(&path("/c"))
        .await
        .unwrap()
        .content_tag()
        .unwrap();
    let mut tagged = Condition::none();
    tagged.if_lists = vec![IfList {
        resource: IfResource::Path(path("/c")),
        conditions: vec![davrepl_store::IfCondition {
            negated: false,
            term: IfTerm::Token(ct_now),
        }],
    }];
    store
        .create_collection(&path("/c/new"), (tagged).clone().into())
        .await
        .unwrap();
    let r = store
        .create_collection(&path("/c/new2"), (tagged).clone().into())
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::PreconditionFailed);
    // Untagged tokens on a missing target are false.
    let r = store
        .create_collection(
            &path("/c/new3"),
            (if_token(&c.resource_tag())).clone().into(),
        )
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::PreconditionFailed);
    // DELETE of a collection guarded by its contenttag.
    let stale_ct = c.content_tag().unwrap();
    let r = store
        .delete(&path("/c"), (if_token(&stale_ct)).clone().into())
        .await;
    assert_eq!(kind_of(r), ErrorKind::PreconditionFailed);
    let cur = store
        .head(&path("/c"))
        .await
        .unwrap()
        .content_tag()
        .unwrap();
    store
        .delete(&path("/c"), (if_token(&cur)).clone().into())
        .await
        .unwrap();
}

/// `If-Match` and `If-None-Match` (create-only and update-only writes).
pub async fn conditions_entity_tags<S: ReplStore>(store: &S) {
    let p = path("/e");
    store
        .put(
            &p,
            body("1"),
            PutOptions::with_condition(Condition::create_only()),
        )
        .await
        .unwrap();
    let r = store
        .put(
            &p,
            body("2"),
            PutOptions::with_condition(Condition::create_only()),
        )
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::PreconditionFailed);
    let m = store.head(&p).await.unwrap();
    let mut im = Condition::none();
    im.if_match = Some(EntityMatch::Tags(vec![m.etag()]));
    store
        .put(&p, body("3"), PutOptions::with_condition(im.clone()))
        .await
        .unwrap();
    let r = store
        .put(&p, body("4"), PutOptions::with_condition(im))
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::PreconditionFailed);
    let mut any = Condition::none();
    any.if_match = Some(EntityMatch::Any);
    let r = store
        .put(
            &path("/missing"),
            body("x"),
            PutOptions::with_condition(any),
        )
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::PreconditionFailed);
    assert_eq!(
        kind_of(store.head(&path("/missing")).await),
        ErrorKind::NotFound
    );
}

/// A false condition leaves resource, tags and change log exactly as they were.
pub async fn failed_condition_has_no_side_effect<S: ReplStore>(store: &S) {
    mkcol(store, "/c").await;
    put(store, "/c/i", "1").await;
    let (rows_before, mark_before) = all_changes(store, "/", 0).await;
    let bad = if_token("rt:nope");
    let opts = || TransferOptions::new().condition(bad.clone());
    let refused = |what: &str, r: Result<Meta, StoreError>| match r {
        Err(e) if e.kind() == ErrorKind::PreconditionFailed => {}
        other => panic!("{what} with a false condition: {other:?}"),
    };
    let r = store
        .put(
            &path("/c/i"),
            body("2"),
            PutOptions::with_condition(bad.clone()),
        )
        .await;
    refused("PUT", r.map(|o| o.meta));
    refused(
        "DELETE",
        store.delete(&path("/c"), (bad).clone().into()).await,
    );
    let r = store.rename(&path("/c/i"), &path("/j"), opts()).await;
    refused("MOVE", r.map(|o| o.meta));
    let r = store.copy(&path("/c"), &path("/d"), opts()).await;
    refused("COPY", r.map(|o| o.meta));
    let r = store
        .patch_props(
            &path("/c/i"),
            vec![PropPatch::Remove(PropName::new("a", "b"))],
            (bad).clone().into(),
        )
        .await;
    refused("PROPPATCH", r.map(|o| o.meta));
    let r = store
        .create_collection(&path("/c/n"), (bad).clone().into())
        .await;
    refused("MKCOL", r.map(|o| o.meta));
    let (rows_after, mark_after) = all_changes(store, "/", 0).await;
    assert_eq!(rows_before, rows_after);
    assert_eq!(mark_before, mark_after);
    assert_eq!(read_string(store, "/c/i").await, "1");
}

/// Shallow, deep and scope-inclusive change queries, paged by watermark.
pub async fn changes_scope_and_paging<S: ReplStore>(store: &S) {
    mkcol(store, "/s").await;
    mkcol(store, "/s/sub").await;
    for i in 0..10 {
        put(store, &format!("/s/f{i}"), "x").await;
    }
    put(store, "/s/sub/deep", "x").await;
    put(store, "/elsewhere", "x").await;
    let q = |depth, since, limit| ChangesQuery::new(path("/s"), depth, since, limit);
    let shallow = store.changes(q(Depth::One, 0, 100)).await.unwrap();
    assert_eq!(shallow.changes.len(), 11);
    assert!(!shallow.more);
    let deep = store.changes(q(Depth::Infinity, 0, 100)).await.unwrap();
    assert_eq!(deep.changes.len(), 12);
    let mut with_root = q(Depth::One, 0, 100);
    with_root.include_scope = true;
    assert_eq!(store.changes(with_root).await.unwrap().changes.len(), 12);
    let zero = store.changes(q(Depth::Zero, 0, 100)).await.unwrap();
    assert_eq!(zero.changes.len(), 1);

    let mut since = 0;
    let mut seen = Vec::new();
    loop {
        let page = store.changes(q(Depth::Infinity, since, 5)).await.unwrap();
        assert!(page.changes.len() <= 5);
        seen.extend(page.changes.iter().map(|c| c.seq));
        since = page.watermark;
        if !page.more {
            break;
        }
    }
    assert_eq!(seen, deep.changes.iter().map(|c| c.seq).collect::<Vec<_>>());
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let none = store.changes(q(Depth::Infinity, since, 5)).await.unwrap();
    assert!(none.changes.is_empty());
    assert_eq!(none.watermark, since);
    put(store, "/s/f3", "changed").await;
    let one = store.changes(q(Depth::One, since, 5)).await.unwrap();
    assert_eq!(one.changes.len(), 1);
    assert_eq!(one.changes[0].path(), &path("/s/f3"));
    let mut first_sync = q(Depth::Infinity, 0, 100);
    first_sync.include_removed = false;
    store
        .delete(&path("/s/f4"), Default::default())
        .await
        .unwrap();
    let fs = store.changes(first_sync).await.unwrap();
    assert!(
        fs.changes
            .iter()
            .all(|c| matches!(c.kind, ChangeKind::Upsert(_)))
    );
}

/// A resource changed many times is reported once, at its latest state.
pub async fn superseded_changes_reported_once<S: ReplStore>(store: &S) {
    for i in 0..20 {
        put(store, "/hot", &i.to_string()).await;
    }
    let (rows, _) = all_changes(store, "/", 0).await;
    let hot: Vec<_> = rows.iter().filter(|c| c.path() == &path("/hot")).collect();
    assert_eq!(hot.len(), 1);
    let cur = store.head(&path("/hot")).await.unwrap();
    assert_eq!(hot[0].seq, cur.version);
}

fn failing_body() -> ByteStream {
    Box::pin(futures_util::stream::iter([
        Ok(Bytes::from_static(b"partial")),
        Err(StoreError::new(ErrorKind::BodyAborted, "client went away")),
    ]))
}

/// A body that fails half-way writes nothing, neither content nor log.
pub async fn aborted_body_writes_nothing<S: ReplStore>(store: &S) {
    put(store, "/keep", "old").await;
    let (_, mark) = all_changes(store, "/", 0).await;
    let r = store
        .put(&path("/keep"), failing_body(), PutOptions::default())
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::BodyAborted);
    let r = store
        .put(&path("/new"), failing_body(), PutOptions::default())
        .await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::BodyAborted);
    assert_eq!(read_string(store, "/keep").await, "old");
    assert_eq!(
        kind_of(store.head(&path("/new")).await),
        ErrorKind::NotFound
    );
    assert_eq!(all_changes(store, "/", mark).await.0, vec![]);
}

/// Content over `max_len` is refused whole.
pub async fn too_large_writes_nothing<S: ReplStore>(store: &S) {
    let mut opts = PutOptions::default();
    opts.max_len = Some(4);
    let r = store.put(&path("/big"), body("12345"), opts.clone()).await;
    assert_eq!(kind_of(r.map(|o| o.meta)), ErrorKind::TooLarge);
    assert_eq!(
        kind_of(store.head(&path("/big")).await),
        ErrorKind::NotFound
    );
    store.put(&path("/big"), body("1234"), opts).await.unwrap();
}

/// The collblob secret is the same on every call.
pub async fn secret_is_stable<S: ReplStore>(store: &S) {
    let a = store.secret().await.unwrap();
    let b = store.secret().await.unwrap();
    assert_eq!(a, b);
    assert_ne!(a, [0u8; 32]);
}

const RACERS: usize = 16;

/// Spawned tasks a race runs on; each drives `RACERS / GROUPS` racers concurrently.
const GROUPS: usize = 4;

/// Runs `RACERS` copies of `task` so that they really overlap, both ways a store can be
/// raced: [`GROUPS`] spawned tasks run in parallel on the runtime's workers (released together
/// by a barrier), and within each task its racers are interleaved at every `.await`. A store
/// that checks and then writes without holding a lock loses to the first kind when it blocks
/// in between and to the second when it yields in between. Results come back in racer order.
async fn race<S, F, Fut, T>(store: &S, task: F) -> Vec<T>
where
    S: ReplStore + Clone,
    F: Fn(S, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(GROUPS));
    let per_group = RACERS / GROUPS;
    let handles: Vec<_> = (0..GROUPS)
        .map(|g| {
            let racers: Vec<Fut> = (0..per_group)
                .map(|k| task(store.clone(), g * per_group + k))
                .collect();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                futures_util::future::join_all(racers).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(RACERS);
    for h in handles {
        out.extend(h.await.expect("racer task panicked"));
    }
    out
}

/// N writers conditioned on the same resourcetag, running in parallel: exactly one wins, the
/// rest get 412; the content is the winner's and the resource changed exactly once.
pub async fn cas_race_single_winner<S: ReplStore + Clone>(store: &S) {
    let m = put(store, "/race", "start").await;
    let rt = m.resource_tag();
    let (_, mark) = all_changes(store, "/", 0).await;
    let results = race(store, |store, i| {
        let cond = if_token(&rt);
        async move {
            store
                .put(
                    &path("/race"),
                    body(format!("writer {i}")),
                    PutOptions::with_condition(cond),
                )
                .await
        }
    })
    .await;
    let winners: Vec<usize> = (0..RACERS).filter(|&i| results[i].is_ok()).collect();
    let lost = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.kind() == ErrorKind::PreconditionFailed))
        .count();
    assert_eq!(
        (winners.len(), lost),
        (1, RACERS - 1),
        "winners {winners:?}: {results:?}"
    );
    let won = results[winners[0]].as_ref().expect("the winner");
    assert_eq!(
        read_string(store, "/race").await,
        format!("writer {}", winners[0])
    );
    let now = store.head(&path("/race")).await.unwrap();
    assert_eq!(
        now.version, won.meta.version,
        "a loser changed the resource"
    );
    assert_eq!(now.rid, m.rid);
    let (rows, _) = all_changes(store, "/", mark).await;
    let seqs: Vec<_> = rows.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        vec![won.meta.version],
        "exactly one change after the race"
    );
}

/// N tasks in parallel each add one to a counter with read-modify-write guarded by
/// `If-Match`, retrying on 412: the final count is N (no update is lost), some attempts were
/// really refused and retried, and the counter changed exactly N times.
pub async fn cas_race_no_lost_update<S: ReplStore + Clone>(store: &S) {
    let first = put(store, "/counter", "0").await;
    let (_, mark) = all_changes(store, "/", 0).await;
    let attempts = race(store, |store, _| async move {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (meta, mut s) = store
                .read(&path("/counter"), Default::default())
                .await
                .unwrap();
            let mut buf = Vec::new();
            while let Some(c) = futures_util::StreamExt::next(&mut s).await {
                buf.extend_from_slice(&c.unwrap());
            }
            let n: u64 = String::from_utf8(buf).unwrap().parse().unwrap();
            // Give the other racers a chance to read the same value.
            tokio::task::yield_now().await;
            let mut cond = Condition::none();
            cond.if_match = Some(EntityMatch::Tags(vec![meta.etag()]));
            match store
                .put(
                    &path("/counter"),
                    body((n + 1).to_string()),
                    PutOptions::with_condition(cond),
                )
                .await
            {
                Ok(_) => return attempts,
                Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    })
    .await;
    assert_eq!(read_string(store, "/counter").await, RACERS.to_string());
    let tries: u32 = attempts.iter().sum();
    assert!(
        tries > RACERS as u32,
        "no attempt was ever refused ({tries} attempts): the racers did not overlap"
    );
    let now = store.head(&path("/counter")).await.unwrap();
    assert_eq!(now.rid, first.rid);
    let (rows, _) = all_changes(store, "/", mark).await;
    assert_eq!(rows.len(), 1, "one (superseding) row for the counter");
    assert_eq!(rows[0].seq, now.version);
    assert!(
        now.version >= first.version + RACERS as u64,
        "{RACERS} successful writes need {RACERS} sequence numbers: {} -> {}",
        first.version,
        now.version
    );
}

/// Writers and a reader run together: the reader never sees a sequence number below one it has
/// already seen, and its accumulated view equals the final state.
pub async fn gap_free_feed<S: ReplStore + Clone>(store: &S) {
    gap_free_feed_across(store, std::slice::from_ref(store), 6).await;
}

/// [`gap_free_feed`] for stores with several handles on one database (nodes): `per_handle`
/// writers on each of `writers` while a reader follows the feed through `reader`. The feed
/// must never show a sequence number below one already seen, and must end equal to a listing.
pub async fn gap_free_feed_across<S: ReplStore + Clone>(
    reader: &S,
    writers: &[S],
    per_handle: usize,
) {
    let store = reader;
    mkcol(store, "/feed").await;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut view: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            let mut seen: HashSet<u64> = HashSet::new();
            let mut since = 0;
            loop {
                let done = stop.load(Ordering::SeqCst);
                let page = store
                    .changes(ChangesQuery::new(path("/feed"), Depth::Infinity, since, 50))
                    .await
                    .unwrap();
                let mut last = since;
                for c in page.changes {
                    assert!(
                        c.seq > last,
                        "row {} is not above {last} (asked since {since})",
                        c.seq
                    );
                    assert!(c.seq <= page.watermark, "row above the page's watermark");
                    last = c.seq;
                    seen.insert(c.seq);
                    match c.kind {
                        ChangeKind::Upsert(m) => {
                            view.insert(m.path.as_str().to_owned(), (m.version, m.rid.counter()));
                        }
                        ChangeKind::Removed { path, rid, .. } => {
                            if view
                                .get(path.as_str())
                                .is_some_and(|v| v.1 == rid.counter())
                            {
                                view.remove(path.as_str());
                            }
                        }
                    }
                }
                assert!(page.watermark >= since, "the watermark went backwards");
                since = page.watermark;
                if done && !page.more {
                    return (view, seen);
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let writers: Vec<_> = (0..writers.len() * per_handle)
        .map(|w| {
            let store = writers[w % writers.len()].clone();
            tokio::spawn(async move {
                // Names are mostly written once, so a change the reader skipped is usually
                // still the final state of its resource and shows in the comparison below.
                for i in 0..60 {
                    let name = |k: usize| format!("/feed/w{w}-{k}");
                    match i % 5 {
                        0 | 1 => {
                            put(&store, &name(i), &format!("{w}:{i}")).await;
                        }
                        2 => {
                            put(&store, &name(i - 2), &format!("{w}:{i} again")).await;
                        }
                        3 => {
                            store
                                .delete(&path(&name(i - 3)), Default::default())
                                .await
                                .unwrap();
                        }
                        _ => {
                            let to = format!("/feed/w{w}-moved-{i}");
                            store
                                .rename(&path(&name(i - 3)), &path(&to), TransferOptions::new())
                                .await
                                .unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let (view, seen) = reader.await.unwrap();
    let truth: BTreeMap<String, (u64, u64)> = list_all(store, "/feed", Depth::Infinity)
        .await
        .into_iter()
        .map(|m| (m.path.as_str().to_owned(), (m.version, m.rid.counter())))
        .collect();
    assert_eq!(
        view, truth,
        "the followed feed differs from the final state"
    );
    let (rows, _) = all_changes(store, "/feed", 0).await;
    let missed: Vec<u64> = rows
        .iter()
        .map(|c| c.seq)
        .filter(|s| !seen.contains(s))
        .collect();
    assert!(missed.is_empty(), "rows the follower never saw: {missed:?}");
}

/// Content of several megabytes, arriving in odd-sized pieces, reads back whole and by range.
pub async fn large_content_round_trip<S: ReplStore>(store: &S) {
    let data: Vec<u8> = (0..9_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let pieces: Vec<Result<Bytes, StoreError>> = data
        .chunks(70_001)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let body: ByteStream = Box::pin(futures_util::stream::iter(pieces));
    let out = store
        .put(&path("/big.bin"), body, PutOptions::default())
        .await
        .unwrap();
    assert_eq!(out.meta.len, data.len() as u64);
    let read_all = |range: Option<ByteRange>| async move {
        let (_, mut s) = store
            .read(&path("/big.bin"), GetOptions::range(range))
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(c) = futures_util::StreamExt::next(&mut s).await {
            got.extend_from_slice(&c.unwrap());
        }
        got
    };
    assert!(read_all(None).await == data, "whole content differs");
    let r = ByteRange {
        start: 262_000,
        end: 790_000,
    };
    assert!(
        read_all(Some(r)).await == data[262_000..=790_000],
        "range differs"
    );
    let copy = store
        .copy(
            &path("/big.bin"),
            &path("/copy.bin"),
            TransferOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(copy.meta.len, data.len() as u64);
    store
        .put(&path("/big.bin"), body_of(b"small"), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(read_string(store, "/big.bin").await, "small");
    let (_, mut s) = store
        .read(
            &path("/copy.bin"),
            GetOptions::range(Some(ByteRange { start: 0, end: 9 })),
        )
        .await
        .unwrap();
    let first = futures_util::StreamExt::next(&mut s)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], &data[..10]);
}

fn body_of(b: &'static [u8]) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(b))]))
}

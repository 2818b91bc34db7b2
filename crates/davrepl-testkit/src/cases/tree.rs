//! Tree operations: PUT, MKCOL, listings, DELETE, COPY and MOVE.

use super::*;

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

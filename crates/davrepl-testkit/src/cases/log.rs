//! The change log: versions, contenttags, dead properties, the low-water mark, change pages.

use super::*;

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

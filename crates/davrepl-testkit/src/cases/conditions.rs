//! Conditions: `If` lists and entity tags, evaluated atomically with the write.

use super::*;

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
    let tagged = if_lists_on("/c", &ct_now);
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

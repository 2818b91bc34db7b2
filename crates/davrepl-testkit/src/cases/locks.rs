//! Write locks (WebDAV class 2): grant, conflict, refresh, expiry, release, what they protect,
//! and that they are never content. A store without [`Capabilities::locking`] must refuse
//! LOCK and report no locks.
//!
//! [`Capabilities::locking`]: davrepl_store::Capabilities

use davrepl_store::{Lock, LockRequest, LockScope};

use super::races::race;
use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn req(scope: LockScope, deep: bool) -> LockRequest {
    LockRequest::new(scope, deep, HOUR).owner(Some("<href xmlns=\"DAV:\">me</href>".into()))
}

/// Takes a lock that must be granted.
async fn lock<S: ReplStore>(store: &S, p: &str, scope: LockScope, deep: bool) -> Lock {
    store
        .lock(&path(p), req(scope, deep))
        .await
        .unwrap_or_else(|e| panic!("LOCK {p}: {e}"))
        .lock
}

/// Whether the store keeps locks; a store that does not must refuse LOCK and list none.
async fn locking<S: ReplStore>(store: &S) -> bool {
    if store.capabilities().locking {
        return true;
    }
    put(store, "/nolock", "x").await;
    let r = store
        .lock(&path("/nolock"), req(LockScope::Shared, false))
        .await;
    assert_eq!(kind_of(r), ErrorKind::Unsupported);
    assert!(
        store
            .locks(&path("/nolock"), true)
            .await
            .unwrap()
            .is_empty()
    );
    false
}

fn err_resource<T: std::fmt::Debug>(r: Result<T, StoreError>, kind: ErrorKind) -> String {
    match r {
        Ok(v) => panic!("expected {kind:?}, got {v:?}"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{e}");
            e.resource()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default()
        }
    }
}

/// Grant, discovery, conflicts, what the lock protects, and release.
pub async fn lock_grant_conflict_unlock<S: ReplStore>(store: &S) {
    if !locking(store).await {
        return;
    }
    put(store, "/a", "one").await;
    put(store, "/b", "other").await;
    let l = lock(store, "/a", LockScope::Exclusive, false).await;
    assert!(l.token.starts_with("opaquelocktoken:"), "{}", l.token);
    assert_eq!(l.root, path("/a"));
    assert_eq!(l.owner.as_deref(), Some("<href xmlns=\"DAV:\">me</href>"));
    let found = store.locks(&path("/a"), false).await.unwrap();
    assert_eq!(found, vec![l.clone()]);
    assert!(store.locks(&path("/b"), false).await.unwrap().is_empty());

    for scope in [LockScope::Exclusive, LockScope::Shared] {
        let r = store.lock(&path("/a"), req(scope, false)).await;
        assert_eq!(err_resource(r, ErrorKind::LockConflict), "/a");
    }
    // Every write to the locked resource needs its token.
    let r = store
        .put(&path("/a"), body("no"), PutOptions::default())
        .await;
    assert_eq!(err_resource(r, ErrorKind::Locked), "/a");
    let patch = vec![PropPatch::Set(DeadProp {
        name: PropName::new("urn:t", "p"),
        value: "v".into(),
    })];
    let r = store
        .patch_props(&path("/a"), patch.clone(), Default::default())
        .await;
    assert_eq!(kind_of(r), ErrorKind::Locked);
    assert_eq!(
        kind_of(store.delete(&path("/a"), Default::default()).await),
        ErrorKind::Locked
    );
    let r = store
        .rename(&path("/a"), &path("/moved"), TransferOptions::new())
        .await;
    assert_eq!(kind_of(r), ErrorKind::Locked);
    let r = store
        .copy(&path("/b"), &path("/a"), TransferOptions::new())
        .await;
    assert_eq!(kind_of(r), ErrorKind::Locked, "COPY onto a locked resource");
    // Reading and copying it away need nothing.
    assert_eq!(read_string(store, "/a").await, "one");
    store
        .copy(&path("/a"), &path("/copy"), TransferOptions::new())
        .await
        .unwrap();
    assert!(
        store.locks(&path("/copy"), false).await.unwrap().is_empty(),
        "locks do not follow a copy"
    );
    // With the token, it can be written, and stays locked.
    store
        .put(
            &path("/a"),
            body("two"),
            PutOptions::with_condition(if_token(&l.token)),
        )
        .await
        .unwrap();
    store
        .patch_props(&path("/a"), patch, if_token(&l.token).into())
        .await
        .unwrap();
    assert_eq!(store.locks(&path("/a"), false).await.unwrap().len(), 1);
    // UNLOCK needs a token of a lock that covers the resource.
    let r = store
        .unlock(&path("/a"), "opaquelocktoken:bogus", None)
        .await;
    assert_eq!(kind_of(r), ErrorKind::NoSuchLock);
    let r = store.unlock(&path("/b"), &l.token, None).await;
    assert_eq!(kind_of(r), ErrorKind::NoSuchLock);
    assert_eq!(store.unlock(&path("/a"), &l.token, None).await.unwrap(), l);
    assert_eq!(
        kind_of(store.unlock(&path("/a"), &l.token, None).await),
        ErrorKind::NoSuchLock
    );
    put(store, "/a", "free").await;
    // Shared locks coexist; an exclusive one does not join them.
    let s1 = lock(store, "/b", LockScope::Shared, false).await;
    let s2 = lock(store, "/b", LockScope::Shared, false).await;
    assert_ne!(s1.token, s2.token);
    let r = store
        .lock(&path("/b"), req(LockScope::Exclusive, false))
        .await;
    assert_eq!(kind_of(r), ErrorKind::LockConflict);
    assert_eq!(store.locks(&path("/b"), false).await.unwrap().len(), 2);
    // Either shared lock's token lets a write through.
    store
        .put(
            &path("/b"),
            body("shared"),
            PutOptions::with_condition(if_token(&s2.token)),
        )
        .await
        .unwrap();
}

/// Depth infinity covers members (also new ones); a depth-0 lock on a collection protects its
/// membership; lock trees conflict both ways.
pub async fn lock_depth_and_membership<S: ReplStore>(store: &S) {
    if !locking(store).await {
        return;
    }
    mkcol(store, "/c").await;
    put(store, "/c/x", "x").await;
    let deep = lock(store, "/c", LockScope::Exclusive, true).await;
    let r = store
        .put(&path("/c/x"), body("no"), PutOptions::default())
        .await;
    assert_eq!(err_resource(r, ErrorKind::Locked), "/c");
    let r = store
        .put(&path("/c/new"), body("no"), PutOptions::default())
        .await;
    assert_eq!(err_resource(r, ErrorKind::Locked), "/c", "a new member");
    // The token, submitted for the collection itself (a tagged list), covers its members.
    store
        .put(
            &path("/c/new"),
            body("yes"),
            PutOptions::with_condition(if_lists_on("/c", &deep.token)),
        )
        .await
        .unwrap();
    let indirect = store.locks(&path("/c/new"), false).await.unwrap();
    assert_eq!(
        indirect,
        vec![deep.clone()],
        "discovery through the lock root"
    );
    let r = store
        .lock(&path("/c/x"), req(LockScope::Shared, false))
        .await;
    assert_eq!(err_resource(r, ErrorKind::LockConflict), "/c");
    store
        .unlock(&path("/c/x"), &deep.token, None)
        .await
        .unwrap();

    // A member's exclusive lock blocks a deep lock on the collection (and the other way).
    let member = lock(store, "/c/x", LockScope::Exclusive, false).await;
    let r = store.lock(&path("/c"), req(LockScope::Shared, true)).await;
    assert_eq!(err_resource(r, ErrorKind::LockConflict), "/c/x");
    assert_eq!(
        store.locks(&path("/c"), true).await.unwrap(),
        vec![member.clone()]
    );
    // A depth-0 lock on the collection is allowed beside it, and guards the membership.
    let shallow = lock(store, "/c", LockScope::Exclusive, false).await;
    let r = store
        .put(&path("/c/other"), body("no"), PutOptions::default())
        .await;
    assert_eq!(err_resource(r, ErrorKind::Locked), "/c");
    let r = store.delete(&path("/c/new"), Default::default()).await;
    assert_eq!(err_resource(r, ErrorKind::Locked), "/c");
    // Replacing an unlocked member's content does not change the membership.
    store
        .put(&path("/c/new"), body("changed"), PutOptions::default())
        .await
        .unwrap();
    // Deleting the collection needs the tokens of every lock inside it.
    let r = store
        .delete(&path("/c"), if_token(&shallow.token).into())
        .await;
    assert_eq!(err_resource(r, ErrorKind::Locked), "/c/x");
    let both = if_lists(vec![
        vec![(false, IfTerm::Token(shallow.token.clone()))],
        vec![(false, IfTerm::Token(member.token.clone()))],
    ]);
    store.delete(&path("/c"), both.into()).await.unwrap();
    // The locks went with the resources.
    assert!(store.locks(&path("/c"), true).await.unwrap().is_empty());
    mkcol(store, "/c").await;
    put(store, "/c/x", "back").await;
}

/// A refresh extends the timeout; an expired lock protects nothing and is swept.
pub async fn lock_refresh_and_expiry<S: ReplStore>(store: &S) {
    if !locking(store).await {
        return;
    }
    put(store, "/r", "r").await;
    let short = LockRequest::new(LockScope::Exclusive, false, Duration::from_secs(5));
    let l = store.lock(&path("/r"), short).await.unwrap().lock;
    let refreshed = store
        .refresh_lock(&path("/r"), if_token(&l.token), Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(refreshed.token, l.token);
    assert_eq!(refreshed.timeout, Duration::from_secs(600));
    assert!(refreshed.expires > l.expires);
    assert_eq!(
        store.locks(&path("/r"), false).await.unwrap(),
        vec![refreshed]
    );
    let r = store
        .refresh_lock(&path("/r"), if_token("opaquelocktoken:x"), HOUR)
        .await;
    assert_eq!(kind_of(r), ErrorKind::PreconditionFailed);
    store.unlock(&path("/r"), &l.token, None).await.unwrap();

    // A lock that lapses is ignored at once.
    let brief = LockRequest::new(LockScope::Exclusive, false, Duration::from_millis(30));
    let gone = store.lock(&path("/r"), brief).await.unwrap().lock;
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(store.locks(&path("/r"), false).await.unwrap().is_empty());
    put(store, "/r", "after expiry").await;
    let r = store
        .refresh_lock(&path("/r"), if_token(&gone.token), HOUR)
        .await;
    assert_eq!(kind_of(r), ErrorKind::PreconditionFailed);
    let again = lock(store, "/r", LockScope::Exclusive, false).await;
    assert_ne!(again.token, gone.token);
    store
        .purge(SystemTime::now() - Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        kind_of(store.unlock(&path("/r"), &gone.token, None).await),
        ErrorKind::NoSuchLock
    );
    assert_eq!(store.locks(&path("/r"), false).await.unwrap(), vec![again]);
}

/// LOCK on an unmapped URL makes an ordinary empty item (201); its parent must exist.
pub async fn lock_unmapped_url<S: ReplStore>(store: &S) {
    if !locking(store).await {
        return;
    }
    let (_, mark) = all_changes(store, "/", 0).await;
    let g = store
        .lock(&path("/fresh"), req(LockScope::Exclusive, false))
        .await
        .unwrap();
    assert!(g.created);
    assert_eq!(g.meta.len, 0);
    assert!(!g.meta.is_collection());
    assert_eq!(read_string(store, "/fresh").await, "");
    let (changes, _) = all_changes(store, "/", mark).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].path(), &path("/fresh"));
    let r = store
        .lock(&path("/missing/x"), req(LockScope::Exclusive, false))
        .await;
    assert_eq!(kind_of(r), ErrorKind::ParentMissing);
    // The owner fills it with the token.
    let filled = store
        .put(
            &path("/fresh"),
            body("content"),
            PutOptions::with_condition(if_token(&g.lock.token)),
        )
        .await
        .unwrap();
    assert!(!filled.created);
    assert_eq!(filled.meta.rid, g.meta.rid);
}

/// A lock taken by one principal is not usable by another, token or not.
pub async fn lock_belongs_to_its_principal<S: ReplStore>(store: &S) {
    if !locking(store).await {
        return;
    }
    put(store, "/p", "p").await;
    let mut alice = Condition::none();
    alice.principal = Some("alice".into());
    let r = req(LockScope::Exclusive, false).condition(alice);
    let l = store.lock(&path("/p"), r).await.unwrap().lock;
    assert_eq!(l.principal.as_deref(), Some("alice"));
    let as_who = |who: &str| {
        let mut c = if_token(&l.token);
        c.principal = Some(who.into());
        PutOptions::with_condition(c)
    };
    let r = store.put(&path("/p"), body("bob"), as_who("bob")).await;
    assert_eq!(kind_of(r), ErrorKind::Locked);
    store
        .put(&path("/p"), body("alice"), as_who("alice"))
        .await
        .unwrap();
    let r = store.unlock(&path("/p"), &l.token, Some("bob")).await;
    assert_eq!(kind_of(r), ErrorKind::NotLockOwner);
    store
        .unlock(&path("/p"), &l.token, Some("alice"))
        .await
        .unwrap();
}

/// Lock tokens and entity tags in one `If` header, evaluated together with the lock check.
pub async fn lock_with_conditional_write<S: ReplStore>(store: &S) {
    if !locking(store).await {
        return;
    }
    let m = put(store, "/w", "w").await;
    let l = lock(store, "/w", LockScope::Exclusive, false).await;
    let token = IfTerm::Token(l.token.clone());
    let no_lock = IfTerm::Token("DAV:no-lock".into());
    let etag = |e: &str| IfTerm::ETag(e.to_owned());
    let target = path("/w");
    let try_put = |c: Condition| store.put(&target, body("w"), PutOptions::with_condition(c));
    // (<token> [etag]) holds.
    let c = if_lists(vec![vec![(false, token.clone()), (false, etag(&m.etag()))]]);
    let m = try_put(c).await.unwrap().meta;
    // (<token> [wrong]) (Not <DAV:no-lock> [wrong]) is false: 412, although the token is there.
    let c = if_lists(vec![
        vec![(false, token.clone()), (false, etag("\"wrong\""))],
        vec![(true, no_lock.clone()), (false, etag("\"wrong\""))],
    ]);
    assert_eq!(kind_of(try_put(c).await), ErrorKind::PreconditionFailed);
    // (<token>x) (Not <DAV:no-lock>) holds, but submits no token of this lock: 423.
    let c = if_lists(vec![
        vec![(false, IfTerm::Token(format!("{}x", l.token)))],
        vec![(true, no_lock.clone())],
    ]);
    assert_eq!(kind_of(try_put(c).await), ErrorKind::Locked);
    // (<DAV:no-lock> [etag]) is false.
    let c = if_lists(vec![vec![(false, no_lock), (false, etag(&m.etag()))]]);
    assert_eq!(kind_of(try_put(c).await), ErrorKind::PreconditionFailed);
    // A resourcetag condition and the lock token together.
    let c = if_lists(vec![vec![
        (false, IfTerm::Token(m.resource_tag())),
        (false, token),
    ]]);
    try_put(c).await.unwrap();
    // A read conditioned on the lock token.
    let (meta, _) = store
        .read(&path("/w"), GetOptions::from(if_token(&l.token)))
        .await
        .unwrap();
    assert_eq!(meta.path, path("/w"));
}

/// LOCK, refresh and UNLOCK change no tag, no ETag and nothing in the change log.
pub async fn locks_are_not_content<S: ReplStore>(store: &S) {
    if !locking(store).await {
        return;
    }
    mkcol(store, "/n").await;
    let item = put(store, "/n/i", "i").await;
    let coll = store.head(&path("/n")).await.unwrap();
    let mark = store.watermark().await.unwrap();
    let a = lock(store, "/n", LockScope::Shared, true).await;
    let b = lock(store, "/n/i", LockScope::Shared, false).await;
    store
        .refresh_lock(&path("/n/i"), if_token(&b.token), HOUR)
        .await
        .unwrap();
    store.unlock(&path("/n/i"), &b.token, None).await.unwrap();
    store.unlock(&path("/n"), &a.token, None).await.unwrap();
    assert_eq!(store.head(&path("/n/i")).await.unwrap(), item);
    assert_eq!(store.head(&path("/n")).await.unwrap(), coll);
    assert_eq!(store.watermark().await.unwrap(), mark);
    let (changes, _) = all_changes(store, "/", mark).await;
    assert!(changes.is_empty(), "{changes:?}");
}

/// N tasks race for one exclusive lock: exactly one gets it.
pub async fn lock_race_single_winner<S: ReplStore + Clone>(store: &S) {
    if !locking(store).await {
        return;
    }
    put(store, "/contended", "c").await;
    let results = race(store, |store, _| async move {
        store
            .lock(&path("/contended"), req(LockScope::Exclusive, false))
            .await
    })
    .await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.kind(), ErrorKind::LockConflict, "{r}");
    }
    assert_eq!(
        store.locks(&path("/contended"), false).await.unwrap().len(),
        1
    );
}

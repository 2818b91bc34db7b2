//! Exchange-style subscriptions: named cursors into the log, bound to their principal, that
//! expire. A store without [`Capabilities::subscriptions`] refuses to make one.
//!
//! [`Capabilities::subscriptions`]: davrepl_store::Capabilities

use davrepl_store::{NewSubscription, NotificationTypes, SubscriptionUpdate};

use super::*;

/// Create, read, acknowledge, renew, end; principals and expiry.
pub async fn subscriptions_are_cursors<S: ReplStore>(store: &S) {
    let minute = Duration::from_secs(60);
    let req = |who: &str, lifetime| {
        NewSubscription::new(path("/s"), true, NotificationTypes::UPDATE, lifetime)
            .principal(Some(who.into()))
    };
    if !store.capabilities().subscriptions {
        assert_eq!(
            kind_of(store.subscribe(req("a", minute)).await),
            ErrorKind::Unsupported
        );
        return;
    }
    mkcol(store, "/s").await;
    let mark = store.watermark().await.unwrap();
    let sub = store.subscribe(req("alice", minute)).await.unwrap();
    assert_eq!(
        sub.cursor, mark,
        "a subscription starts at the end of the log"
    );
    assert!(sub.id > 0);
    assert_eq!(
        store.watermark().await.unwrap(),
        mark,
        "subscribing writes no change"
    );
    let other = store.subscribe(req("alice", minute)).await.unwrap();
    assert_ne!(other.id, sub.id);

    let alice = || Some("alice".to_owned());
    let bob = || Some("bob".to_owned());
    let found = store
        .subscriptions(vec![sub.id, 424_242, other.id], alice())
        .await
        .unwrap();
    assert_eq!(found, vec![sub.clone(), other.clone()]);
    assert!(
        store
            .subscriptions(vec![sub.id], bob())
            .await
            .unwrap()
            .is_empty()
    );

    put(store, "/s/x", "x").await;
    let now = store.watermark().await.unwrap();
    let mut upd = SubscriptionUpdate::default();
    upd.ack = Some(now);
    upd.renew = Some(minute * 2);
    let acked = store
        .update_subscription(sub.id, alice(), upd)
        .await
        .unwrap();
    assert_eq!(acked.cursor, now);
    assert!(acked.expires > sub.expires);
    assert_eq!(acked.lifetime, minute * 2);
    assert_eq!(
        store.subscriptions(vec![sub.id], alice()).await.unwrap(),
        vec![acked]
    );
    assert_eq!(
        kind_of(store.update_subscription(sub.id, bob(), upd).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind_of(store.unsubscribe(sub.id, bob()).await),
        ErrorKind::NotFound
    );
    store.unsubscribe(sub.id, alice()).await.unwrap();
    assert!(
        store
            .subscriptions(vec![sub.id], alice())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        kind_of(store.unsubscribe(sub.id, alice()).await),
        ErrorKind::NotFound
    );

    // Expiry: ignored at once, swept by purge.
    let brief = store
        .subscribe(req("alice", Duration::from_millis(30)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(
        store
            .subscriptions(vec![brief.id], alice())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        kind_of(store.update_subscription(brief.id, alice(), upd).await),
        ErrorKind::NotFound
    );
    store
        .purge(SystemTime::now() - Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        store.subscriptions(vec![other.id], alice()).await.unwrap(),
        vec![other]
    );
}

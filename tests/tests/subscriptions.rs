//! Exchange 2003 notifications over TCP: SUBSCRIBE, POLL (which subscriptions fired since the
//! last poll, acknowledged by it), renewal, UNSUBSCRIBE, and 412 for unknown, expired or
//! foreign ids.

use davrepl::{MemStore, ReplLayer};
use davrepl_tests::{Reply, TestServer, serve_users};

async fn subscribe(s: &TestServer, path: &str, types: &str, user: &str) -> Reply {
    s.send(
        s.req("SUBSCRIBE", path)
            .header("Notification-Type", types)
            .header("Subscription-Lifetime", "600")
            .header("x-test-user", user),
    )
    .await
}

async fn poll(s: &TestServer, path: &str, ids: &str, user: &str) -> Reply {
    s.send(
        s.req("POLL", path)
            .header("Subscription-ID", ids)
            .header("x-test-user", user),
    )
    .await
}

/// The ids listed under the response with `status` (e.g. "200 OK").
fn ids_with(r: &Reply, status: &str) -> Vec<String> {
    let text = r.text();
    text.split("<D:response>")
        .filter(|resp| resp.contains(status))
        .flat_map(|resp| {
            resp.split("<D:li>")
                .skip(1)
                .filter_map(|s| s.split("</D:li>").next().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn put(s: &TestServer, path: &str) {
    let r = s
        .send(s.req("PUT", path).header("x-test-user", "alice").body("x"))
        .await;
    assert!(r.status == 201 || r.status == 204, "{}", r.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_poll_renew_unsubscribe() {
    let s = serve_users(ReplLayer::new(MemStore::new())).await;
    s.send(s.req("MKCOL", "/inbox/").header("x-test-user", "alice"))
        .await
        .expect(201);
    put(&s, "/inbox/old").await;

    let sub = subscribe(&s, "/inbox/", "update/newmember", "alice").await;
    sub.expect(200);
    let id = sub.header("subscription-id").unwrap().to_owned();
    assert_eq!(sub.header("subscription-lifetime"), Some("600"));
    assert_eq!(sub.header("content-location"), Some("/inbox/"));
    let del = subscribe(&s, "/inbox/", "delete", "alice").await;
    del.expect(200);
    let del_id = del.header("subscription-id").unwrap().to_owned();
    let both = format!("{id}, {del_id}");

    // Nothing yet.
    let r = poll(&s, "/inbox/", &both, "alice").await;
    r.expect(207);
    assert!(ids_with(&r, "200 OK").is_empty(), "{}", r.text());
    assert_eq!(ids_with(&r, "204 No Content").len(), 2, "{}", r.text());

    // A new member fires update/newmember only; the poll acknowledges it.
    put(&s, "/inbox/new").await;
    let r = poll(&s, "/inbox/", &both, "alice").await;
    assert_eq!(ids_with(&r, "200 OK"), [id.as_str()], "{}", r.text());
    assert_eq!(ids_with(&r, "204 No Content"), [del_id.as_str()]);
    assert_eq!(r.header("subscription-id"), Some(id.as_str()));
    let r = poll(&s, "/inbox/", &both, "alice").await;
    assert!(
        ids_with(&r, "200 OK").is_empty(),
        "acknowledged: {}",
        r.text()
    );

    // Changing an old member is not a new member; deleting one fires delete.
    put(&s, "/inbox/old").await;
    s.send(s.req("DELETE", "/inbox/new").header("x-test-user", "alice"))
        .await
        .expect(204);
    let r = poll(&s, "/inbox/", &both, "alice").await;
    assert_eq!(ids_with(&r, "200 OK"), [del_id.as_str()], "{}", r.text());

    // Renewal: by id, without Notification-Type; then 412 for ids that are not there.
    let renew = s
        .send(
            s.req("SUBSCRIBE", "/inbox/")
                .header("Subscription-ID", &id)
                .header("Subscription-Lifetime", "120")
                .header("x-test-user", "alice"),
        )
        .await;
    renew.expect(200);
    assert_eq!(renew.header("subscription-lifetime"), Some("120"));
    let bad = s
        .send(
            s.req("SUBSCRIBE", "/inbox/")
                .header("Subscription-ID", "999")
                .header("x-test-user", "alice"),
        )
        .await;
    bad.expect(412);
    poll(&s, "/inbox/", "999", "alice").await.expect(412);
    // Another user's ids, or the right ids on another resource, are unknown too.
    poll(&s, "/inbox/", &id, "bob").await.expect(412);
    poll(&s, "/", &id, "alice").await.expect(412);

    // Bad requests.
    s.send(s.req("SUBSCRIBE", "/inbox/").header("x-test-user", "alice"))
        .await
        .expect(400);
    subscribe(&s, "/inbox/", "everything", "alice")
        .await
        .expect(400);
    s.send(
        s.req("SUBSCRIBE", "/inbox/")
            .header("Notification-Type", "update")
            .header("Call-Back", "httpu://127.0.0.1:9/")
            .header("x-test-user", "alice"),
    )
    .await
    .expect(501);
    subscribe(&s, "/nothing/", "update", "alice")
        .await
        .expect(404);

    // UNSUBSCRIBE, then the id is gone.
    let r = s
        .send(
            s.req("UNSUBSCRIBE", "/inbox/")
                .header("Subscription-ID", &both)
                .header("x-test-user", "alice"),
        )
        .await;
    r.expect(200);
    poll(&s, "/inbox/", &both, "alice").await.expect(412);
}

//! Several PgStore handles on one database behave as one store: what several server nodes
//! see. Each handle has its own connection pool, as a separate node process would.

use std::time::Duration;

use davrepl_postgres::throwaway::Cluster;
use davrepl_postgres::{PgOptions, PgStore};
use davrepl_store::{ErrorKind, PutOptions, ReplStore};
use davrepl_testkit::{body, cases, if_token, path, put, read_string};

/// `n` handles ("nodes") on one fresh database, and its URL.
async fn nodes(n: usize) -> Option<(Vec<PgStore>, String)> {
    let cluster = Cluster::shared()?;
    let url = cluster.create_database().await.expect("database");
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(PgStore::connect(&url).await.expect("connect"));
    }
    Some((out, url))
}

async fn sql(url: &str, statement: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(conn);
    client.batch_execute(statement).await.expect(statement);
    drop(client);
    let _ = driver.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_share_identity_and_secret() {
    let Some((n, _)) = nodes(3).await else { return };
    assert_eq!(n[0].store_id(), n[1].store_id());
    assert_eq!(n[0].store_id(), n[2].store_id());
    assert_eq!(n[0].secret().await.unwrap(), n[2].secret().await.unwrap());
    let m = put(&n[0], "/a", "from node 0").await;
    let seen = n[1].head(&path("/a")).await.unwrap();
    assert_eq!(seen.resource_tag(), m.resource_tag());
    assert_eq!(read_string(&n[2], "/a").await, "from node 0");
}

/// Two nodes take writes (8 writers each) while a third follows the change feed: no change
/// ever appears below a sequence number the reader has already passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gap_free_feed_two_writing_nodes_one_reader() {
    let Some((n, _)) = nodes(3).await else { return };
    cases::gap_free_feed_across(&n[2], &n[..2], 8).await;
}

/// 16 conditional PUTs holding the same resource tag, alternating between two nodes: one
/// wins, fifteen get a failed precondition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_conditional_puts_across_nodes_have_one_winner() {
    let Some((n, _)) = nodes(2).await else { return };
    let rt = put(&n[0], "/race", "start").await.resource_tag();
    let results = futures_util::future::join_all((0..16).map(|i| {
        let store = &n[i % 2];
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
    }))
    .await;
    let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let lost = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.kind() == ErrorKind::PreconditionFailed))
        .count();
    assert_eq!((wins.len(), lost), (1, 15), "{results:?}");
    let now = n[1].head(&path("/race")).await.unwrap();
    assert_eq!(now.resource_tag(), wins[0].meta.resource_tag());
}

/// A node whose connections are cut by the server retries on fresh ones: the next writes
/// succeed instead of failing, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_connections_are_retried() {
    let Some((n, url)) = nodes(1).await else {
        return;
    };
    put(&n[0], "/before", "1").await;
    sql(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..5 {
        put(&n[0], &format!("/after-{i}"), "2").await;
    }
    assert_eq!(read_string(&n[0], "/before").await, "1");
    assert_eq!(read_string(&n[0], "/after-4").await, "2");
}

/// Nodes starting together on an empty database migrate it once and agree on its identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_start_migrates_once() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.create_database().await.expect("database");
    let opened = futures_util::future::join_all((0..4).map(|_| PgStore::connect(&url))).await;
    let ids: Vec<_> = opened
        .into_iter()
        .map(|s| s.expect("connect").store_id())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn newer_schema_is_refused() {
    let Some((n, url)) = nodes(1).await else {
        return;
    };
    put(&n[0], "/keep", "data").await;
    // Keep this build's version aside, to put it back afterwards.
    sql(
        &url,
        "CREATE TABLE kept AS SELECT schema_version FROM davrepl_store;
         UPDATE davrepl_store SET schema_version = 99",
    )
    .await;
    let err = PgStore::connect(&url)
        .await
        .expect_err("newer schema must be refused");
    assert!(err.to_string().contains("newer"), "{err}");
    sql(
        &url,
        "UPDATE davrepl_store SET schema_version = (SELECT schema_version FROM kept)",
    )
    .await;
    let again = PgStore::connect(&url).await.expect("reopen");
    assert_eq!(read_string(&again, "/keep").await, "data");
}

/// Content staged by a node that died mid-upload is removed by the next start once old
/// enough; a fresh upload in progress elsewhere is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_staged_uploads_are_removed_at_start() {
    let Some((_, url)) = nodes(1).await else {
        return;
    };
    sql(
        &url,
        "INSERT INTO davrepl_uploads (blob, started) VALUES (900001, 0), (900002, 9223372036854775000);
         INSERT INTO davrepl_chunks (blob, n, data) VALUES (900001, 0, 'old'), (900002, 0, 'new');",
    )
    .await;
    let mut opts = PgOptions::default();
    opts.stale_upload_after = Duration::from_secs(3600);
    let _store = PgStore::connect_with(&url, opts).await.expect("connect");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let left: Vec<i64> = client
        .query(
            "SELECT blob FROM davrepl_chunks WHERE blob > 900000 ORDER BY blob",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(client);
    let _ = driver.await;
    assert_eq!(left, vec![900002]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_url_is_a_clear_error() {
    let err = PgStore::connect("postgres://u@127.0.0.1:1/x?sslmode=bogus")
        .await
        .expect_err("bad url");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = PgStore::connect("postgres://u:p@127.0.0.1:1/x")
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

/// After a restore, one node starts a new generation: a new shared secret (earlier collblobs
/// no longer verify) with the same store id and data; nodes started after it share the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_generation_replaces_the_shared_secret() {
    let Some((n, url)) = nodes(1).await else {
        return;
    };
    put(&n[0], "/kept", "data").await;
    let old = n[0].secret().await.unwrap();
    let mut opts = PgOptions::default();
    opts.new_generation = true;
    let renewed = PgStore::connect_with(&url, opts).await.expect("connect");
    let new = renewed.secret().await.unwrap();
    assert_ne!(old, new);
    assert_eq!(renewed.store_id(), n[0].store_id());
    assert_eq!(read_string(&renewed, "/kept").await, "data");
    let later = PgStore::connect(&url).await.expect("connect");
    assert_eq!(later.secret().await.unwrap(), new);
}

/// A write through one node wakes readers on another (LISTEN/NOTIFY): the signal only says
/// "look again", and looking again finds the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_on_one_node_wakes_the_other() {
    let Some((n, _)) = nodes(2).await else {
        return;
    };
    let signal = n[1]
        .change_signal()
        .expect("the PostgreSQL store has a change signal");
    // Let the second node's listener start listening (it fires once when it has).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let seen = signal.generation();
    put(&n[0], "/woken", "x").await;
    tokio::time::timeout(std::time::Duration::from_secs(5), signal.changed(seen))
        .await
        .expect("a write through the first node woke the second");
    assert_eq!(read_string(&n[1], "/woken").await, "x");
}

/// Changes are numbered by their transaction, so a newer writer can commit while an older one
/// is still in flight. The watermark stays below every change an older transaction could
/// still commit under it: the newer change is visible (its horizon covers it) but is not
/// reported until the older transaction has ended, and then it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_transaction_in_flight_holds_the_watermark_back() {
    use davrepl_store::{ChangesQuery, Depth};
    let Some((n, url)) = nodes(2).await else {
        return;
    };
    put(&n[0], "/a", "before").await;
    let before = n[1].watermark().await.unwrap();
    assert_eq!(
        n[1].watermark().await.unwrap(),
        before,
        "still with no write"
    );

    // An older transaction: it has an id, and it has not ended.
    let (older, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(conn);
    older
        .batch_execute("BEGIN; SELECT pg_current_xact_id();")
        .await
        .unwrap();

    let b = put(&n[0], "/b", "newer").await;
    assert_eq!(
        read_string(&n[1], "/b").await,
        "newer",
        "committed and visible"
    );
    let held = n[1].watermark().await.unwrap();
    assert!(
        held < b.version,
        "watermark {held} must stay below {}",
        b.version
    );
    assert!(held >= before, "a watermark never goes back");
    assert!(n[1].horizon().await.unwrap() >= b.version);
    let q = ChangesQuery::new(path("/"), Depth::Infinity, before, 100);
    let page = n[1].changes(q.clone()).await.unwrap();
    assert!(page.changes.is_empty(), "{:?}", page.changes);
    assert!(page.watermark < b.version);

    older.batch_execute("COMMIT").await.unwrap();
    drop(older);
    let _ = driver.await;
    // Other tests' transactions on the shared cluster may hold it a moment longer.
    let mut page = n[1].changes(q.clone()).await.unwrap();
    for _ in 0..200 {
        if !page.changes.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        page = n[1].changes(q.clone()).await.unwrap();
    }
    assert_eq!(page.changes.len(), 1, "{:?}", page.changes);
    assert_eq!(page.changes[0].seq, b.version);
    assert!(page.watermark >= b.version);
}

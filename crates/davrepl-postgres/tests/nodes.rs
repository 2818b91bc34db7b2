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

/// Writes no longer queue behind one store-wide lock, so this is where they race: three nodes,
/// sixteen writers each, creating, replacing, deleting and moving items in one collection
/// while a fourth node follows the change feed. No change appears below a number the reader
/// has passed, and the reader's final view is the store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_writers_on_three_nodes_keep_a_gap_free_feed() {
    let Some((n, _)) = nodes(4).await else { return };
    cases::gap_free_feed_across(&n[3], &n[..3], 16).await;
}

/// 48 writers on three nodes, spread over six collections and one shared one, each creating
/// items and then replacing half of them under a condition on the tag it got back. Every write
/// lands exactly once, the quota count matches the content held, every node agrees, and once
/// all writers are done the watermark has caught up with every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_in_many_collections_on_three_nodes_all_land() {
    use davrepl_store::Depth;
    use davrepl_testkit::{all_changes, list_all, mkcol};
    use std::collections::BTreeMap;

    let Some((n, _)) = nodes(3).await else { return };
    for c in 0..6 {
        mkcol(&n[0], &format!("/c{c}")).await;
    }
    mkcol(&n[0], "/shared").await;
    let writers = (0..48).map(|w| {
        let store = n[w % 3].clone();
        tokio::spawn(async move {
            let mut last = BTreeMap::new();
            for i in 0..12 {
                let p = match i % 3 {
                    0 => format!("/shared/w{w}-{i}"),
                    _ => format!("/c{}/w{w}-{i}", w % 6),
                };
                let data = "x".repeat((w * 12 + i) % 97 + 1);
                let meta = put(&store, &p, &data).await;
                if i % 2 == 0 {
                    let again = format!("{data}+{w}");
                    let cond = if_token(&meta.resource_tag());
                    let opts = PutOptions::with_condition(cond);
                    let m = store
                        .put(&path(&p), body(again.clone()), opts)
                        .await
                        .expect("conditional replace of the writer's own item");
                    assert!(m.meta.version > meta.version);
                    last.insert(p, (again, m.meta.version));
                } else {
                    last.insert(p, (data, meta.version));
                }
            }
            last
        })
    });
    let mut expected = BTreeMap::new();
    for w in futures_util::future::join_all(writers).await {
        expected.extend(w.expect("writer"));
    }
    assert_eq!(expected.len(), 48 * 12);

    let want_bytes: u64 = expected.values().map(|(d, _)| d.len() as u64).sum();
    for node in &n {
        let items: BTreeMap<String, u64> = list_all(node, "/", Depth::Infinity)
            .await
            .into_iter()
            .filter(|m| !m.is_collection())
            .map(|m| (m.path.as_str().to_owned(), m.version))
            .collect();
        let want: BTreeMap<String, u64> =
            expected.iter().map(|(p, (_, v))| (p.clone(), *v)).collect();
        assert_eq!(
            items, want,
            "every node lists every item at its last version"
        );
        assert_eq!(node.usage().await.unwrap(), Some(want_bytes), "quota count");
        assert_eq!(
            node.watermark().await.unwrap(),
            node.horizon().await.unwrap()
        );
    }
    for (p, (data, _)) in expected.iter().step_by(37) {
        assert_eq!(&read_string(&n[2], p).await, data);
    }

    let (feed, top) = all_changes(&n[1], "/", 0).await;
    assert!(
        feed.windows(2).all(|w| w[0].seq < w[1].seq),
        "feed in order"
    );
    let last_seen: BTreeMap<String, u64> = feed
        .iter()
        .filter_map(|c| match &c.kind {
            davrepl_store::ChangeKind::Upsert(m) if !m.is_collection() => {
                Some((m.path.as_str().to_owned(), m.version))
            }
            _ => None,
        })
        .collect();
    let want: BTreeMap<String, u64> = expected.iter().map(|(p, (_, v))| (p.clone(), *v)).collect();
    assert_eq!(
        last_seen, want,
        "the feed ends at every item's last version"
    );
    assert_eq!(top, n[1].horizon().await.unwrap());
}

/// A collection deleted while members are being created in it, from two nodes, ten times:
/// each create either lands before the delete (and the delete removes it, leaving a
/// tombstone in the feed) or fails because its parent is gone. No member outlives its
/// collection, neither through the API nor in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_collection_while_members_are_created_leaves_no_orphans() {
    use davrepl_store::{ChangeKind, Depth};
    use davrepl_testkit::{all_changes, list_all, mkcol};

    let Some((n, url)) = nodes(2).await else {
        return;
    };
    for round in 0..10 {
        let dir = format!("/d{round}");
        let start = n[0].watermark().await.unwrap();
        mkcol(&n[0], &dir).await;
        mkcol(&n[1], &format!("{dir}/sub")).await;
        let creates = (0..8).map(|i| {
            let store = n[i % 2].clone();
            let p = match i % 4 {
                3 => format!("{dir}/sub/m{i}"),
                _ => format!("{dir}/m{i}"),
            };
            tokio::spawn(async move {
                // Staggered, so that the delete falls between them at different points.
                tokio::time::sleep(Duration::from_millis(2 * i as u64)).await;
                let r = store
                    .put(
                        &path(&p),
                        body(format!("member {i}")),
                        PutOptions::default(),
                    )
                    .await;
                (p, r)
            })
        });
        let delete = {
            let store = n[round % 2].clone();
            let dir = dir.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(round as u64)).await;
                store.delete(&path(&dir), Default::default()).await
            })
        };
        let results = futures_util::future::join_all(creates).await;
        let deleted = delete.await.unwrap().expect("the delete succeeds");

        let mut landed = Vec::new();
        let mut outcomes = Vec::new();
        for r in results {
            let (p, r) = r.unwrap();
            match r {
                Ok(m) => {
                    outcomes.push(format!("{p}: created, version {}", m.meta.version));
                    landed.push(p);
                }
                Err(e) => {
                    assert!(e.kind() == ErrorKind::ParentMissing, "{p}: {e}");
                    outcomes.push(format!("{p}: {e}"));
                }
            }
        }
        // The table first (the ground truth, on a connection of its own), then what each
        // node answers; a failure reports all of it, so that a rare one says which side
        // (an orphan row, or a read that missed a committed delete) went wrong.
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        let driver = tokio::spawn(conn);
        let rows: Vec<String> = client
            .query(
                "SELECT path || ' version ' || version || ' xmin ' || xmin::text
                 FROM davrepl_resource_rows WHERE path LIKE $1",
                &[&format!("{dir}/%")],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        drop(client);
        let _ = driver.await;
        let mut listed = Vec::new();
        for (i, node) in n.iter().enumerate() {
            assert_eq!(
                node.head(&path(&dir)).await.unwrap_err().kind(),
                ErrorKind::NotFound
            );
            for attempt in 0..2 {
                let left: Vec<_> = list_all(node, "/", Depth::Infinity)
                    .await
                    .into_iter()
                    .filter(|m| m.path.as_str().starts_with(&format!("{dir}/")))
                    .map(|m| format!("{} version {}", m.path.as_str(), m.version))
                    .collect();
                if !left.is_empty() {
                    listed.push(format!("node {i}, listing {attempt}: {left:?}"));
                }
            }
        }
        assert!(
            rows.is_empty() && listed.is_empty(),
            "members outlived {dir} (deleted at version {}, by node {}):\n\
             rows in the table: {rows:?}\nlisted: {listed:?}\ncreates: {outcomes:#?}",
            deleted.version,
            round % 2
        );

        // A client that synced a member learns that it is gone.
        let (feed, _) = all_changes(&n[1], "/", start).await;
        for p in &landed {
            let last = feed.iter().rev().find(|c| match &c.kind {
                ChangeKind::Upsert(m) => m.path.as_str() == p,
                ChangeKind::Removed { path, .. } => path.as_str() == p,
            });
            assert!(
                matches!(
                    last.map(|c| &c.kind),
                    Some(ChangeKind::Removed { .. }) | None
                ),
                "{p} created and then removed with its collection, yet the feed ends with {last:?}"
            );
        }
    }
}

/// Writers on two nodes create members of one collection while a third node keeps reading
/// the collection's contenttag and its listing: whenever the tag is the same before and after
/// a listing, that listing is what the tag stands for, and no tag ever stands for two
/// different listings (a tag that failed to move when a change numbered lower committed
/// after a higher one would).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_contenttag_never_stands_for_two_listings() {
    use davrepl_store::Depth;
    use davrepl_testkit::{list_all, mkcol};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let Some((n, _)) = nodes(3).await else { return };
    mkcol(&n[0], "/t").await;
    let tag = |store: PgStore| async move {
        store
            .head(&path("/t"))
            .await
            .expect("head")
            .content_tag()
            .expect("a collection has a contenttag")
    };
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (n[2].clone(), done.clone());
        tokio::spawn(async move {
            let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            loop {
                let last = done.load(Ordering::SeqCst);
                let before = tag(store.clone()).await;
                let listing: BTreeSet<String> = list_all(&store, "/t", Depth::One)
                    .await
                    .into_iter()
                    .map(|m| m.path.as_str().to_owned())
                    .collect();
                let after = tag(store.clone()).await;
                if before == after {
                    if let Some(earlier) = seen.get(&before) {
                        assert_eq!(
                            earlier,
                            &listing,
                            "one contenttag, two listings ({} and {} members)",
                            earlier.len(),
                            listing.len()
                        );
                    }
                    seen.insert(before, listing);
                }
                if last {
                    return seen;
                }
            }
        })
    };
    // Five bursts of concurrent writes, with a quiet moment after each for the reader.
    for burst in 0..5 {
        let writers = (0..24).map(|w| {
            let store = n[w % 2].clone();
            tokio::spawn(async move {
                for i in 0..2 {
                    let pause = ((w * 7 + i * 13) % 10) as u64;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    put(&store, &format!("/t/w{w}-{burst}-{i}"), "x").await;
                }
            })
        });
        for w in futures_util::future::join_all(writers).await {
            w.expect("writer");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.expect("reader");
    let last = tag(n[2].clone()).await;
    assert_eq!(
        seen.get(&last).map(BTreeSet::len),
        Some(240),
        "the final tag stands for every member"
    );
    assert!(
        seen.len() > 2,
        "the reader saw the tag move: {}",
        seen.len()
    );
}

/// A write's `COMMIT` is sent in the same round trip as its statements; a statement the server
/// refuses must still leave nothing behind. Here a trigger refuses the tombstone of a DELETE,
/// the statement after the one that removes the resource's row: the row is still there, the
/// error reaches the caller, the connection goes on serving, and the DELETE succeeds once the
/// trigger is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_statement_of_a_write_commits_nothing() {
    let Some((n, url)) = nodes(1).await else {
        return;
    };
    put(&n[0], "/keep", "still here").await;
    sql(
        &url,
        "CREATE FUNCTION refuse_for_test() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
         CREATE TRIGGER refuse_for_test BEFORE INSERT ON davrepl_tombstones
             FOR EACH ROW WHEN (NEW.path = '/keep') EXECUTE FUNCTION refuse_for_test();",
    )
    .await;
    for _ in 0..3 {
        let e = n[0]
            .delete(&path("/keep"), Default::default())
            .await
            .unwrap_err();
        assert_ne!(e.kind(), ErrorKind::NotFound, "{e}");
        assert_eq!(read_string(&n[0], "/keep").await, "still here");
    }
    put(&n[0], "/other", "written after").await;
    assert_eq!(read_string(&n[0], "/other").await, "written after");
    sql(&url, "DROP TRIGGER refuse_for_test ON davrepl_tombstones").await;
    n[0].delete(&path("/keep"), Default::default())
        .await
        .unwrap();
    let gone = n[0].head(&path("/keep")).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound);
}

/// A node that last saw no lock rows leaves the counters-row lock out of its writes; a lock
/// another node takes meanwhile must still stop them: the write finds the lock count raised,
/// runs again with that lock, reads the lock rows and is refused without the token. After
/// UNLOCK the same node writes freely again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_taken_on_one_node_stops_writes_on_another() {
    use davrepl_store::{LockRequest, LockScope};
    let Some((n, _)) = nodes(2).await else { return };
    put(&n[0], "/w", "start").await;
    // Node 1 writes once with no lock anywhere: from now on it leaves the lock statement out.
    put(&n[1], "/other", "x").await;
    let granted = n[0]
        .lock(
            &path("/w"),
            LockRequest::new(LockScope::Exclusive, false, Duration::from_secs(3600)),
        )
        .await
        .expect("LOCK on node 0");
    let refused = n[1]
        .put(&path("/w"), body("no token"), PutOptions::default())
        .await;
    assert_eq!(
        refused.as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::Locked),
        "{refused:?}"
    );
    assert_eq!(read_string(&n[0], "/w").await, "start");
    let with_token = PutOptions::with_condition(if_token(&granted.lock.token));
    n[1].put(&path("/w"), body("with token"), with_token)
        .await
        .expect("PUT with the lock token on node 1");
    n[0].unlock(&path("/w"), &granted.lock.token, None)
        .await
        .expect("UNLOCK on node 0");
    n[1].put(&path("/w"), body("after unlock"), PutOptions::default())
        .await
        .expect("PUT after UNLOCK on node 1");
    assert_eq!(read_string(&n[0], "/w").await, "after unlock");
    // Node 1 saw no locks on its last write. A DELETE there, holding the token of a lock
    // node 0 takes now, removes the lock's row with the resource, which a write may only do
    // holding the counters-row lock: it finds the lock count raised and runs again with it.
    let l = n[0]
        .lock(
            &path("/w"),
            LockRequest::new(LockScope::Exclusive, false, Duration::from_secs(3600)),
        )
        .await
        .expect("second LOCK on node 0");
    n[1].delete(&path("/w"), if_token(&l.lock.token).into())
        .await
        .expect("DELETE with the lock token on node 1");
    assert!(n[0].locks(&path("/w"), true).await.unwrap().is_empty());
}

/// `throwaway::bulk_members` (the benchmarks' fast fill) leaves a store that lists, reads and
/// writes its members like ones written through the API: a later write sorts after them in
/// the change feed. (Its counters update once passed a 64-bit count to a 32-bit product and
/// failed on every call.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_filled_members_behave_like_written_ones() {
    use davrepl_store::Depth;
    use davrepl_testkit::{list_all, mkcol};

    let Some((n, url)) = nodes(1).await else {
        return;
    };
    mkcol(&n[0], "/big").await;
    davrepl_postgres::throwaway::bulk_members(&url, "/big", 50)
        .await
        .expect("bulk fill");
    let listed = list_all(&n[0], "/big", Depth::One).await;
    assert_eq!(listed.len(), 50, "{listed:?}");
    assert_eq!(read_string(&n[0], "/big/m0000049").await, "hello");
    let written = put(&n[0], "/big/m0000007", "changed").await;
    assert!(
        listed.iter().all(|m| m.version < written.version),
        "a write after the fill has the highest version"
    );
    assert_eq!(read_string(&n[0], "/big/m0000007").await, "changed");
}

/// The hot-item cache never hands out what another node already replaced: one node rewrites
/// an item (a little apart, so the other node's cache fills in between), while readers on a
/// second node check that every GET returns a value at least as new as the last write
/// acknowledged before the GET began. Reads of an item nobody writes are answered from the
/// cache, so the test covers the cached path, not only the database one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_gets_on_one_node_see_every_write_acknowledged_on_another() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let Some((n, _)) = nodes(2).await else { return };
    put(&n[0], "/counter", "0").await;
    put(&n[0], "/still", "unchanged").await;
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, acked, stop) = (n[1].clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let before = acked.load(Ordering::SeqCst);
                    let seen: u64 = read_string(&store, "/counter").await.parse().unwrap();
                    assert!(
                        seen >= before,
                        "a GET that began after write {before} was acknowledged returned {seen}"
                    );
                    assert_eq!(read_string(&store, "/still").await, "unchanged");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 1..=150u64 {
        put(&n[0], "/counter", &i.to_string()).await;
        acked.store(i, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The cluster is shared with other tests, and their commits empty the cache as well: the
    // readers go on until one of them was answered from it (or 10 s pass).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while n[1].hot_item_hits() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut reads = 0;
    for r in readers {
        reads += r.await.expect("reader");
    }
    let hits = n[1].hot_item_hits();
    assert!(reads > 150, "readers kept up: {reads} rounds");
    assert!(
        hits > 0,
        "no read was answered from the cache ({reads} rounds)"
    );
    assert_eq!(read_string(&n[1], "/counter").await, "150");
}

/// A cached item deleted (or replaced) on another node is gone for the next HEAD and GET
/// here, without waiting for any notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cached_item_deleted_on_another_node_is_gone_at_once() {
    let Some((n, url)) = nodes(2).await else {
        return;
    };
    put(&n[0], "/gone", "here").await;
    // Other tests' commits on the shared cluster empty the cache too: read until a GET and a
    // HEAD were each answered from it.
    for head in [false, true] {
        let cached = async {
            for _ in 0..1000 {
                let before = n[1].hot_item_hits();
                match head {
                    false => assert_eq!(read_string(&n[1], "/gone").await, "here"),
                    true => assert_eq!(n[1].head(&path("/gone")).await.expect("HEAD").len, 4),
                }
                if n[1].hot_item_hits() > before {
                    return true;
                }
            }
            false
        };
        let what = if head { "HEAD" } else { "GET" };
        assert!(cached.await, "no {what} was answered from the cache");
    }
    n[0].delete(&path("/gone"), Default::default())
        .await
        .expect("delete on node 0");
    let err = n[1].head(&path("/gone")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(n[1].read(&path("/gone"), Default::default()).await.is_err());
    // A change made with plain SQL, outside any node, is seen as well.
    put(&n[0], "/sql", "before").await;
    let before = n[1].hot_item_hits();
    for _ in 0..1000 {
        assert_eq!(read_string(&n[1], "/sql").await, "before");
        if n[1].hot_item_hits() > before {
            break;
        }
    }
    assert!(
        n[1].hot_item_hits() > before,
        "/sql was never answered from the cache"
    );
    sql(
        &url,
        "UPDATE davrepl_resource_rows SET len = 3 WHERE path = '/sql'",
    )
    .await;
    assert_eq!(n[1].head(&path("/sql")).await.expect("HEAD").len, 3);
}

//! Concurrency: compare-and-swap races and the gap-free feed.

use super::*;

const RACERS: usize = 16;

/// Spawned tasks a race runs on; each drives `RACERS / GROUPS` racers concurrently.
const GROUPS: usize = 4;

/// Runs `RACERS` copies of `task` so that they really overlap, both ways a store can be
/// raced: [`GROUPS`] spawned tasks run in parallel on the runtime's workers (released together
/// by a barrier), and within each task its racers are interleaved at every `.await`. A store
/// that checks and then writes without holding a lock loses to the first kind when it blocks
/// in between and to the second when it yields in between. Results come back in racer order.
pub(super) async fn race<S, F, Fut, T>(store: &S, task: F) -> Vec<T>
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

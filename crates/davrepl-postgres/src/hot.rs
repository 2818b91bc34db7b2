//! Hot items: the rows (and short content) of the items GET read recently, kept in memory so
//! that the next HEAD or GET of the same item does not read them again. Nodes share no memory
//! and learn of each other's commits only through the database, so the cache is checked
//! against the database before every use — but one check serves every read waiting for it.
//!
//! The check is PostgreSQL's current snapshot (`pg_current_snapshot()`: the oldest
//! transaction still running, the next one to complete, and those running in between). Two
//! snapshots that print the same saw the same transactions committed: a commit in between
//! removes its transaction from the running list or moves the upper bound. So:
//!
//! - every read that goes to the database also reads the snapshot its statement ran in
//!   ([`Seen`]), and what it read is kept under that snapshot; the cache holds entries of one
//!   snapshot only (its **token**), and keeping entries of another first empties it;
//! - a read served from the cache waits for a check that began after the read did
//!   ([`Fresh`]); if that check's snapshot is the token, nothing committed between the
//!   entries' reads and the check, so they are the latest committed state as of a moment
//!   after the read began — what a read on the database would have seen. If not, the cache is
//!   emptied and the read goes to the database.
//!
//! A write acknowledged to any client, on any node, is committed before the acknowledgement,
//! so a check that begins after a read began sees it: no read served from the cache misses a
//! write that completed before the read started. Concurrent reads share checks (the checker
//! runs one at a time, for everyone who asked since the last began), so a node reading one
//! item many times sends far fewer statements than reads. The check compares snapshots of the
//! whole cluster, so a write anywhere in it (another database too) empties the cache: too
//! often, never too rarely.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use davrepl_store::ResourcePath;
use davrepl_store::engine::{Clock, Plan};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, watch};

use crate::fetch::Rec;

/// The statement that reads the current snapshot.
const SNAPSHOT: &str = "SELECT pg_current_snapshot()::text";

/// Longest content kept with its row.
pub(crate) const MAX_CONTENT: u64 = 64 * 1024;

/// Rough bytes an entry takes besides its path and content.
const ENTRY_OVERHEAD: u64 = 256;

/// How long [`Worth`] counts before it decides again.
const WINDOW: Duration = Duration::from_millis(100);
/// How often a read still waits for a check while waiting does not pay off.
const PROBE: Duration = Duration::from_millis(20);

/// How long a check may take; the reads waiting for it then read the database instead.
const CHECK_WAIT: Duration = Duration::from_secs(1);

/// One cached item: its row, and its whole content when it is short.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) rec: Rec,
    /// The whole content (`None`: not kept, or the item has none to read).
    pub(crate) whole: Option<Bytes>,
}

/// What a database read of an item found, and the snapshot it ran in.
#[derive(Debug)]
pub(crate) struct Seen {
    pub(crate) snapshot: Arc<str>,
    pub(crate) path: ResourcePath,
    pub(crate) item: Item,
}

struct Entries {
    /// The snapshot every entry was read in (or checked against since).
    token: Option<Arc<str>>,
    items: Clock<ResourcePath, Item>,
    /// Whether waiting for checks pays off lately.
    worth: Worth,
}

/// Whether reads should wait for checks: in each [`WINDOW`], how many reads waited and how
/// many of them the cache answered. When fewer than half were answered (commits come about as
/// fast as checks, so a read mostly waits only to read the database after all), the next
/// window's reads do not wait, but one every [`PROBE`], which finds out when commits slow;
/// and reads of the database keep what they found for the cache only once every [`PROBE`]
/// too (enough for the probes to find an entry, without emptying and refilling the cache on
/// every read).
/// Whether a [`PROBE`] has passed since `*last` (ms); if so, `now` becomes the last.
fn due(last: &mut u64, now: u64) -> bool {
    let due = now >= *last + PROBE.as_millis() as u64;
    if due {
        *last = now;
    }
    due
}

#[derive(Debug, Default)]
struct Worth {
    /// Milliseconds since the cache was made, when this window began.
    since: u64,
    waited: u32,
    answered: u32,
    skip: bool,
    probed: u64,
    kept: u64,
}

impl Worth {
    /// Whether a read that found its item should wait for a check, `now` ms in.
    fn wait(&mut self, now: u64) -> bool {
        let skip = self.skip;
        !skip || due(&mut self.probed, now)
    }

    /// Whether a read of the database should keep what it found, `now` ms in.
    fn keep(&mut self, now: u64) -> bool {
        let skip = self.skip;
        !skip || due(&mut self.kept, now)
    }

    /// A read waited for a check, and the cache answered it or not.
    fn note(&mut self, now: u64, answered: bool) {
        self.waited += 1;
        self.answered += u32::from(answered);
        if now >= self.since + WINDOW.as_millis() as u64 {
            self.skip = self.answered * 2 < self.waited;
            *self = Self {
                since: now,
                skip: self.skip,
                probed: self.probed,
                kept: self.kept,
                ..Self::default()
            };
        }
    }
}

/// The hot items of one node.
pub(crate) struct HotItems {
    on: bool,
    entries: Mutex<Entries>,
    fresh: Fresh,
    hits: AtomicU64,
    born: Instant,
}

impl std::fmt::Debug for HotItems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotItems")
            .field("on", &self.on)
            .field("hits", &self.hits.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The one item a plan reads, when the cache can answer it: a HEAD or a GET of one path
/// (conditions naming no other path, no locks), nothing else.
pub(crate) fn point_item(plan: &Plan) -> Option<&ResourcePath> {
    let path = match (&plan.content, plan.paths.as_slice()) {
        (Some((p, _)), []) | (None, [p]) => p,
        (Some((p, _)), [q]) if p == q => p,
        _ => return None,
    };
    let only = !plan.write
        && plan.trees.is_empty()
        && plan.props_of.is_empty()
        && plan.props_below.is_empty()
        && plan.copies_of.is_none()
        && plan.pages.is_empty()
        && plan.logs.is_empty()
        && !plan.counters
        && plan.locks.is_none()
        && plan.subscriptions.is_empty();
    only.then_some(path)
}

impl HotItems {
    /// A cache of about `max` bytes (`0`: off, and no checker runs) whose checks run on
    /// `pool`.
    pub(crate) fn new(max: u64, pool: &Pool) -> Self {
        Self {
            on: max > 0,
            entries: Mutex::new(Entries {
                token: None,
                items: Clock::new(max),
                worth: Worth::default(),
            }),
            fresh: Fresh::new(max > 0, pool),
            hits: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether reads record what they find.
    pub(crate) fn on(&self) -> bool {
        self.on
    }

    /// Whether a read of the database about to run should note what it finds for
    /// [`keep`](Self::keep): while the cache is on, and (when waiting for checks does not pay
    /// off lately) only once in a while.
    pub(crate) fn wants(&self) -> bool {
        self.on && {
            let now = self.now();
            self.lock().worth.keep(now)
        }
    }

    /// The entry for `path`, if one is kept and still the latest committed state once a check
    /// that began after this call confirms it. `content` says whether the read needs the
    /// whole content kept (a GET) or only the row (a HEAD).
    pub(crate) async fn get(&self, path: &ResourcePath, content: bool) -> Option<Item> {
        let usable = |i: &Item| !content || i.whole.is_some() || i.rec.payload.is_none();
        if !self.on {
            return None;
        }
        {
            let mut e = self.lock();
            let now = self.now();
            if !e.items.peek(path).is_some_and(usable) || !e.worth.wait(now) {
                return None; // nothing to check for, or not worth the wait lately
            }
        }
        let token = self.fresh.snapshot().await?;
        let mut e = self.lock();
        let now = self.now();
        if e.token.as_deref() != Some(&*token) {
            e.items.clear();
            e.token = Some(token);
            e.worth.note(now, false);
            return None;
        }
        let item = e.items.get(path).filter(usable);
        e.worth.note(now, item.is_some());
        if item.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        item
    }

    fn now(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// Keeps what a database read found (emptying the cache first when that read ran in
    /// another snapshot than the entries).
    pub(crate) fn keep(&self, seen: Seen) {
        if !self.on {
            return;
        }
        let weight = ENTRY_OVERHEAD
            + seen.path.as_str().len() as u64
            + seen.item.whole.as_ref().map_or(0, |b| b.len() as u64);
        let mut e = self.lock();
        if e.token.as_deref() != Some(&*seen.snapshot) {
            e.items.clear();
            e.token = Some(seen.snapshot);
        }
        e.items.insert(seen.path, seen.item, weight);
    }

    /// How many reads the cache answered.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// Check rounds asked for and begun.
#[derive(Debug, Default)]
struct Rounds {
    /// The latest round a reader waits for.
    asked: u64,
    /// The latest round begun (its statement not yet sent when this was set).
    begun: u64,
}

/// The outcome of a round: the snapshot it read (`None`: the check failed).
#[derive(Debug, Clone, Default)]
struct Done {
    round: u64,
    snapshot: Option<Arc<str>>,
}

/// Snapshot checks shared by concurrent readers: one checker task runs a round while anyone
/// waits, and every reader waits for a round that begins after it asked. The task ends when
/// the store's last handle is dropped.
struct Fresh {
    rounds: Arc<Mutex<Rounds>>,
    wake: Option<mpsc::Sender<()>>,
    done: watch::Receiver<Done>,
}

impl Fresh {
    fn new(on: bool, pool: &Pool) -> Self {
        let rounds = Arc::new(Mutex::new(Rounds::default()));
        let (done_tx, done) = watch::channel(Done::default());
        let wake = on.then(|| {
            let (wake, asks) = mpsc::channel(1);
            tokio::spawn(checker(pool.clone(), rounds.clone(), asks, done_tx));
            wake
        });
        Self { rounds, wake, done }
    }

    /// The snapshot of a check that began after this call, or `None` if none could be had
    /// soon.
    async fn snapshot(&self) -> Option<Arc<str>> {
        let wake = self.wake.as_ref()?;
        let target = {
            let mut r = self.rounds.lock().unwrap_or_else(|e| e.into_inner());
            r.asked = r.begun + 1;
            r.asked
        };
        // Full: a wake-up is already pending, and the checker reads `asked` after it.
        let _ = wake.try_send(());
        let mut done = self.done.clone();
        // Every round ends within `CHECK_WAIT` (the checker times its check out), and if the
        // checker is gone the channel is closed: no timer of its own per read.
        let done = done.wait_for(|d| d.round >= target).await.ok()?;
        done.snapshot.clone()
    }
}

/// Runs a check round whenever a reader waits for one, one at a time. (Letting a second
/// round begin while one is in flight, so that a reader that asks meanwhile waits less, made
/// GET 1 KiB 8% slower in an A/B, `wrk -t2 -c16`: more rounds, each waking its readers.)
async fn checker(
    pool: Pool,
    rounds: Arc<Mutex<Rounds>>,
    mut asks: mpsc::Receiver<()>,
    done: watch::Sender<Done>,
) {
    while asks.recv().await.is_some() {
        loop {
            let round = {
                let mut r = rounds.lock().unwrap_or_else(|e| e.into_inner());
                if r.asked <= r.begun {
                    break;
                }
                r.begun = r.asked;
                r.begun
            };
            let snapshot = tokio::time::timeout(CHECK_WAIT, check(&pool)).await;
            let snapshot = snapshot.ok().flatten();
            if snapshot.is_none() {
                tracing::debug!("a snapshot check failed; its reads go to the database");
            }
            done.send_replace(Done { round, snapshot });
        }
    }
}

/// The current snapshot, as text. (The pool hands out the connection used last first, so
/// under a steady load the same backend answers the checks.)
async fn check(pool: &Pool) -> Option<Arc<str>> {
    let conn = pool.get().await.ok()?;
    let statement = conn.prepare_cached(SNAPSHOT).await.ok()?;
    let row = conn.query_one(&statement, &[]).await.ok()?;
    let text: String = row.try_get(0).ok()?;
    Some(text.into())
}

#[cfg(test)]
mod tests {
    use super::Worth;

    #[test]
    fn reads_stop_waiting_while_checks_do_not_pay_and_probe_until_they_do() {
        let mut w = Worth::default();
        assert!(w.wait(0), "a new cache waits for checks");
        for t in 0..=100 {
            w.note(t, t % 4 == 0); // a quarter answered
        }
        assert!(w.skip, "fewer than half answered in the window");
        assert!(w.keep(110), "one read keeps what it found for the probes");
        assert!(
            !w.keep(115),
            "the others do not, until the next probe is due"
        );
        assert!(w.keep(130));
        assert!(w.wait(120), "a probe is due");
        assert!(!w.wait(125), "the next one is 20 ms later");
        assert!(w.wait(140));
        for t in 140..=240 {
            w.note(t, true);
        }
        assert!(!w.skip, "probes answered: reads wait again");
        assert!(w.wait(241) && w.wait(241));
        assert!(
            w.keep(241) && w.keep(241),
            "every read keeps what it found again"
        );
    }
}

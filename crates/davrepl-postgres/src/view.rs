//! The engine's rows on PostgreSQL: the rows a step needs, fetched in one pipelined round
//! trip (for a write, right after the counters lock), and the changes the engine made to
//! them, written back as one pipelined batch.
//!
//! The engine is synchronous; the database is not. So a step runs in three parts:
//!
//! 1. **Fetch** what the step will read, known from the request alone (the engine's
//!    [`Plan`](davrepl_store::engine::Plan)): the target, its parent, the paths its condition
//!    names, the subtrees of a DELETE/COPY/MOVE, dead properties, blob ids for copies, listing
//!    pages and change-log reads.
//! 2. **Run** the engine on a [`View`] of those rows. Every change stays in the view. If the
//!    engine asks for a row nobody fetched, the view records the miss and fails the run; the
//!    missing rows are fetched and the run starts again on a fresh view (the engine has no
//!    other side effects, so a rerun is exact). The prefetch makes this rare.
//! 3. **Flush** the difference: deleted rows, upserted rows, tombstones, dead properties,
//!    copied and released content and the counters, as a handful of set-based statements sent
//!    together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future as _;
use std::ops::Bound;
use std::task::Poll;
use std::time::SystemTime;

use bytes::Bytes;
use davrepl_store::engine::sql::{self, Columns};
use davrepl_store::engine::sql::{LockColumns, SubscriptionColumns};
use davrepl_store::engine::{Counters, LockScan, LogQuery, PageQuery, Pieces, Rows, Tombstone};
use davrepl_store::{
    DeadProp, ErrorKind, Lock, PurgeReport, ReplUid, ResourceKind, ResourcePath, StoreError,
    StoreId, StoreResult,
};
use deadpool_postgres::ClientWrapper;
use futures_util::future::try_join_all;
use tokio_postgres::types::ToSql;

use crate::fetch::{self, Known, Need, Rec};
use crate::{INLINE_READ, commit_err, pg_err};

/// New content for the written item: its last (partial) chunk `n` of blob `blob`, still to
/// be stored, and the upload record of a staged blob to drop.
pub(crate) struct Content {
    pub(crate) blob: i64,
    pub(crate) n: i64,
    pub(crate) rest: Option<Bytes>,
    pub(crate) staged: Option<i64>,
}

/// One run of the engine: its changes over the known rows (which it only reads, so a rerun
/// starts from them again for free).
pub(crate) struct View<'k> {
    id: StoreId,
    known: &'k Known,
    /// Rows this run wrote (`None`: removed), by path.
    rows: BTreeMap<ResourcePath, Option<Rec>>,
    /// Dead properties this run replaced, by repl-uid counter.
    props: HashMap<i64, Vec<DeadProp>>,
    /// How many of the known fresh blob ids this run took.
    blobs_used: usize,
    /// Repl-uid counters of the collections whose contenttag moves (see
    /// `set_content_version`).
    touched: BTreeSet<i64>,
    /// Sequence numbers and repl-uid counters this run handed out.
    seqs: u64,
    rids: u64,
    counters: Option<Counters>,
    tombs: Vec<Tombstone>,
    copies: Vec<(i64, i64)>,
    released: Vec<i64>,
    /// Tombstones recorded before this time are purged.
    purged: Option<i64>,
    /// Locks this run created or refreshed, and the tokens of those it removed.
    lock_puts: Vec<Lock>,
    lock_removes: Vec<String>,
    /// Locks that expired at or before this time are removed.
    locks_swept: Option<i64>,
    /// Subscriptions this run wrote (`None`: removed), by id.
    subscriptions: BTreeMap<u64, Option<davrepl_store::Subscription>>,
    /// Subscriptions that expired at or before this time are removed.
    subscriptions_swept: Option<i64>,
    /// The first row this run needed and did not have.
    pub(crate) need: Option<Need>,
}

fn miss(need: Need, slot: &mut Option<Need>) -> StoreError {
    let e = StoreError::new(
        ErrorKind::Internal,
        format!("row view: {need:?} not fetched"),
    );
    slot.get_or_insert(need);
    e
}

impl<'k> View<'k> {
    pub(crate) fn new(id: StoreId, known: &'k Known) -> Self {
        Self {
            id,
            known,
            rows: BTreeMap::new(),
            props: HashMap::new(),
            blobs_used: 0,
            touched: BTreeSet::new(),
            seqs: 0,
            rids: 0,
            counters: known.counters,
            tombs: Vec::new(),
            copies: Vec::new(),
            released: Vec::new(),
            purged: None,
            lock_puts: Vec::new(),
            lock_removes: Vec::new(),
            locks_swept: None,
            subscriptions: BTreeMap::new(),
            subscriptions_swept: None,
            need: None,
        }
    }

    /// Whether the row this run writes at `p` is the resource read there, with the content
    /// version it was read with.
    fn kept_content_version(&self, p: &ResourcePath, r: &Rec) -> bool {
        self.known
            .rows
            .get(p)
            .and_then(Option::as_ref)
            .is_some_and(|k| k.rid == r.rid && k.content_version == r.content_version)
    }

    fn in_known_tree(&self, p: &ResourcePath) -> bool {
        self.known.trees.iter().any(|t| p.is_within(t))
    }

    /// Writes this run's changes (and `content`) in one pipelined batch followed by `COMMIT`,
    /// in one round trip. Returns the notification to send now that they are committed, if
    /// they changed any resource.
    pub(crate) async fn commit(
        self,
        tx: &ClientWrapper,
        content: Option<&Content>,
    ) -> StoreResult<Option<String>> {
        let mut removed: Vec<&str> = Vec::new();
        let mut up: Vec<(Columns, Option<String>)> = Vec::new();
        let mut new: Vec<(Columns, Option<String>)> = Vec::new();
        for (p, row) in &self.rows {
            // A row this write found is locked (or lies below a locked row) and is updated in
            // place; one it did not find is inserted, and fails if a concurrent write created
            // it meanwhile (the step then runs again and sees that row).
            let found = self.known.rows.get(p).is_some_and(Option::is_some);
            let list = if found { &mut up } else { &mut new };
            match row {
                Some(r) => {
                    let mut c = Columns::of(p, r);
                    if found && self.kept_content_version(p, r) {
                        // The view's value includes the touch counts: keep the stored one.
                        c.content_version = KEEP;
                    }
                    list.push((c, p.parent().map(|q| q.as_str().into())));
                }
                None => {
                    if self.known.rows.get(p).is_some_and(Option::is_some) {
                        removed.push(p.as_str());
                    }
                }
            }
        }
        let (up_cols, new_cols) = (ResourceColumns::of(&up), ResourceColumns::of(&new));
        let touched: Vec<i64> = self.touched.iter().copied().collect();
        // Touch counts of collections this write removes (and does not move).
        let kept: BTreeSet<i64> = self.rows.values().flatten().map(fetch::rid).collect();
        let untouched: Vec<i64> = self
            .tombs
            .iter()
            .filter(|t| t.kind == ResourceKind::Collection)
            .map(|t| sql::int(t.rid.counter()))
            .filter(|r| !kept.contains(r))
            .collect();

        let t_seq: Vec<i64> = self.tombs.iter().map(|t| sql::int(t.seq)).collect();
        let t_rid: Vec<i64> = self
            .tombs
            .iter()
            .map(|t| sql::int(t.rid.counter()))
            .collect();
        let t_path: Vec<&str> = self.tombs.iter().map(|t| t.path.as_str()).collect();
        let t_parent: Vec<Option<String>> = self
            .tombs
            .iter()
            .map(|t| t.path.parent().map(|p| p.as_str().to_owned()))
            .collect();
        let t_kind: Vec<i64> = self.tombs.iter().map(|t| sql::kind_code(t.kind)).collect();
        let t_at: Vec<i64> = self.tombs.iter().map(|t| sql::nanos(t.at)).collect();

        let dirty_props: Vec<i64> = self.props.keys().copied().collect();
        let mut p_rid = Vec::new();
        let (mut p_ns, mut p_local, mut p_value) = (Vec::new(), Vec::new(), Vec::new());
        for rid in &dirty_props {
            for p in self.props.get(rid).into_iter().flatten() {
                p_rid.push(*rid);
                p_ns.push(p.name.ns.as_str());
                p_local.push(p.name.local.as_str());
                p_value.push(p.value.as_str());
            }
        }
        let (c_new, c_old): (Vec<i64>, Vec<i64>) = self.copies.iter().copied().unzip();
        let c = self.counters.ok_or_else(|| {
            StoreError::new(ErrorKind::Internal, "a write step without its counters")
        })?;
        let read = self.known.counters.map_or(0, |k| k.bytes);
        let bytes_delta = sql::int(c.bytes).wrapping_sub(sql::int(read));
        // Concurrent writers have nearby transaction ids, so this spreads them over the slots.
        let xid = self.known.first.map_or(0, |f| f >> crate::SPAN_BITS);
        let slot = sql::int(xid % USAGE_SLOTS);
        let touch_slot = sql::int(xid % TOUCH_SLOTS);
        let low_water = sql::int(c.low_water);
        let changes_locks = !self.lock_puts.is_empty()
            || !self.lock_removes.is_empty()
            || self.locks_swept.is_some();
        if (changes_locks || self.purged.is_some()) && !self.known.exclusive {
            return Err(StoreError::new(
                ErrorKind::Internal,
                "a write that changes locks or purges the log must run alone (Plan::exclusive)",
            ));
        }
        let rest = content.and_then(|c| c.rest.as_ref().map(|r| (c.blob, c.n, &r[..])));

        type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;
        let mut batch: Vec<(&str, Params<'_>)> = Vec::new();
        if let Some(b) = content.and_then(|c| c.staged.as_ref()) {
            batch.push((DROP_UPLOAD, vec![b]));
        }
        if let Some((blob, n, data)) = &rest {
            batch.push((INSERT_CHUNK, vec![blob, n, data]));
        }
        if !c_new.is_empty() {
            batch.push((COPY_CHUNKS, vec![&c_new, &c_old]));
        }
        // One row is deleted by its key: a statement with an array parameter is planned
        // again on most calls, one with a single key uses its cached plan.
        match self.released.as_slice() {
            [] => {}
            [one] => batch.push((DROP_CHUNKS, vec![one])),
            _ => batch.push((DROP_CHUNKS_OF, vec![&self.released])),
        }
        match removed.as_slice() {
            [] => {}
            [one] => batch.push((
                "DELETE FROM davrepl_resource_rows WHERE path = $1",
                vec![one],
            )),
            _ => batch.push((
                "DELETE FROM davrepl_resource_rows WHERE path = ANY($1)",
                vec![&removed],
            )),
        }
        if !up.is_empty() {
            batch.push((UPSERT_RESOURCES, up_cols.params()));
        }
        if !new.is_empty() {
            batch.push((INSERT_RESOURCES, new_cols.params()));
        }
        if !t_seq.is_empty() {
            batch.push((
                INSERT_TOMBSTONES,
                vec![&t_seq, &t_rid, &t_path, &t_parent, &t_kind, &t_at],
            ));
        }
        if !dirty_props.is_empty() {
            batch.push((
                "DELETE FROM davrepl_props WHERE rid = ANY($1)",
                vec![&dirty_props],
            ));
        }
        if !p_rid.is_empty() {
            batch.push((INSERT_PROPS, vec![&p_rid, &p_ns, &p_local, &p_value]));
        }
        if let Some(cutoff) = &self.purged {
            batch.push((sql::PURGE, vec![cutoff]));
        }
        for token in &self.lock_removes {
            batch.push((sql::REMOVE_LOCK, vec![token]));
        }
        let lock_rows: Vec<LockColumns> = self.lock_puts.iter().map(LockColumns::of).collect();
        for l in &lock_rows {
            batch.push((
                sql::PUT_LOCK,
                vec![
                    &l.token,
                    &l.root,
                    &l.deep,
                    &l.exclusive,
                    &l.owner,
                    &l.principal,
                    &l.timeout,
                    &l.expires,
                ],
            ));
        }
        if let Some(now) = &self.locks_swept {
            batch.push((sql::SWEEP_LOCKS, vec![now]));
        }
        if changes_locks {
            // Runs after the lock statements above (a connection runs them in order).
            batch.push((COUNT_LOCKS, Vec::new()));
        }
        let sub_rows: Vec<SubscriptionColumns> = self
            .subscriptions
            .values()
            .flatten()
            .map(SubscriptionColumns::of)
            .collect();
        let sub_removed: Vec<i64> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| s.is_none())
            .map(|(id, _)| sql::int(*id))
            .collect();
        for id in &sub_removed {
            batch.push((sql::REMOVE_SUBSCRIPTION, vec![id]));
        }
        for r in &sub_rows {
            batch.push((
                sql::PUT_SUBSCRIPTION,
                vec![
                    &r.id,
                    &r.path,
                    &r.members,
                    &r.types,
                    &r.principal,
                    &r.lifetime,
                    &r.expires,
                    &r.cursor,
                    &r.acked,
                ],
            ));
        }
        if let Some(now) = &self.subscriptions_swept {
            batch.push((sql::SWEEP_SUBSCRIPTIONS, vec![now]));
        }
        if !untouched.is_empty() {
            batch.push((
                "DELETE FROM davrepl_touches WHERE rid = ANY($1)",
                vec![&untouched],
            ));
        }
        // Rows other writers may update too go last: their locks are held the shortest.
        if !touched.is_empty() {
            batch.push((TOUCH_COLLECTIONS, vec![&touched, &touch_slot]));
        }
        if self.purged.is_some() {
            batch.push((SAVE_LOW_WATER, vec![&low_water]));
        }
        if bytes_delta != 0 {
            batch.push((ADD_USAGE, vec![&slot, &bytes_delta]));
        }
        let batch = fuse(batch);
        let statements = try_join_all(batch.iter().map(|(s, _)| tx.prepare_cached(s)))
            .await
            .map_err(pg_err)?;
        // `COMMIT` travels in the same round trip, sent after every statement. Polling the
        // batch once sends all of it (a query is sent when its future is first polled, in
        // order); one that fails before it is sent (its parameters cannot be encoded) ends the
        // batch then, and the transaction is rolled back, not committed. Once everything is
        // sent, a statement the server refuses aborts the transaction, and PostgreSQL answers
        // the `COMMIT` behind it with a rollback: nothing is applied.
        let mut run = std::pin::pin!(try_join_all(
            statements
                .iter()
                .zip(&batch)
                .map(|(st, (_, params))| tx.execute(st, params)),
        ));
        let first = std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await;
        let commit = match first {
            Poll::Ready(Err(e)) => return Err(pg_err(e)),
            Poll::Ready(Ok(_)) => tx.batch_execute("COMMIT").await,
            Poll::Pending => {
                let (run, commit) =
                    futures_util::future::join(run, tx.batch_execute("COMMIT")).await;
                match run {
                    Err(e) if e.code().is_some() => return Err(pg_err(e)),
                    // The connection failed with the `COMMIT` sent: it may or may not have
                    // happened.
                    Err(e) => return Err(commit_err(e)),
                    Ok(_) => commit,
                }
            }
        };
        commit.map_err(commit_err)?;
        // Sent to every node's listener after the commit (a step that changed no resource,
        // such as a LOCK, wakes nobody).
        let changed = self.rows.keys().chain(self.tombs.iter().map(|t| &t.path));
        Ok((!self.rows.is_empty() || !self.tombs.is_empty())
            .then(|| crate::listen::payload(changed.map(ResourcePath::as_str))))
    }
}

/// Statements of a flush that may run as parts of one statement (each a data-modifying `WITH`
/// query; all of them see the snapshot taken before any of them runs, in no set order): no two
/// of them write the same row, and none needs another's effect — the one reader, the copy of
/// chunks, reads blobs that nothing in the run writes, or that a delete in the run releases,
/// whose rows it still sees. The rest (deletes of resource rows and properties that a later
/// statement may insert again, the lock and subscription statements, the lock count) stay on
/// their own, in order.
fn fusable(sql: &str) -> bool {
    [
        DROP_UPLOAD,
        INSERT_CHUNK,
        COPY_CHUNKS,
        DROP_CHUNKS,
        DROP_CHUNKS_OF,
        UPSERT_RESOURCES,
        INSERT_RESOURCES,
        INSERT_TOMBSTONES,
        TOUCH_COLLECTIONS,
        ADD_USAGE,
    ]
    .contains(&sql)
}

/// Joins each run of two or more [`fusable`] statements of `batch` into one, so that a small
/// write's flush is one statement and `COMMIT` rather than one per table (PostgreSQL's cost
/// per statement, not per row, bounds a small write). The order of the batch is kept.
fn fuse<'p>(
    batch: Vec<(&str, Vec<&'p (dyn ToSql + Sync)>)>,
) -> Vec<(String, Vec<&'p (dyn ToSql + Sync)>)> {
    let mut out: Vec<(String, Vec<&(dyn ToSql + Sync)>)> = Vec::with_capacity(batch.len());
    let mut run: Vec<(&str, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
    let flush = |run: &mut Vec<(&str, Vec<&'p (dyn ToSql + Sync)>)>,
                 out: &mut Vec<(String, Vec<&'p (dyn ToSql + Sync)>)>| {
        match run.len() {
            0 => {}
            1 => {
                let (sql, params) = run.remove(0);
                out.push((sql.to_owned(), params));
            }
            _ => {
                let mut sql = String::from("WITH ");
                let mut params = Vec::new();
                for (i, (part, ps)) in run.drain(..).enumerate() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("w{i} AS ("));
                    renumber_into(&mut sql, part, params.len());
                    sql.push(')');
                    params.extend(ps);
                }
                sql.push_str(" SELECT 1");
                out.push((sql, params));
            }
        }
    };
    for (sql, params) in batch {
        if fusable(sql) {
            run.push((sql, params));
        } else {
            flush(&mut run, &mut out);
            out.push((sql.to_owned(), params));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Appends `sql` to `out` with each parameter `$n` written as `$(n + offset)`. (The flush's
/// statements hold no `$` but in their parameters.)
fn renumber_into(out: &mut String, sql: &str, offset: usize) {
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = rest[..digits].parse().unwrap_or(0);
        out.push_str(&(n + offset).to_string());
        rest = &rest[digits..];
    }
    out.push_str(rest);
}

const DROP_UPLOAD: &str = "DELETE FROM davrepl_uploads WHERE blob = $1";
const DROP_CHUNKS: &str = "DELETE FROM davrepl_chunks WHERE blob = $1";
const DROP_CHUNKS_OF: &str = "DELETE FROM davrepl_chunks WHERE blob = ANY($1)";

pub(crate) const INSERT_CHUNK: &str =
    "INSERT INTO davrepl_chunks (blob, n, data) VALUES ($1, $2, $3)";
const COPY_CHUNKS: &str = "INSERT INTO davrepl_chunks (blob, n, data)
    SELECT m.new, c.n, c.data FROM unnest($1::int8[], $2::int8[]) AS m(new, old)
    JOIN davrepl_chunks c ON c.blob = m.old";
const UPSERT_RESOURCES: &str = "INSERT INTO davrepl_resource_rows
    (path, parent, rid, kind, version, content_version, len, content_type, created, modified, blob,
     digests)
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[],
                         $7::int8[], $8::text[], $9::int8[], $10::int8[], $11::int8[],
                         $12::bytea[])
    ON CONFLICT (path) DO UPDATE SET parent = EXCLUDED.parent, rid = EXCLUDED.rid,
        kind = EXCLUDED.kind, version = EXCLUDED.version,
        content_version = CASE WHEN EXCLUDED.content_version = -1
            THEN davrepl_resource_rows.content_version ELSE EXCLUDED.content_version END,
        len = EXCLUDED.len,
        content_type = EXCLUDED.content_type, created = EXCLUDED.created,
        modified = EXCLUDED.modified, blob = EXCLUDED.blob, digests = EXCLUDED.digests";
const INSERT_TOMBSTONES: &str = "INSERT INTO davrepl_tombstones (seq, rid, path, parent, kind, at)
    SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::int8[])";
const INSERT_PROPS: &str = "INSERT INTO davrepl_props (rid, ns, local, value)
    SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[])";
const COUNT_LOCKS: &str =
    "UPDATE davrepl_store SET locks = (SELECT count(*) FROM davrepl_locks) WHERE id = 1";
const SAVE_LOW_WATER: &str =
    "UPDATE davrepl_store SET low_water = GREATEST(low_water, $1) WHERE id = 1";
/// Usage slots: a write adds its change of bytes to one of them (picked by its transaction
/// id), so concurrent writes rarely wait for the same row.
const USAGE_SLOTS: u64 = 64;
const ADD_USAGE: &str = "INSERT INTO davrepl_usage (slot, bytes) VALUES ($1, $2)
    ON CONFLICT (slot) DO UPDATE SET bytes = davrepl_usage.bytes + EXCLUDED.bytes";
/// Touch slots per collection. A collection's contenttag is made from its row's
/// `content_version` plus the counts in its slots (the `davrepl_resources` view adds them), and
/// a write that changes its membership adds one to the slot its transaction id picks: the sum
/// grows by one with every such write that commits, whatever order they commit in, so the tag
/// moves with each, and concurrent writes in one collection do not wait for each other (two
/// wait only when they pick the same slot). A collection keeps at most this many slot rows.
const TOUCH_SLOTS: u64 = 16;
/// Counts one membership change of each collection `$1` (in repl-uid order, so two writes that
/// touch the same collections take the slots' row locks in the same order).
const TOUCH_COLLECTIONS: &str = "INSERT INTO davrepl_touches (rid, slot, n)
    SELECT rid, $2, 1 FROM unnest($1::int8[]) AS t(rid) ORDER BY rid
    ON CONFLICT (rid, slot) DO UPDATE SET n = davrepl_touches.n + 1";
/// `content_version` of an updated row that keeps the stored value: the value a step read from
/// the view includes the touch counts, which must not be added twice.
const KEEP: i64 = -1;
/// New rows: a plain insert, so that a concurrent create of the same path fails.
const INSERT_RESOURCES: &str = "INSERT INTO davrepl_resource_rows
    (path, parent, rid, kind, version, content_version, len, content_type, created, modified, blob,
     digests)
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[],
                         $7::int8[], $8::text[], $9::int8[], $10::int8[], $11::int8[],
                         $12::bytea[])";

/// Resource rows as one array per column (for `unnest`).
struct ResourceColumns<'a> {
    path: Vec<&'a str>,
    parent: Vec<Option<&'a str>>,
    ints: [Vec<i64>; 7],
    content_type: Vec<Option<&'a str>>,
    blob: Vec<Option<i64>>,
    digests: Vec<Option<&'a [u8]>>,
}

impl<'a> ResourceColumns<'a> {
    fn of(rows: &'a [(Columns, Option<String>)]) -> Self {
        let col = |f: fn(&Columns) -> i64| rows.iter().map(|(c, _)| f(c)).collect::<Vec<i64>>();
        Self {
            path: rows.iter().map(|(c, _)| c.path.as_str()).collect(),
            parent: rows.iter().map(|(_, p)| p.as_deref()).collect(),
            ints: [
                col(|c| c.rid),
                col(|c| c.kind),
                col(|c| c.version),
                col(|c| c.content_version),
                col(|c| c.len),
                col(|c| c.created),
                col(|c| c.modified),
            ],
            content_type: rows
                .iter()
                .map(|(c, _)| c.content_type.as_deref())
                .collect(),
            blob: rows.iter().map(|(c, _)| c.blob).collect(),
            digests: rows.iter().map(|(c, _)| c.digests.as_deref()).collect(),
        }
    }

    /// Parameters in the column order of [`UPSERT_RESOURCES`] and [`INSERT_RESOURCES`].
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let [rid, kind, version, cv, len, created, modified] = &self.ints;
        vec![
            &self.path,
            &self.parent,
            rid,
            kind,
            version,
            cv,
            len,
            &self.content_type,
            created,
            modified,
            &self.blob,
            &self.digests,
        ]
    }
}

/// The next of a write's numbers (`taken` so far): `first + taken`, see [`SPAN_BITS`](crate::SPAN_BITS).
fn number(first: Option<u64>, taken: &mut u64) -> StoreResult<u64> {
    let first = first
        .ok_or_else(|| StoreError::new(ErrorKind::Internal, "a change outside a write step"))?;
    if *taken + 1 >= crate::SPAN {
        return Err(StoreError::new(
            ErrorKind::TooLarge,
            format!(
                "one request may change at most {} resources on this store",
                crate::SPAN - 2
            ),
        ));
    }
    *taken += 1;
    Ok(first + *taken)
}

impl Rows for View<'_> {
    type Payload = Option<i64>;

    fn store_id(&self) -> StoreId {
        self.id
    }

    fn get(&mut self, path: &ResourcePath) -> StoreResult<Option<Rec>> {
        if let Some(r) = self.rows.get(path).or_else(|| self.known.rows.get(path)) {
            return Ok(r.clone());
        }
        if self.in_known_tree(path) {
            return Ok(None);
        }
        Err(miss(Need::Path(path.clone()), &mut self.need))
    }

    fn descendants(&mut self, root: &ResourcePath) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        if !self.in_known_tree(root) {
            return Err(miss(Need::Tree(root.clone()), &mut self.need));
        }
        let (lo, hi) = sql::below(root);
        let range = (Bound::Excluded(lo.as_str()), Bound::Excluded(hi.as_str()));
        let mut below: BTreeMap<&ResourcePath, &Option<Rec>> =
            self.known.rows.range::<str, _>(range).collect();
        below.extend(self.rows.range::<str, _>(range));
        Ok(below
            .into_iter()
            .filter_map(|(p, r)| r.clone().map(|r| (p.clone(), r)))
            .collect())
    }

    fn put(&mut self, path: &ResourcePath, record: &Rec) -> StoreResult<()> {
        self.rows.insert(path.clone(), Some(record.clone()));
        Ok(())
    }

    fn remove(&mut self, path: &ResourcePath) -> StoreResult<()> {
        self.rows.insert(path.clone(), None);
        Ok(())
    }

    fn tombstone(&mut self, t: Tombstone) -> StoreResult<()> {
        self.tombs.push(t);
        Ok(())
    }

    fn next_seq(&mut self) -> StoreResult<u64> {
        number(self.known.first, &mut self.seqs)
    }

    fn next_rid(&mut self) -> StoreResult<u64> {
        number(self.known.first, &mut self.rids)
    }

    fn current_seq(&mut self) -> StoreResult<u64> {
        match (self.known.first, self.seqs) {
            (Some(first), n) if n > 0 => Ok(first + n),
            // A write that made no change: the watermark, fetched only now.
            (Some(_), _) => match self.known.watermark {
                Some(w) => Ok(w),
                None => Err(miss(Need::Watermark, &mut self.need)),
            },
            // A read: the watermark, as read with the counters.
            (None, _) => Ok(self.counters()?.seq),
        }
    }

    fn set_content_version(&mut self, path: &ResourcePath, seq: u64) -> StoreResult<()> {
        if let Some(row) = self.rows.get_mut(path) {
            // Written by this step anyway (so locked by it).
            if let Some(r) = row {
                r.content_version = seq;
            }
            return Ok(());
        }
        // Only the contenttag moves, by a count in one of the collection's touch slots:
        // concurrent writes in one collection neither update its row nor wait for each other.
        if let Some(r) = self.get(path)? {
            self.touched.insert(fetch::rid(&r));
        }
        Ok(())
    }

    fn horizon(&mut self) -> StoreResult<u64> {
        match self.known.horizon {
            Some(h) => Ok(h),
            None => Err(miss(Need::Counters, &mut self.need)),
        }
    }

    fn counters(&mut self) -> StoreResult<&mut Counters> {
        match self.counters {
            Some(ref mut c) => Ok(c),
            None => Err(miss(Need::Counters, &mut self.need)),
        }
    }

    fn props(&mut self, rid: ReplUid) -> StoreResult<Vec<DeadProp>> {
        let key = sql::int(rid.counter());
        match self.props.get(&key).or_else(|| self.known.props.get(&key)) {
            Some(p) => Ok(p.clone()),
            None => Err(miss(Need::Props, &mut self.need)),
        }
    }

    fn set_props(&mut self, rid: ReplUid, props: &[DeadProp]) -> StoreResult<()> {
        let key = sql::int(rid.counter());
        self.props.insert(key, props.to_vec());
        Ok(())
    }

    fn duplicate(&mut self, payload: &Option<i64>) -> StoreResult<Option<i64>> {
        let Some(old) = *payload else { return Ok(None) };
        let Some(&new) = self.known.blobs.get(self.blobs_used) else {
            return Err(miss(Need::Blobs, &mut self.need));
        };
        self.blobs_used += 1;
        self.copies.push((new, old));
        Ok(Some(new))
    }

    fn release(&mut self, payload: Option<i64>) -> StoreResult<()> {
        if let Some(b) = payload {
            match self.copies.iter().position(|(new, _)| *new == b) {
                Some(i) => {
                    self.copies.remove(i);
                }
                None => self.released.push(b),
            }
        }
        Ok(())
    }

    fn page(&mut self, q: &PageQuery) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        match self.known.pages.get(q) {
            Some(found) => Ok(found.clone()),
            None => Err(miss(Need::Page(q.clone()), &mut self.need)),
        }
    }

    fn changed(&mut self, q: &LogQuery) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        if q.depth == davrepl_store::Depth::Zero {
            return Ok(Vec::new());
        }
        match self.known.changed.get(q) {
            Some(found) => Ok(found.clone()),
            None => Err(miss(Need::Log(q.clone()), &mut self.need)),
        }
    }

    fn removed(&mut self, q: &LogQuery) -> StoreResult<Vec<Tombstone>> {
        match self.known.removed.get(q) {
            Some(found) => Ok(found.clone()),
            None => Err(miss(Need::Log(q.clone()), &mut self.need)),
        }
    }

    fn purge(&mut self, before: SystemTime) -> StoreResult<PurgeReport> {
        let cutoff = sql::nanos(before);
        let Some((_, count, max)) = self.known.purge.filter(|p| p.0 == cutoff) else {
            return Err(miss(Need::Purge(cutoff), &mut self.need));
        };
        self.purged = Some(cutoff);
        let low_water = &mut self.counters()?.low_water;
        if let Some(m) = max {
            *low_water = (*low_water).max(m as u64);
        }
        Ok(PurgeReport {
            removed: count as u64,
            low_water: *low_water,
        })
    }

    fn subscription(&mut self, id: u64) -> StoreResult<Option<davrepl_store::Subscription>> {
        if let Some(s) = self.subscriptions.get(&id) {
            return Ok(s.clone());
        }
        match self.known.subscriptions.get(&id) {
            Some(s) => Ok(s.clone()),
            None => Err(miss(Need::Subscription(id), &mut self.need)),
        }
    }

    fn put_subscription(&mut self, sub: &davrepl_store::Subscription) -> StoreResult<()> {
        self.subscriptions.insert(sub.id, Some(sub.clone()));
        Ok(())
    }

    fn remove_subscription(&mut self, id: u64) -> StoreResult<()> {
        self.subscriptions.insert(id, None);
        Ok(())
    }

    fn sweep_subscriptions(&mut self, now: SystemTime) -> StoreResult<()> {
        self.subscriptions_swept = Some(sql::nanos(now));
        Ok(())
    }

    fn may_hold_locks(&mut self) -> StoreResult<bool> {
        // A write knows from its counters row; a read fetched what its plan named.
        Ok(self.known.lock_count != Some(0) || !self.lock_puts.is_empty())
    }

    fn locks(&mut self, scan: &LockScan) -> StoreResult<Vec<Lock>> {
        // With no lock rows in the store (the common case), there is nothing to fetch.
        let none_stored = self.known.lock_count == Some(0);
        if !none_stored && !self.known.lock_scans.iter().any(|k| k.includes(scan)) {
            return Err(miss(Need::Locks(scan.clone()), &mut self.need));
        }
        let known = self.known.locks.iter().filter(|l| {
            !self.lock_removes.contains(&l.token)
                && !self.lock_puts.iter().any(|p| p.token == l.token)
        });
        Ok(known
            .chain(&self.lock_puts)
            .filter(|l| scan.contains(&l.root))
            .cloned()
            .collect())
    }

    fn put_lock(&mut self, lock: &Lock) -> StoreResult<()> {
        self.lock_removes.retain(|t| *t != lock.token);
        self.lock_puts.retain(|l| l.token != lock.token);
        self.lock_puts.push(lock.clone());
        Ok(())
    }

    fn remove_lock(&mut self, lock: &Lock) -> StoreResult<()> {
        self.lock_puts.retain(|l| l.token != lock.token);
        if !self.lock_removes.contains(&lock.token) {
            self.lock_removes.push(lock.token.clone());
        }
        Ok(())
    }

    fn sweep_locks(&mut self, now: SystemTime) -> StoreResult<u64> {
        // Counted by the database when the batch runs; the engine does not need the number.
        self.locks_swept = Some(sql::nanos(now));
        Ok(0)
    }

    fn content(&mut self, blob: &Option<i64>, (start, end): (u64, u64)) -> StoreResult<Pieces> {
        let Some(blob) = *blob else {
            return Ok(Some(Vec::new()));
        };
        if end - start >= INLINE_READ {
            return Ok(None);
        }
        match self.known.content.get(&(blob, start, end)) {
            Some(pieces) => Ok(Some(pieces.clone())),
            None => Err(miss(Need::Content(blob, start, end), &mut self.need)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        ADD_USAGE, COUNT_LOCKS, INSERT_CHUNK, INSERT_RESOURCES, KEEP, UPSERT_RESOURCES, fuse,
        renumber_into,
    };
    use tokio_postgres::types::ToSql;

    #[test]
    fn renumbering_shifts_every_parameter() {
        let mut out = String::new();
        renumber_into(&mut out, "VALUES ($1, $2, $10) WHERE x = $2", 3);
        assert_eq!(out, "VALUES ($4, $5, $13) WHERE x = $5");
    }

    /// Runs of fusable statements become one `WITH` statement with their parameters in order;
    /// a statement that is not fusable stays on its own, in its place.
    #[test]
    fn fusing_keeps_order_and_parameters() {
        let (a, b, c, d, e) = (1i64, 2i64, 3i64, 4i64, 5i64);
        let batch: Vec<(&str, Vec<&(dyn ToSql + Sync)>)> = vec![
            (INSERT_CHUNK, vec![&a, &b, &c]),
            (ADD_USAGE, vec![&d, &e]),
            (COUNT_LOCKS, Vec::new()),
            (INSERT_RESOURCES, Vec::new()),
        ];
        let fused = fuse(batch);
        assert_eq!(
            fused.len(),
            3,
            "{fused:?}",
            fused = fused.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        assert!(
            fused[0]
                .0
                .starts_with("WITH w0 AS (INSERT INTO davrepl_chunks"),
            "{}",
            fused[0].0
        );
        assert!(
            fused[0]
                .0
                .contains("w1 AS (INSERT INTO davrepl_usage (slot, bytes) VALUES ($4, $5)"),
            "{}",
            fused[0].0
        );
        assert!(fused[0].0.ends_with(" SELECT 1"), "{}", fused[0].0);
        assert_eq!(fused[0].1.len(), 5);
        assert_eq!(fused[1].0, COUNT_LOCKS);
        assert_eq!(
            fused[2].0, INSERT_RESOURCES,
            "a run of one is left as it is"
        );
    }

    /// The sentinel is spelled in Rust and in the upsert's SQL text: they must agree.
    #[test]
    fn the_upsert_tests_the_keep_sentinel() {
        let wanted = format!("WHEN EXCLUDED.content_version = {KEEP}\n");
        assert!(UPSERT_RESOURCES.contains(&wanted), "{UPSERT_RESOURCES}");
    }
}

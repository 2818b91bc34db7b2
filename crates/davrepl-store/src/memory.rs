//! [`MemStore`]: the whole contract in memory, as a backend of the storage engine.
//!
//! The tree, the change log and the counters live behind one `RwLock`: a write step holds it
//! exclusively (a tree MOVE touches many keys, and the gap-free feed needs sequence allocation
//! and publication to be one step), a read step shares it. Content is reference-counted
//! [`Bytes`], so a download never copies the file and never holds the lock while streaming.
//!
//! (design.md asked for dashmap here; a sharded map cannot give atomic multi-key tree moves or an
//! ordered index for listings and the change log, so it was not used — see docs/design-notes.md.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::engine::{
    Atomic, AtomicOf, Backend, Counters, Engine, Incoming, LockScan, LogQuery, PageQuery, Pieces,
    Record, Rows, Staged, Tombstone,
};
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::lock::Lock;
use crate::path::ResourcePath;
use crate::tags::{ReplUid, Seq, StoreId};
use crate::types::{ByteStream, Capabilities, DeadProp, Depth, PurgeReport, ResourceKind};
use crate::{Secret, forward_repl_store};

/// A hook that may rewrite uploaded content before it is stored; returning `Some` makes the
/// write report `transformed` (the layer answers `210 Content Different`).
pub type Transform = Arc<dyn Fn(&ResourcePath, &Bytes) -> Option<Bytes> + Send + Sync>;

/// A resource: the engine's record, with the content itself as payload.
type Node = Record<Bytes>;

#[derive(Clone)]
enum LogRow {
    Live(ResourcePath),
    Removed(Tombstone),
}

struct State {
    /// Every resource by path: a read or write of one path is one hash lookup, whatever the
    /// size of the tree (a B-tree compared the shared leading bytes of paths at every level).
    nodes: HashMap<ResourcePath, Node>,
    /// The same paths in order, for listings and subtrees (range scans).
    order: BTreeSet<ResourcePath>,
    /// Dead properties by repl-uid counter.
    props: HashMap<u64, Vec<DeadProp>>,
    log: BTreeMap<Seq, LogRow>,
    counters: Counters,
    /// Locks by root.
    locks: BTreeMap<ResourcePath, Vec<Lock>>,
    subscriptions: HashMap<u64, crate::Subscription>,
}

struct Shared {
    id: StoreId,
    secret: Secret,
    state: RwLock<State>,
    transform: Option<Transform>,
}

/// The backend behind [`MemStore`].
#[derive(Clone)]
struct Mem {
    shared: Arc<Shared>,
}

/// The in-memory [`ReplStore`](crate::ReplStore). Cloning gives another handle to the same
/// store.
#[derive(Clone, Debug)]
pub struct MemStore {
    engine: Engine<Mem>,
}

forward_repl_store!(impl[] for MemStore => |s| (s.engine));

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// An empty store holding only the root collection.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// An empty store whose uploads pass through `transform` (for `210 Content Different`).
    pub fn with_transform(transform: Transform) -> Self {
        Self::build(Some(transform))
    }

    fn build(transform: Option<Transform>) -> Self {
        let id = StoreId::random();
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("operating system random source is unavailable");
        let root = Node::collection(ReplUid::new(id, 0), SystemTime::now());
        let state = State {
            nodes: HashMap::from([(ResourcePath::root(), root)]),
            order: BTreeSet::from([ResourcePath::root()]),
            props: HashMap::new(),
            log: BTreeMap::new(),
            counters: Counters::default(),
            locks: BTreeMap::new(),
            subscriptions: HashMap::new(),
        };
        let shared = Arc::new(Shared {
            id,
            secret,
            state: RwLock::new(state),
            transform,
        });
        Self {
            engine: Engine::new(Mem { shared }),
        }
    }
}

fn read_only() -> StoreError {
    StoreError::new(ErrorKind::Internal, "a read step tried to write")
}

/// The state as one step sees it: shared for a read, exclusive for a write.
enum Access<'a> {
    Read(&'a State),
    Write(&'a mut State),
}

/// The engine's rows: the state under the lock (its counters copied out, and back after a
/// write).
struct Tx<'a> {
    st: Access<'a>,
    counters: Counters,
    id: StoreId,
}

impl Tx<'_> {
    fn st(&self) -> &State {
        match &self.st {
            Access::Read(s) => s,
            Access::Write(s) => s,
        }
    }

    fn st_mut(&mut self) -> StoreResult<&mut State> {
        match &mut self.st {
            Access::Write(s) => Ok(s),
            Access::Read(_) => Err(read_only()),
        }
    }
}

impl Rows for Tx<'_> {
    type Payload = Bytes;

    fn store_id(&self) -> StoreId {
        self.id
    }

    fn get(&mut self, path: &ResourcePath) -> StoreResult<Option<Node>> {
        Ok(self.st().nodes.get(path).cloned())
    }

    fn descendants(&mut self, root: &ResourcePath) -> StoreResult<Vec<(ResourcePath, Node)>> {
        let prefix = root.descendant_prefix();
        let st = self.st();
        Ok(st
            .order
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|p| p.as_str().starts_with(&prefix))
            .filter(|p| *p != root)
            .filter_map(|p| Some((p.clone(), st.nodes.get(p)?.clone())))
            .collect())
    }

    fn put(&mut self, path: &ResourcePath, record: &Node) -> StoreResult<()> {
        let st = self.st_mut()?;
        match st.nodes.insert(path.clone(), record.clone()) {
            Some(old) => {
                st.log.remove(&old.version);
            }
            None => {
                st.order.insert(path.clone());
            }
        }
        st.log.insert(record.version, LogRow::Live(path.clone()));
        Ok(())
    }

    fn remove(&mut self, path: &ResourcePath) -> StoreResult<()> {
        let st = self.st_mut()?;
        if let Some(old) = st.nodes.remove(path) {
            st.order.remove(path);
            st.log.remove(&old.version);
        }
        Ok(())
    }

    fn tombstone(&mut self, t: Tombstone) -> StoreResult<()> {
        self.st_mut()?.log.insert(t.seq, LogRow::Removed(t));
        Ok(())
    }

    fn counters(&mut self) -> StoreResult<&mut Counters> {
        Ok(&mut self.counters)
    }

    fn props(&mut self, rid: ReplUid) -> StoreResult<Vec<DeadProp>> {
        let props = self.st().props.get(&rid.counter());
        Ok(props.cloned().unwrap_or_default())
    }

    fn set_props(&mut self, rid: ReplUid, props: &[DeadProp]) -> StoreResult<()> {
        let st = self.st_mut()?;
        if props.is_empty() {
            st.props.remove(&rid.counter());
        } else {
            st.props.insert(rid.counter(), props.to_vec());
        }
        Ok(())
    }

    fn duplicate(&mut self, payload: &Bytes) -> StoreResult<Bytes> {
        Ok(payload.clone())
    }

    fn release(&mut self, _payload: Bytes) -> StoreResult<()> {
        Ok(())
    }

    fn page(&mut self, q: &PageQuery) -> StoreResult<Vec<(ResourcePath, Node)>> {
        let State { nodes, order, .. } = self.st();
        let want_depth = q.root.depth() + 1;
        let prefix = q.root.descendant_prefix();
        let mut from = match &q.after {
            Some(a) => Bound::Excluded(a.as_str().to_owned()),
            None => Bound::Included(prefix.clone()),
        };
        let mut out = Vec::new();
        'scan: loop {
            let range = (from.as_ref().map(String::as_str), Bound::Unbounded);
            for p in order.range::<str, _>(range) {
                if !p.as_str().starts_with(&prefix) || out.len() == q.limit {
                    break 'scan;
                }
                if *p == q.root {
                    continue;
                }
                if q.depth == Depth::One && p.depth() > want_depth {
                    // Skip this member's whole subtree: its descendants share the prefix
                    // "member/", which sorts just before "member0".
                    let member: String = p
                        .segments()
                        .take(want_depth)
                        .fold(String::new(), |acc, s| acc + "/" + s);
                    from = Bound::Included(member + "0");
                    continue 'scan;
                }
                if let Some(n) = nodes.get(p) {
                    out.push((p.clone(), n.clone()));
                }
            }
            break;
        }
        Ok(out)
    }

    fn changed(&mut self, q: &LogQuery) -> StoreResult<Vec<(ResourcePath, Node)>> {
        let st = self.st();
        let mut out = Vec::new();
        for row in st.log.range(q.since.saturating_add(1)..).map(|(_, r)| r) {
            if out.len() == q.limit {
                break;
            }
            if let LogRow::Live(p) = row
                && q.contains(p)
                && let Some(n) = st.nodes.get(p)
            {
                out.push((p.clone(), n.clone()));
            }
        }
        Ok(out)
    }

    fn removed(&mut self, q: &LogQuery) -> StoreResult<Vec<Tombstone>> {
        let mut out = Vec::new();
        for row in self
            .st()
            .log
            .range(q.since.saturating_add(1)..)
            .map(|(_, r)| r)
        {
            if out.len() == q.limit {
                break;
            }
            if let LogRow::Removed(t) = row
                && q.contains_removed(&t.path)
            {
                out.push(t.clone());
            }
        }
        Ok(out)
    }

    fn purge(&mut self, before: SystemTime) -> StoreResult<PurgeReport> {
        let low_water = &mut self.counters.low_water;
        let st = match &mut self.st {
            Access::Write(s) => s,
            Access::Read(_) => return Err(read_only()),
        };
        let doomed: Vec<Seq> = st
            .log
            .iter()
            .filter(|(_, r)| matches!(r, LogRow::Removed(t) if t.at < before))
            .map(|(s, _)| *s)
            .collect();
        for s in &doomed {
            st.log.remove(s);
        }
        if let Some(&max) = doomed.last() {
            *low_water = (*low_water).max(max);
        }
        Ok(PurgeReport {
            removed: doomed.len() as u64,
            low_water: *low_water,
        })
    }

    fn content(&mut self, payload: &Bytes, (start, end): (u64, u64)) -> StoreResult<Pieces> {
        Ok(Some(vec![payload.slice(start as usize..=end as usize)]))
    }

    fn subscription(&mut self, id: u64) -> StoreResult<Option<crate::Subscription>> {
        Ok(self.st().subscriptions.get(&id).cloned())
    }

    fn put_subscription(&mut self, sub: &crate::Subscription) -> StoreResult<()> {
        self.st_mut()?.subscriptions.insert(sub.id, sub.clone());
        Ok(())
    }

    fn remove_subscription(&mut self, id: u64) -> StoreResult<()> {
        self.st_mut()?.subscriptions.remove(&id);
        Ok(())
    }

    fn sweep_subscriptions(&mut self, now: SystemTime) -> StoreResult<()> {
        self.st_mut()?.subscriptions.retain(|_, s| s.is_active(now));
        Ok(())
    }

    fn may_hold_locks(&mut self) -> StoreResult<bool> {
        Ok(!self.st().locks.is_empty())
    }

    fn locks(&mut self, scan: &LockScan) -> StoreResult<Vec<Lock>> {
        let locks = &self.st().locks;
        let mut out: Vec<Lock> = scan
            .at
            .iter()
            .filter_map(|p| locks.get(p))
            .flatten()
            .cloned()
            .collect();
        for b in &scan.below {
            let prefix = b.descendant_prefix();
            let below = locks
                .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                .take_while(|(p, _)| p.as_str().starts_with(&prefix))
                .filter(|(p, _)| *p != b);
            out.extend(below.flat_map(|(_, l)| l.iter().cloned()));
        }
        Ok(out)
    }

    fn put_lock(&mut self, lock: &Lock) -> StoreResult<()> {
        let at = self.st_mut()?.locks.entry(lock.root.clone()).or_default();
        match at.iter_mut().find(|l| l.token == lock.token) {
            Some(l) => *l = lock.clone(),
            None => at.push(lock.clone()),
        }
        Ok(())
    }

    fn remove_lock(&mut self, lock: &Lock) -> StoreResult<()> {
        let locks = &mut self.st_mut()?.locks;
        if let Some(at) = locks.get_mut(&lock.root) {
            at.retain(|l| l.token != lock.token);
            if at.is_empty() {
                locks.remove(&lock.root);
            }
        }
        Ok(())
    }

    fn sweep_locks(&mut self, now: SystemTime) -> StoreResult<u64> {
        let locks = &mut self.st_mut()?.locks;
        let before: usize = locks.values().map(Vec::len).sum();
        locks.retain(|_, at| {
            at.retain(|l| l.is_active(now));
            !at.is_empty()
        });
        let after: usize = locks.values().map(Vec::len).sum();
        Ok((before - after) as u64)
    }

    fn kind(&mut self, path: &ResourcePath) -> StoreResult<Option<ResourceKind>> {
        Ok(self.st().nodes.get(path).map(|n| n.kind))
    }

    fn set_content_version(&mut self, path: &ResourcePath, seq: Seq) -> StoreResult<()> {
        if let Some(n) = self.st_mut()?.nodes.get_mut(path) {
            n.content_version = seq;
        }
        Ok(())
    }
}

async fn collect(mut body: ByteStream, max_len: Option<u64>) -> StoreResult<Bytes> {
    let too_large = |len: usize| {
        max_len.is_some_and(|max| len as u64 > max).then(|| {
            StoreError::new(
                ErrorKind::TooLarge,
                format!(
                    "content is larger than {} bytes",
                    max_len.unwrap_or_default()
                ),
            )
        })
    };
    // A small body comes as one piece: it is copied once into a buffer of its own size (not
    // kept as it is: it is a slice of the connection's read buffer, which it would pin for as
    // long as the store holds it) and no growing buffer is needed.
    let first = match body.next().await {
        None => return Ok(Bytes::new()),
        Some(chunk) => chunk?,
    };
    if let Some(e) = too_large(first.len()) {
        return Err(e);
    }
    let Some(second) = body.next().await else {
        return Ok(Bytes::copy_from_slice(&first));
    };
    let mut buf = BytesMut::from(&first[..]);
    let mut next = Some(second);
    while let Some(chunk) = next {
        let chunk = chunk?;
        if let Some(e) = too_large(buf.len() + chunk.len()) {
            return Err(e);
        }
        buf.extend_from_slice(&chunk);
        next = body.next().await;
    }
    Ok(buf.freeze())
}

impl Backend for Mem {
    type Payload = Bytes;
    type Upload = Bytes;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            locking: true,
            subscriptions: true,
            ..Capabilities::default()
        }
    }

    async fn stage(&self, incoming: Incoming) -> StoreResult<Staged<Bytes>> {
        let content = collect(incoming.body, incoming.max_len).await?;
        let transform = self.shared.transform.as_ref();
        let changed = transform.and_then(|t| t(&incoming.path, &content));
        let transformed = changed.is_some();
        let content = changed.unwrap_or(content);
        let mut staged = Staged::new(content.clone(), content.len() as u64);
        staged.transformed = transformed;
        Ok(staged)
    }

    async fn atomic<T: Send + 'static>(&self, a: AtomicOf<Self, T>) -> StoreResult<T> {
        let Atomic {
            plan, upload, step, ..
        } = a;
        let id = self.shared.id;
        // A panic while holding the lock leaves the state consistent (every write checks
        // before it changes anything), so a poisoned lock is still usable.
        if plan.write {
            let mut st = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
            let counters = st.counters;
            let mut tx = Tx {
                st: Access::Write(&mut st),
                counters,
                id,
            };
            let out = step(&mut tx, upload);
            // Whatever the step changed stays (an in-memory step has no rollback, and the
            // engine checks everything before it changes anything); so do the counters.
            let counters = tx.counters;
            st.counters = counters;
            out
        } else {
            let st = self.shared.state.read().unwrap_or_else(|e| e.into_inner());
            let mut tx = Tx {
                st: Access::Read(&st),
                counters: st.counters,
                id,
            };
            step(&mut tx, upload)
        }
    }

    fn stream(&self, _path: &ResourcePath, _payload: Bytes, _span: (u64, u64)) -> ByteStream {
        // `content` always reads within the step; nothing is left to stream.
        Box::pin(futures_util::stream::iter([Err(StoreError::new(
            ErrorKind::Internal,
            "in-memory content is never streamed later",
        ))]))
    }

    fn identity(&self) -> (StoreId, Secret) {
        (self.shared.id, self.shared.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(pieces: &[&'static [u8]]) -> ByteStream {
        let items: Vec<StoreResult<Bytes>> =
            pieces.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    #[tokio::test]
    async fn collect_joins_pieces_and_enforces_the_limit() {
        assert_eq!(collect(stream(&[]), None).await.unwrap(), Bytes::new());
        assert_eq!(
            collect(stream(&[b"one"]), Some(3)).await.unwrap(),
            &b"one"[..]
        );
        let joined = collect(stream(&[b"ab", b"cd", b"e"]), Some(5))
            .await
            .unwrap();
        assert_eq!(joined, &b"abcde"[..]);
        for (pieces, max) in [(&[&b"abcd"[..]][..], 3), (&[&b"ab"[..], b"cd"][..], 3)] {
            let e = collect(stream(pieces), Some(max)).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TooLarge);
        }
        let e = collect(stream(&[b"ab", b"cd", b"ef"]), Some(5))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
    }
}

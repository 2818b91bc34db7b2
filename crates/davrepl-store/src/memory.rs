//! [`MemStore`]: the whole contract in memory.
//!
//! The tree, the change log and the counters live behind one `RwLock`: a tree MOVE touches many
//! keys of several indexes, and the gap-free feed needs sequence allocation and publication to be
//! one step, so a single writer lock is both the simplest and the correct structure here. Reads
//! share the lock; content is reference-counted [`Bytes`], so a download never copies the file
//! and never holds the lock while streaming.
//!
//! (design.md asked for dashmap here; a sharded map cannot give atomic multi-key tree moves or an
//! ordered index for listings and the change log, so it was not used — see docs/design-notes.md.)

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::engine::{self, Record, Rows, Tombstone};
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::path::ResourcePath;
use crate::tags::{ReplUid, Seq, StoreId};
use crate::types::{
    ByteStream, Capabilities, Change, ChangeKind, ChangePage, ChangesQuery, CreateOptions,
    DeadProp, DeleteOptions, Depth, Entry, GetOptions, ListOptions, Listing, Meta, PatchOptions,
    PropPatch, PurgeReport, PutOptions, ResourceKind, TransferOptions, WriteOutcome,
};
use crate::{ReplStore, Secret};

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
    nodes: BTreeMap<ResourcePath, Node>,
    /// Dead properties by repl-uid counter.
    props: HashMap<u64, Vec<DeadProp>>,
    log: BTreeMap<Seq, LogRow>,
    seq: Seq,
    rid_counter: u64,
    low_water: Seq,
}

struct Shared {
    id: StoreId,
    secret: Secret,
    state: RwLock<State>,
    transform: Option<Transform>,
}

/// The in-memory [`ReplStore`]. Cloning gives another handle to the same store.
#[derive(Clone)]
pub struct MemStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

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
        let now = SystemTime::now();
        let mut nodes = BTreeMap::new();
        nodes.insert(
            ResourcePath::root(),
            Node {
                rid: ReplUid::new(id, 0),
                kind: ResourceKind::Collection,
                version: 0,
                content_version: 0,
                len: 0,
                content_type: None,
                created: now,
                modified: now,
                payload: Bytes::new(),
            },
        );
        let state = State {
            nodes,
            props: HashMap::new(),
            log: BTreeMap::new(),
            seq: 0,
            rid_counter: 0,
            low_water: 0,
        };
        Self {
            shared: Arc::new(Shared {
                id,
                secret,
                state: RwLock::new(state),
                transform,
            }),
        }
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock leaves State consistent (every mutation validates
        // before it changes anything), so a poisoned lock is still usable.
        self.shared.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.shared.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn meta_of(store: StoreId, path: &ResourcePath, n: &Node) -> Meta {
    n.meta(store, path)
}

impl State {
    fn get(&self, path: &ResourcePath) -> StoreResult<&Node> {
        self.nodes
            .get(path)
            .ok_or_else(|| StoreError::not_found(path))
    }

    fn props_of(&self, n: &Node) -> Vec<DeadProp> {
        self.props
            .get(&n.rid.counter())
            .cloned()
            .unwrap_or_default()
    }
}

/// The engine's view of the state while the write lock is held.
struct Tx<'a> {
    st: &'a mut State,
    id: StoreId,
}

impl Rows for Tx<'_> {
    type Payload = Bytes;

    fn store_id(&self) -> StoreId {
        self.id
    }

    fn get(&mut self, path: &ResourcePath) -> StoreResult<Option<Node>> {
        Ok(self.st.nodes.get(path).cloned())
    }

    fn descendants(&mut self, root: &ResourcePath) -> StoreResult<Vec<(ResourcePath, Node)>> {
        let prefix = root.descendant_prefix();
        Ok(self
            .st
            .nodes
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(p, _)| p.as_str().starts_with(&prefix))
            .filter(|(p, _)| *p != root)
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect())
    }

    fn put(&mut self, path: &ResourcePath, record: &Node) -> StoreResult<()> {
        if let Some(old) = self.st.nodes.insert(path.clone(), record.clone()) {
            self.st.log.remove(&old.version);
        }
        self.st
            .log
            .insert(record.version, LogRow::Live(path.clone()));
        Ok(())
    }

    fn remove(&mut self, path: &ResourcePath) -> StoreResult<()> {
        if let Some(old) = self.st.nodes.remove(path) {
            self.st.log.remove(&old.version);
        }
        Ok(())
    }

    fn tombstone(&mut self, t: Tombstone) -> StoreResult<()> {
        self.st.log.insert(t.seq, LogRow::Removed(t));
        Ok(())
    }

    fn next_seq(&mut self) -> StoreResult<Seq> {
        self.st.seq += 1;
        Ok(self.st.seq)
    }

    fn current_seq(&mut self) -> StoreResult<Seq> {
        Ok(self.st.seq)
    }

    fn next_rid(&mut self) -> StoreResult<u64> {
        self.st.rid_counter += 1;
        Ok(self.st.rid_counter)
    }

    fn props(&mut self, rid: ReplUid) -> StoreResult<Vec<DeadProp>> {
        Ok(self
            .st
            .props
            .get(&rid.counter())
            .cloned()
            .unwrap_or_default())
    }

    fn set_props(&mut self, rid: ReplUid, props: &[DeadProp]) -> StoreResult<()> {
        if props.is_empty() {
            self.st.props.remove(&rid.counter());
        } else {
            self.st.props.insert(rid.counter(), props.to_vec());
        }
        Ok(())
    }

    fn duplicate(&mut self, payload: &Bytes) -> StoreResult<Bytes> {
        Ok(payload.clone())
    }

    fn release(&mut self, _payload: Bytes) -> StoreResult<()> {
        Ok(())
    }

    fn kind(&mut self, path: &ResourcePath) -> StoreResult<Option<ResourceKind>> {
        Ok(self.st.nodes.get(path).map(|n| n.kind))
    }

    fn set_content_version(&mut self, path: &ResourcePath, seq: Seq) -> StoreResult<()> {
        if let Some(n) = self.st.nodes.get_mut(path) {
            n.content_version = seq;
        }
        Ok(())
    }
}

impl MemStore {
    /// Runs one engine operation under the write lock.
    fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut st = self.write_state();
        f(&mut Tx {
            st: &mut st,
            id: self.shared.id,
        })
    }
}

async fn collect(mut body: ByteStream, max_len: Option<u64>) -> StoreResult<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if let Some(max) = max_len
            && (buf.len() + chunk.len()) as u64 > max
        {
            return Err(StoreError::new(
                ErrorKind::TooLarge,
                format!("content is larger than {max} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

impl ReplStore for MemStore {
    fn store_id(&self) -> StoreId {
        self.shared.id
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn secret(&self) -> StoreResult<Secret> {
        Ok(self.shared.secret)
    }

    async fn head(&self, path: &ResourcePath) -> StoreResult<Meta> {
        let st = self.read_state();
        st.get(path).map(|n| meta_of(self.shared.id, path, n))
    }

    async fn props(&self, path: &ResourcePath) -> StoreResult<Entry> {
        let st = self.read_state();
        let n = st.get(path)?;
        Ok(Entry {
            meta: meta_of(self.shared.id, path, n),
            props: st.props_of(n),
        })
    }

    async fn list(&self, path: &ResourcePath, opts: ListOptions) -> StoreResult<Listing> {
        let st = self.read_state();
        if !engine::listable(st.get(path)?.kind, path, &opts)? {
            return Ok(Listing::default());
        }
        let mut entries = Vec::new();
        let want_depth = path.depth() + 1;
        let prefix = path.descendant_prefix();
        let mut cursor: (Bound<String>, Bound<String>) = match &opts.after {
            Some(a) => (Bound::Excluded(a.as_str().to_owned()), Bound::Unbounded),
            None => (Bound::Included(prefix.clone()), Bound::Unbounded),
        };
        'outer: loop {
            let range = st
                .nodes
                .range::<str, _>((cursor.0.as_ref().map(String::as_str), Bound::Unbounded));
            for (p, n) in range {
                if !p.as_str().starts_with(&prefix) {
                    break 'outer;
                }
                if p == path {
                    continue;
                }
                if opts.depth == Depth::One && p.depth() > want_depth {
                    // Skip this child's whole subtree: its descendants share the prefix
                    // "child/", which sorts just before "child0".
                    let child: String = p
                        .segments()
                        .take(want_depth)
                        .fold(String::new(), |acc, s| acc + "/" + s);
                    cursor = (Bound::Included(child + "0"), Bound::Unbounded);
                    continue 'outer;
                }
                if entries.len() == opts.limit {
                    let next = entries.last().map(|e: &Entry| e.meta.path.clone());
                    return Ok(Listing { entries, next });
                }
                let props = if opts.with_props {
                    st.props_of(n)
                } else {
                    Vec::new()
                };
                entries.push(Entry {
                    meta: meta_of(self.shared.id, p, n),
                    props,
                });
            }
            break;
        }
        Ok(Listing {
            entries,
            next: None,
        })
    }

    async fn read(&self, path: &ResourcePath, opts: GetOptions) -> StoreResult<(Meta, ByteStream)> {
        let (meta, mut bytes) = {
            let st = self.read_state();
            let n = st.get(path)?;
            if n.kind == ResourceKind::Collection {
                return Err(StoreError::new(
                    ErrorKind::IsCollection,
                    format!("{path} is a collection"),
                ));
            }
            engine::evaluate(path, &opts.condition, |p| {
                Ok(st
                    .nodes
                    .get(p)
                    .map(|n| meta_of(self.shared.id, p, n).tokens()))
            })?;
            (meta_of(self.shared.id, path, n), n.payload.clone())
        };
        if opts.range.is_some() {
            let (start, end) = engine::resolve_range(bytes.len() as u64, opts.range)?;
            bytes = bytes.slice(start as usize..=end as usize);
        }
        let stream: ByteStream = Box::pin(futures_util::stream::iter(
            (!bytes.is_empty()).then_some(Ok(bytes)),
        ));
        Ok((meta, stream))
    }

    async fn put(
        &self,
        path: &ResourcePath,
        body: ByteStream,
        opts: PutOptions,
    ) -> StoreResult<WriteOutcome> {
        let mut content = collect(body, opts.max_len).await?;
        let mut transformed = false;
        if let Some(t) = &self.shared.transform
            && let Some(new) = t(path, &content)
        {
            content = new;
            transformed = true;
        }
        let len = content.len() as u64;
        self.write(|tx| {
            engine::put(
                tx,
                path,
                content,
                len,
                opts.content_type,
                &opts.condition,
                transformed,
            )
        })
    }

    async fn create_collection(
        &self,
        path: &ResourcePath,
        opts: CreateOptions,
    ) -> StoreResult<WriteOutcome> {
        self.write(|tx| engine::create_collection(tx, path, &opts.condition, Bytes::new()))
    }

    async fn delete(&self, path: &ResourcePath, opts: DeleteOptions) -> StoreResult<Meta> {
        self.write(|tx| engine::delete(tx, path, &opts.condition))
    }

    async fn copy(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        self.write(|tx| engine::copy(tx, from, to, &opts))
    }

    async fn rename(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        self.write(|tx| engine::rename(tx, from, to, &opts))
    }

    async fn patch_props(
        &self,
        path: &ResourcePath,
        patch: Vec<PropPatch>,
        opts: PatchOptions,
    ) -> StoreResult<WriteOutcome> {
        self.write(|tx| engine::patch_props(tx, path, patch, &opts.condition))
    }

    async fn watermark(&self) -> StoreResult<Seq> {
        Ok(self.read_state().seq)
    }

    async fn changes(&self, q: ChangesQuery) -> StoreResult<ChangePage> {
        let st = self.read_state();
        let in_scope = |p: &ResourcePath| match q.depth {
            _ if p == &q.scope => q.include_scope || q.depth == Depth::Zero,
            Depth::Zero => false,
            Depth::One => p.parent().as_ref() == Some(&q.scope),
            Depth::Infinity => p.is_strictly_within(&q.scope),
        };
        let mut changes = Vec::new();
        for (&seq, row) in st.log.range(q.since + 1..) {
            let (change, props) = match row {
                LogRow::Live(p) if in_scope(p) => {
                    let n = st.get(p)?;
                    let props = if q.with_props {
                        st.props_of(n)
                    } else {
                        Vec::new()
                    };
                    (ChangeKind::Upsert(meta_of(self.shared.id, p, n)), props)
                }
                LogRow::Removed(t) if q.include_removed && in_scope(&t.path) => {
                    (t.change(), Vec::new())
                }
                _ => continue,
            };
            if changes.len() == q.limit {
                let watermark = changes.last().map_or(q.since, |c: &Change| c.seq);
                return Ok(ChangePage {
                    changes,
                    watermark,
                    more: true,
                    low_water: st.low_water,
                });
            }
            changes.push(Change {
                seq,
                kind: change,
                props,
            });
        }
        Ok(ChangePage {
            changes,
            watermark: st.seq,
            more: false,
            low_water: st.low_water,
        })
    }

    async fn purge(&self, before: SystemTime) -> StoreResult<PurgeReport> {
        let mut st = self.write_state();
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
            st.low_water = st.low_water.max(max);
        }
        Ok(PurgeReport {
            removed: doomed.len() as u64,
            low_water: st.low_water,
        })
    }
}

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

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::condition::{Condition, Tokens};
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::path::ResourcePath;
use crate::tags::{ReplUid, Seq, StoreId};
use crate::types::{
    ByteRange, ByteStream, Capabilities, Change, ChangeKind, ChangePage, ChangesQuery, DeadProp,
    Depth, Entry, ListOptions, Listing, Meta, PropName, PropPatch, PurgeReport, PutOptions,
    ResourceKind, TransferOptions, WriteOutcome,
};
use crate::{ReplStore, Secret};

/// A hook that may rewrite uploaded content before it is stored; returning `Some` makes the
/// write report `transformed` (the layer answers `210 Content Different`).
pub type Transform = Arc<dyn Fn(&ResourcePath, &Bytes) -> Option<Bytes> + Send + Sync>;

#[derive(Clone)]
struct Node {
    rid: ReplUid,
    kind: ResourceKind,
    version: Seq,
    content_version: Seq,
    content: Bytes,
    content_type: Option<String>,
    props: BTreeMap<PropName, String>,
    created: SystemTime,
    modified: SystemTime,
}

#[derive(Clone)]
enum LogRow {
    Live(ResourcePath),
    Removed {
        rid: ReplUid,
        path: ResourcePath,
        kind: ResourceKind,
        at: SystemTime,
    },
}

struct State {
    nodes: BTreeMap<ResourcePath, Node>,
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
                content: Bytes::new(),
                content_type: None,
                props: BTreeMap::new(),
                created: now,
                modified: now,
            },
        );
        let state = State {
            nodes,
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
    Meta {
        path: path.clone(),
        kind: n.kind,
        store,
        rid: n.rid,
        version: n.version,
        content_version: n.content_version,
        len: n.content.len() as u64,
        content_type: n.content_type.clone(),
        created: n.created,
        modified: n.modified,
    }
}

fn props_of(n: &Node) -> Vec<DeadProp> {
    n.props
        .iter()
        .map(|(k, v)| DeadProp {
            name: k.clone(),
            value: v.clone(),
        })
        .collect()
}

impl State {
    fn tokens(&self, store: StoreId, path: &ResourcePath) -> Option<Tokens> {
        self.nodes
            .get(path)
            .map(|n| meta_of(store, path, n).tokens())
    }

    fn check(&self, store: StoreId, target: &ResourcePath, cond: &Condition) -> StoreResult<()> {
        if cond.is_empty() || cond.evaluate(target, |p| self.tokens(store, p)) {
            Ok(())
        } else {
            Err(StoreError::precondition_failed())
        }
    }

    fn get(&self, path: &ResourcePath) -> StoreResult<&Node> {
        self.nodes
            .get(path)
            .ok_or_else(|| StoreError::not_found(path))
    }

    fn check_parent(&self, path: &ResourcePath) -> StoreResult<ResourcePath> {
        let parent = path.parent().ok_or_else(|| {
            StoreError::new(ErrorKind::RootImmutable, "the root cannot be replaced")
        })?;
        match self.nodes.get(&parent) {
            Some(n) if n.kind == ResourceKind::Collection => Ok(parent),
            _ => Err(StoreError::new(
                ErrorKind::ParentMissing,
                format!("parent collection {parent} does not exist"),
            )),
        }
    }

    fn next_seq(&mut self) -> Seq {
        self.seq += 1;
        self.seq
    }

    fn next_rid(&mut self, store: StoreId) -> ReplUid {
        self.rid_counter += 1;
        ReplUid::new(store, self.rid_counter)
    }

    /// Paths of `root` and everything below it, in path order.
    fn subtree(&self, root: &ResourcePath) -> Vec<ResourcePath> {
        let prefix = root.descendant_prefix();
        let mut out = vec![root.clone()];
        out.extend(
            self.nodes
                .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
                .map(|(p, _)| p)
                .take_while(|p| p.as_str().starts_with(&prefix))
                .filter(|p| *p != root)
                .cloned(),
        );
        out
    }

    /// Marks `parent`'s membership as changed at `seq`.
    fn touch_parent(&mut self, parent: &ResourcePath, seq: Seq) {
        if let Some(p) = self.nodes.get_mut(parent) {
            p.content_version = seq;
        }
    }

    /// Removes the subtree at `root`, leaving tombstones. Returns the root's old state.
    fn remove_tree(&mut self, store: StoreId, root: &ResourcePath) -> Option<Meta> {
        let paths = self.subtree(root);
        let now = SystemTime::now();
        let mut first = None;
        for p in paths {
            let Some(node) = self.nodes.remove(&p) else {
                continue;
            };
            if first.is_none() {
                first = Some(meta_of(store, &p, &node));
            }
            self.log.remove(&node.version);
            let seq = self.next_seq();
            self.log.insert(
                seq,
                LogRow::Removed {
                    rid: node.rid,
                    path: p,
                    kind: node.kind,
                    at: now,
                },
            );
        }
        if let Some(parent) = root.parent() {
            let seq = self.seq;
            self.touch_parent(&parent, seq);
        }
        first
    }

    /// Stores `node` at `path` with a fresh sequence number and logs the upsert.
    fn upsert(&mut self, path: ResourcePath, mut node: Node) -> Seq {
        if let Some(old) = self.nodes.get(&path) {
            self.log.remove(&old.version);
        }
        let seq = self.next_seq();
        node.version = seq;
        if node.kind == ResourceKind::Item || node.content_version == 0 {
            node.content_version = seq;
        }
        node.modified = SystemTime::now();
        self.log.insert(seq, LogRow::Live(path.clone()));
        self.nodes.insert(path, node);
        seq
    }

    /// Validates a COPY or MOVE and clears the destination if allowed. Returns whether the
    /// destination existed.
    fn prepare_transfer(
        &mut self,
        store: StoreId,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: &TransferOptions,
        moving: bool,
    ) -> StoreResult<bool> {
        crate::types::check_transfer_paths(from, to, moving)?;
        self.get(from)?;
        self.check(store, from, &opts.condition)?;
        self.check_parent(to)?;
        let exists = self.nodes.contains_key(to);
        if exists {
            if !opts.overwrite {
                return Err(StoreError::new(
                    ErrorKind::DestinationExists,
                    "the destination exists and Overwrite is F",
                ));
            }
            if from.is_within(to) {
                return Err(StoreError::new(
                    ErrorKind::DestinationInsideSource,
                    "the destination is an ancestor of the source",
                ));
            }
            self.remove_tree(store, to);
        }
        Ok(exists)
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
            props: props_of(n),
        })
    }

    async fn list(&self, path: &ResourcePath, opts: ListOptions) -> StoreResult<Listing> {
        let st = self.read_state();
        let node = st.get(path)?;
        if node.kind != ResourceKind::Collection {
            return Err(StoreError::new(
                ErrorKind::NotCollection,
                format!("{path} is not a collection"),
            ));
        }
        let mut entries = Vec::new();
        if opts.depth == Depth::Zero || opts.limit == 0 {
            return Ok(Listing {
                entries,
                next: None,
            });
        }
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
                    props_of(n)
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

    async fn read(
        &self,
        path: &ResourcePath,
        range: Option<ByteRange>,
    ) -> StoreResult<(Meta, ByteStream)> {
        let (meta, mut bytes) = {
            let st = self.read_state();
            let n = st.get(path)?;
            if n.kind == ResourceKind::Collection {
                return Err(StoreError::new(
                    ErrorKind::IsCollection,
                    format!("{path} is a collection"),
                ));
            }
            (meta_of(self.shared.id, path, n), n.content.clone())
        };
        if let Some(r) = range {
            if r.start > r.end || r.end >= bytes.len() as u64 {
                return Err(StoreError::new(
                    ErrorKind::InvalidInput,
                    "byte range out of bounds",
                ));
            }
            bytes = bytes.slice(r.start as usize..=r.end as usize);
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
        let id = self.shared.id;
        let mut st = self.write_state();
        let parent = st.check_parent(path)?;
        st.check(id, path, &opts.condition)?;
        let now = SystemTime::now();
        let (node, created) = match st.nodes.get(path) {
            Some(n) if n.kind == ResourceKind::Collection => {
                return Err(StoreError::new(
                    ErrorKind::IsCollection,
                    format!("{path} is a collection"),
                ));
            }
            Some(n) => {
                let mut n = n.clone();
                n.content = content;
                n.content_type = opts.content_type;
                (n, false)
            }
            None => {
                let rid = st.next_rid(id);
                let node = Node {
                    rid,
                    kind: ResourceKind::Item,
                    version: 0,
                    content_version: 0,
                    content,
                    content_type: opts.content_type,
                    props: BTreeMap::new(),
                    created: now,
                    modified: now,
                };
                (node, true)
            }
        };
        let seq = st.upsert(path.clone(), node);
        st.touch_parent(&parent, seq);
        let meta = meta_of(id, path, st.get(path)?);
        Ok(WriteOutcome {
            meta,
            created,
            transformed,
        })
    }

    async fn create_collection(
        &self,
        path: &ResourcePath,
        cond: &Condition,
    ) -> StoreResult<WriteOutcome> {
        let id = self.shared.id;
        let mut st = self.write_state();
        if st.nodes.contains_key(path) {
            return Err(StoreError::new(
                ErrorKind::AlreadyExists,
                format!("{path} already exists"),
            ));
        }
        let parent = st.check_parent(path)?;
        st.check(id, path, cond)?;
        let now = SystemTime::now();
        let rid = st.next_rid(id);
        let node = Node {
            rid,
            kind: ResourceKind::Collection,
            version: 0,
            content_version: 0,
            content: Bytes::new(),
            content_type: None,
            props: BTreeMap::new(),
            created: now,
            modified: now,
        };
        let seq = st.upsert(path.clone(), node);
        st.touch_parent(&parent, seq);
        let meta = meta_of(id, path, st.get(path)?);
        Ok(WriteOutcome {
            meta,
            created: true,
            transformed: false,
        })
    }

    async fn delete(&self, path: &ResourcePath, cond: &Condition) -> StoreResult<Meta> {
        if path.is_root() {
            return Err(StoreError::new(
                ErrorKind::RootImmutable,
                "the root cannot be deleted",
            ));
        }
        let id = self.shared.id;
        let mut st = self.write_state();
        st.get(path)?;
        st.check(id, path, cond)?;
        st.remove_tree(id, path)
            .ok_or_else(|| StoreError::not_found(path))
    }

    async fn copy(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        let id = self.shared.id;
        let mut st = self.write_state();
        let existed = st.prepare_transfer(id, from, to, &opts, false)?;
        let sources: Vec<ResourcePath> = match opts.depth {
            Depth::Infinity => st.subtree(from),
            Depth::Zero | Depth::One => vec![from.clone()],
        };
        let now = SystemTime::now();
        for src in sources {
            let Some(node) = st.nodes.get(&src).cloned() else {
                continue;
            };
            let Some(dst) = src.rebase(from, to) else {
                continue;
            };
            let rid = st.next_rid(id);
            let copy = Node {
                rid,
                version: 0,
                content_version: 0,
                created: now,
                ..node
            };
            st.upsert(dst, copy);
        }
        let seq = st.seq;
        if let Some(parent) = to.parent() {
            st.touch_parent(&parent, seq);
        }
        let meta = meta_of(id, to, st.get(to)?);
        Ok(WriteOutcome {
            meta,
            created: !existed,
            transformed: false,
        })
    }

    async fn rename(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        let id = self.shared.id;
        let mut st = self.write_state();
        let existed = st.prepare_transfer(id, from, to, &opts, true)?;
        let now = SystemTime::now();
        for src in st.subtree(from) {
            let Some(node) = st.nodes.remove(&src) else {
                continue;
            };
            let Some(dst) = src.rebase(from, to) else {
                continue;
            };
            st.log.remove(&node.version);
            let seq = st.next_seq();
            st.log.insert(
                seq,
                LogRow::Removed {
                    rid: node.rid,
                    path: src,
                    kind: node.kind,
                    at: now,
                },
            );
            st.upsert(dst, node);
        }
        let seq = st.seq;
        for parent in [from.parent(), to.parent()].into_iter().flatten() {
            st.touch_parent(&parent, seq);
        }
        let meta = meta_of(id, to, st.get(to)?);
        Ok(WriteOutcome {
            meta,
            created: !existed,
            transformed: false,
        })
    }

    async fn patch_props(
        &self,
        path: &ResourcePath,
        patch: Vec<PropPatch>,
        cond: &Condition,
    ) -> StoreResult<WriteOutcome> {
        let id = self.shared.id;
        let mut st = self.write_state();
        let mut node = st.get(path)?.clone();
        st.check(id, path, cond)?;
        for op in patch {
            match op {
                PropPatch::Set(p) => {
                    node.props.insert(p.name, p.value);
                }
                PropPatch::Remove(name) => {
                    node.props.remove(&name);
                }
            }
        }
        let seq = st.upsert(path.clone(), node);
        if let Some(parent) = path.parent() {
            st.touch_parent(&parent, seq);
        }
        let meta = meta_of(id, path, st.get(path)?);
        Ok(WriteOutcome {
            meta,
            created: false,
            transformed: false,
        })
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
                        props_of(n)
                    } else {
                        Vec::new()
                    };
                    (ChangeKind::Upsert(meta_of(self.shared.id, p, n)), props)
                }
                LogRow::Removed {
                    rid, path, kind, ..
                } if q.include_removed && in_scope(path) => {
                    let kind = ChangeKind::Removed {
                        rid: *rid,
                        path: path.clone(),
                        kind: *kind,
                    };
                    (kind, Vec::new())
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
            .filter(|(_, r)| matches!(r, LogRow::Removed { at, .. } if *at < before))
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

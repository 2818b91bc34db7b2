//! The manifest engine: which change-log rows a client gets, in which order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use davrepl_proto::sql::{self, Expr, Traversal};
use davrepl_store::{
    self as store, Change, ChangeKind, DeadProp, Entry, ErrorKind, Meta, ReplStore, ResourcePath,
    Seq, StoreError,
};

use super::*;
use crate::config::Shared;
use crate::handlers::log::{LogCursor, LogScope};
use crate::live;

/// What a manifest covers and what the client has seen.
pub(super) struct Plan {
    pub(super) scope: ResourcePath,
    pub(super) depth: store::Depth,
    pub(super) include_scope: bool,
    pub(super) collections_only: bool,
    pub(super) filter: Filter,
    pub(super) needs_props: bool,
    /// `oc:checksums` is a column: complete each item's digests before its row is written.
    pub(super) checksums: bool,
    pub(super) first_sync: bool,
    pub(super) watermark: Seq,
    pub(super) seen: HashSet<(u64, u64)>,
    pub(super) acks: HashSet<(u64, u64)>,
}

/// A request's `WHERE` condition with the work it may still do.
pub(super) struct Filter {
    pub(super) expr: Option<Expr>,
    pub(super) budget: sql::Budget,
}

impl Filter {
    pub(super) fn new(expr: Option<Expr>, limits: &crate::Limits) -> Self {
        Self {
            expr,
            budget: sql::Budget::new(limits.sql.max_eval_steps),
        }
    }
}

impl Plan {
    /// Whether a resource passes the filter; an error once the request's evaluation budget is
    /// spent (the request ends instead of occupying a runtime thread).
    pub(super) fn matches(&self, meta: &Meta, props: &[DeadProp]) -> Result<bool, StoreError> {
        let Some(f) = &self.filter.expr else {
            return Ok(true);
        };
        sql::eval_within(
            f,
            &|full: &str| {
                let (ns, local) = sql::split_prop(full);
                live::lookup(meta, props, ns, local).map(live::sql_value)
            },
            &self.filter.budget,
        )
        .map_err(|e| StoreError::new(ErrorKind::InvalidInput, e.to_string()))
    }
}

/// Produces manifest rows in order from the store's change log.
pub(super) struct Engine<S> {
    pub(super) shared: Arc<Shared<S>>,
    pub(super) plan: Arc<Plan>,
    pub(super) upper: Seq,
    pub(super) log: LogCursor,
    pub(super) pending: VecDeque<Row>,
    pub(super) pulled: HashSet<(u64, u64)>,
    pub(super) ancestors: HashMap<ResourcePath, Option<Entry>>,
}

impl<S: ReplStore> Engine<S> {
    pub(super) fn new(shared: Arc<Shared<S>>, plan: Arc<Plan>, upper: Seq) -> Self {
        let what = LogScope {
            scope: plan.scope.clone(),
            depth: plan.depth,
            include_scope: plan.include_scope,
            include_removed: !plan.first_sync,
            with_props: plan.needs_props,
        };
        Self {
            log: LogCursor::new(what, plan.watermark, upper),
            shared,
            plan,
            upper,
            pending: VecDeque::new(),
            pulled: HashSet::new(),
            ancestors: HashMap::new(),
        }
    }

    /// Fetches the first page (so that [`LogCursor::low_water`] is known).
    pub(super) async fn fetch(&mut self) -> Result<(), StoreError> {
        self.log.fetch(&self.shared.store).await
    }

    pub(super) async fn next(&mut self) -> Result<Option<Row>, StoreError> {
        loop {
            if let Some(mut r) = self.pending.pop_front() {
                // (Only when this item still lacks them: most were completed ahead.)
                if let (true, Row::Change { meta, .. }) = (self.plan.checksums, &mut r)
                    && live::lacks_digests(meta)
                {
                    // With the small items already fetched: one write records them all.
                    let queued = self.pending.iter_mut().filter_map(|r| match r {
                        Row::Change { meta, .. } if live::ahead(meta) => Some(meta),
                        _ => None,
                    });
                    let fetched = self.log.buffered_upserts().filter(|m| live::ahead(m));
                    let metas = std::iter::once(meta).chain(queued).chain(fetched);
                    live::fill_all_digests(&self.shared.store, metas).await?;
                }
                return Ok(Some(r));
            }
            let Some(c) = self.log.next(&self.shared.store).await? else {
                return Ok(None);
            };
            self.classify(c).await?;
        }
    }

    pub(super) async fn classify(&mut self, c: Change) -> Result<(), StoreError> {
        let plan = self.plan.clone();
        match c.kind {
            ChangeKind::Upsert(meta) => {
                let key = (meta.rid.counter(), meta.version);
                if plan.seen.contains(&key) || self.pulled.contains(&key) {
                    return Ok(());
                }
                if plan.collections_only && !meta.is_collection() {
                    return Ok(());
                }
                if !plan.matches(&meta, &c.props)? {
                    if !plan.first_sync {
                        let collection = meta.is_collection();
                        self.pending.push_back(Row::Delete {
                            seq: c.seq,
                            rid: meta.rid,
                            path: meta.path,
                            collection,
                        });
                    }
                    return Ok(());
                }
                if plan.acks.contains(&key) {
                    return Ok(());
                }
                self.pull_ancestors(&meta.path, c.seq).await?;
                self.pending.push_back(Row::Change {
                    seq: c.seq,
                    meta,
                    props: c.props,
                });
            }
            ChangeKind::Removed { rid, path, kind } => {
                if plan.seen.contains(&(rid.counter(), c.seq)) {
                    return Ok(());
                }
                let collection = kind == store::ResourceKind::Collection;
                if plan.collections_only && !collection {
                    return Ok(());
                }
                self.pending.push_back(Row::Delete {
                    seq: c.seq,
                    rid,
                    path,
                    collection,
                });
            }
        }
        Ok(())
    }

    /// Emits, before a member, every ancestor inside the scope whose own change comes later
    /// in the log (parents before children).
    pub(super) async fn pull_ancestors(
        &mut self,
        path: &ResourcePath,
        seq: Seq,
    ) -> Result<(), StoreError> {
        let plan = self.plan.clone();
        let mut chain = Vec::new();
        let mut p = path.parent();
        while let Some(a) = p {
            if a == plan.scope {
                if plan.include_scope {
                    chain.push(a);
                }
                break;
            }
            if !a.is_strictly_within(&plan.scope) {
                break;
            }
            p = a.parent();
            chain.push(a);
        }
        for a in chain.into_iter().rev() {
            if !self.ancestors.contains_key(&a) {
                let e = match self.shared.store.props(&a).await {
                    Ok(e) => Some(e),
                    Err(e) if e.kind() == ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                };
                self.ancestors.insert(a.clone(), e);
            }
            let Some(Some(e)) = self.ancestors.get(&a) else {
                continue;
            };
            let key = (e.meta.rid.counter(), e.meta.version);
            let v = e.meta.version;
            if v > seq
                && v <= self.upper
                && v > plan.watermark
                && !plan.seen.contains(&key)
                && !self.pulled.contains(&key)
                && !plan.acks.contains(&key)
                && plan.matches(&e.meta, &e.props)?
            {
                self.pulled.insert(key);
                self.pending.push_back(Row::Change {
                    seq: v,
                    meta: e.meta.clone(),
                    props: e.props.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Gives other tasks a turn once (runtime-agnostic: the layer does not depend on tokio).
pub(super) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

/// The store depth of a SQL traversal, and whether only collections count.
pub(super) fn traversal_depth(t: Traversal) -> (store::Depth, bool) {
    match t {
        Traversal::Shallow => (store::Depth::One, false),
        Traversal::Deep => (store::Depth::Infinity, false),
        Traversal::Hierarchical => (store::Depth::Infinity, true),
    }
}

//! A cursor into the store's change log: what every dialect that reports changes (collblob
//! manifests, RFC 6578 sync-collection) reads through. It pages through
//! [`ReplStore::changes`] in sequence order and stops at `upper`, the store's watermark when
//! the request began, so one response describes one state of the log.

use std::collections::VecDeque;

use davrepl_store::{
    self as store, Change, ChangeKind, ChangesQuery, Meta, ReplStore, ResourcePath, Seq, StoreError,
};

/// Rows fetched from the store per page.
pub(crate) const PAGE: usize = 512;

/// What a cursor reads: a scope and how the log is filtered.
#[derive(Debug, Clone)]
pub(crate) struct LogScope {
    pub(crate) scope: ResourcePath,
    pub(crate) depth: store::Depth,
    /// Report the scope collection itself.
    pub(crate) include_scope: bool,
    /// Report tombstones (not for a first sync).
    pub(crate) include_removed: bool,
    /// Load dead properties with every upsert.
    pub(crate) with_props: bool,
}

/// The changes of a [`LogScope`] after `since`, up to `upper`, in log order.
pub(crate) struct LogCursor {
    what: LogScope,
    since: Seq,
    upper: Seq,
    more: bool,
    low_water: Seq,
    buf: VecDeque<Change>,
}

impl LogCursor {
    pub(crate) fn new(what: LogScope, since: Seq, upper: Seq) -> Self {
        Self {
            what,
            since,
            upper,
            more: true,
            low_water: 0,
            buf: VecDeque::new(),
        }
    }

    /// The oldest position the log still answers for, as of the last page fetched (0 before
    /// the first).
    pub(crate) fn low_water(&self) -> Seq {
        self.low_water
    }

    /// Fetches the next page from the store.
    pub(crate) async fn fetch<S: ReplStore>(&mut self, store: &S) -> Result<(), StoreError> {
        let w = &self.what;
        let mut q = ChangesQuery::new(w.scope.clone(), w.depth, self.since, PAGE);
        q.include_scope = w.include_scope;
        q.include_removed = w.include_removed;
        q.with_props = w.with_props;
        let page = store.changes(q).await?;
        self.since = page.watermark;
        self.more = page.more;
        self.low_water = page.low_water;
        self.buf.extend(page.changes);
        Ok(())
    }

    /// The metadata of the fetched upserts not handed out yet (at or below `upper`), for work
    /// a reader does for several of them at once, ahead of their turn.
    pub(crate) fn buffered_upserts(&mut self) -> impl Iterator<Item = &mut Meta> {
        let upper = self.upper;
        self.buf
            .iter_mut()
            .filter(move |c| c.seq <= upper)
            .filter_map(|c| match &mut c.kind {
                ChangeKind::Upsert(meta) => Some(meta),
                ChangeKind::Removed { .. } => None,
            })
    }

    /// The next change at or below `upper`, fetching pages as needed.
    pub(crate) async fn next<S: ReplStore>(
        &mut self,
        store: &S,
    ) -> Result<Option<Change>, StoreError> {
        loop {
            if let Some(c) = self.buf.pop_front() {
                if c.seq > self.upper {
                    self.buf.clear();
                    self.more = false;
                    return Ok(None);
                }
                return Ok(Some(c));
            }
            if !self.more {
                return Ok(None);
            }
            self.fetch(store).await?;
        }
    }
}

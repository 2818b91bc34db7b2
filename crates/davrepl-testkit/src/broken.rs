//! Deliberately broken stores, to prove the conformance cases can fail.
//!
//! A case that passes against every store, broken or not, protects nothing. [`Broken`] wraps a
//! correct store (normally [`MemStore`](davrepl_store::MemStore)) and injects one [`Fault`]
//! that a real backend could plausibly have; the testkit's own self-test runs the cases meant
//! to catch each fault and asserts that they fail. Backend authors can use the same wrappers to
//! check that a case they add bites.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use davrepl_store::{
    ByteStream, Capabilities, ChangeKind, ChangePage, ChangesQuery, Condition, CreateOptions,
    DeleteOptions, Depth, Entry, ErrorKind, GetOptions, ListOptions, Listing, Meta, PatchOptions,
    PropPatch, PurgeReport, PutOptions, ReplStore, ResourcePath, Secret, StoreError, StoreId,
    StoreResult, Tokens, TransferOptions, WriteOutcome,
};

/// The fault a [`Broken`] store injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Evaluates the condition, then writes unconditionally, with a blocking pause (a
    /// synchronous backend doing I/O between its check and its write, with no transaction).
    CheckThenWriteBlocking,
    /// Evaluates the condition, then writes unconditionally after yielding to the runtime
    /// (an async backend that awaits between its check and its write).
    CheckThenWriteYielding,
    /// Drops every condition: every conditional write succeeds.
    IgnoresConditions,
    /// Publishes log rows out of commit order: every fifth sequence number stays invisible for
    /// a while after later rows (and a watermark above it) have been handed out, so a reader
    /// that follows the watermark never sees it.
    OutOfOrderLog,
    /// Records a tombstone for a deleted collection but not for the members deleted with it.
    LosesMemberTombstones,
    /// Claims it cannot store dead properties or copy shallowly, but does both anyway.
    UnderstatesCapabilities,
}

/// A store that delegates to `inner` except for one injected [`Fault`].
#[derive(Debug, Clone)]
pub struct Broken<S> {
    inner: S,
    fault: Fault,
    state: Arc<Mutex<FaultState>>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// [`Fault::OutOfOrderLog`]: when each withheld sequence number was first asked for.
    first_seen: HashMap<u64, Instant>,
    /// [`Fault::LosesMemberTombstones`]: repl-uid counters whose tombstones are "lost".
    lost: HashSet<u64>,
}

/// How long [`Fault::OutOfOrderLog`] keeps a row invisible.
const LATE_FOR: Duration = Duration::from_millis(30);

impl<S: ReplStore> Broken<S> {
    /// Wraps `inner` with `fault`.
    pub fn new(inner: S, fault: Fault) -> Self {
        Self {
            inner,
            fault,
            state: Arc::default(),
        }
    }

    /// The fault this store injects.
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// The condition to hand to the inner store, after the fault had its way with it.
    async fn condition(&self, cond: &Condition, target: &ResourcePath) -> StoreResult<Condition> {
        match self.fault {
            Fault::IgnoresConditions => Ok(Condition::none()),
            Fault::CheckThenWriteBlocking | Fault::CheckThenWriteYielding => {
                let mut states: HashMap<ResourcePath, Option<Tokens>> = HashMap::new();
                for p in cond.paths(target) {
                    let state = match self.inner.head(&p).await {
                        Ok(m) => Some(m.tokens()),
                        Err(e) if e.kind() == ErrorKind::NotFound => None,
                        Err(e) => return Err(e),
                    };
                    states.insert(p, state);
                }
                if !cond.evaluate(target, |p| states.get(p).cloned().flatten()) {
                    return Err(StoreError::new(
                        ErrorKind::PreconditionFailed,
                        "condition is false",
                    ));
                }
                if self.fault == Fault::CheckThenWriteBlocking {
                    std::thread::sleep(Duration::from_millis(10));
                } else {
                    tokio::task::yield_now().await;
                }
                Ok(Condition::none())
            }
            _ => Ok(cond.clone()),
        }
    }
}

impl<S: ReplStore> ReplStore for Broken<S> {
    fn store_id(&self) -> StoreId {
        self.inner.store_id()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        if self.fault == Fault::UnderstatesCapabilities {
            caps.dead_properties = false;
            caps.shallow_copy = false;
        }
        caps
    }

    async fn secret(&self) -> StoreResult<Secret> {
        self.inner.secret().await
    }

    async fn head(&self, path: &ResourcePath) -> StoreResult<Meta> {
        self.inner.head(path).await
    }

    async fn props(&self, path: &ResourcePath) -> StoreResult<Entry> {
        self.inner.props(path).await
    }

    async fn digests(&self, path: &ResourcePath) -> StoreResult<Meta> {
        self.inner.digests(path).await
    }

    async fn digests_many(&self, paths: &[ResourcePath]) -> StoreResult<Vec<StoreResult<Meta>>> {
        self.inner.digests_many(paths).await
    }

    async fn list(&self, path: &ResourcePath, opts: ListOptions) -> StoreResult<Listing> {
        self.inner.list(path, opts).await
    }

    async fn read(&self, path: &ResourcePath, opts: GetOptions) -> StoreResult<(Meta, ByteStream)> {
        self.inner.read(path, opts).await
    }

    async fn put(
        &self,
        path: &ResourcePath,
        body: ByteStream,
        mut opts: PutOptions,
    ) -> StoreResult<WriteOutcome> {
        opts.condition = self.condition(&opts.condition, path).await?;
        self.inner.put(path, body, opts).await
    }

    async fn create_collection(
        &self,
        path: &ResourcePath,
        mut opts: CreateOptions,
    ) -> StoreResult<WriteOutcome> {
        opts.condition = self.condition(&opts.condition, path).await?;
        self.inner.create_collection(path, opts).await
    }

    async fn delete(&self, path: &ResourcePath, mut opts: DeleteOptions) -> StoreResult<Meta> {
        opts.condition = self.condition(&opts.condition, path).await?;
        if self.fault == Fault::LosesMemberTombstones {
            let below = self
                .inner
                .list(path, ListOptions::new(Depth::Infinity, usize::MAX))
                .await;
            if let Ok(listing) = below {
                let mut st = self.state.lock().expect("fault state");
                st.lost
                    .extend(listing.entries.iter().map(|e| e.meta.rid.counter()));
            }
        }
        self.inner.delete(path, opts).await
    }

    async fn copy(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        mut opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        opts.condition = self.condition(&opts.condition, from).await?;
        self.inner.copy(from, to, opts).await
    }

    async fn rename(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        mut opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        opts.condition = self.condition(&opts.condition, from).await?;
        self.inner.rename(from, to, opts).await
    }

    async fn patch_props(
        &self,
        path: &ResourcePath,
        patch: Vec<PropPatch>,
        mut opts: PatchOptions,
    ) -> StoreResult<WriteOutcome> {
        opts.condition = self.condition(&opts.condition, path).await?;
        self.inner.patch_props(path, patch, opts).await
    }

    async fn watermark(&self) -> StoreResult<u64> {
        self.inner.watermark().await
    }

    async fn horizon(&self) -> StoreResult<u64> {
        self.inner.horizon().await
    }

    async fn changes(&self, query: ChangesQuery) -> StoreResult<ChangePage> {
        let mut page = self.inner.changes(query).await?;
        let mut st = self.state.lock().expect("fault state");
        match self.fault {
            Fault::OutOfOrderLog => {
                let now = Instant::now();
                page.changes.retain(|c| {
                    if c.seq % 5 != 0 {
                        return true;
                    }
                    let first = *st.first_seen.entry(c.seq).or_insert(now);
                    now.duration_since(first) >= LATE_FOR
                });
            }
            Fault::LosesMemberTombstones => {
                let lost = &st.lost;
                page.changes.retain(|c| match &c.kind {
                    ChangeKind::Removed { rid, .. } => !lost.contains(&rid.counter()),
                    ChangeKind::Upsert(_) => true,
                });
            }
            _ => {}
        }
        Ok(page)
    }

    async fn purge(&self, before: SystemTime) -> StoreResult<PurgeReport> {
        self.inner.purge(before).await
    }
}

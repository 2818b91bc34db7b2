//! A store decorator that fails on demand, so the error path of every caller (every HTTP
//! handler of the layer) can be exercised against a real store.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use davrepl_store::{
    ByteStream, Capabilities, ChangePage, ChangesQuery, CreateOptions, DeleteOptions, Entry,
    ErrorKind, GetOptions, ListOptions, Listing, Meta, PatchOptions, PropPatch, PurgeReport,
    PutOptions, ReplStore, ResourcePath, Secret, StoreError, StoreId, StoreResult, TransferOptions,
    WriteOutcome,
};

/// How a [`FaultyStore`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Every call returns an error of this kind (the message names the operation, so a test
    /// can check it never reaches a client when the kind is a server error).
    Calls(ErrorKind),
    /// Content reads succeed (the response head goes out), then the content stream fails
    /// before its first byte.
    MidStream,
}

/// Delegates to `inner` until told to fail; see [`Failure`].
#[derive(Debug, Clone)]
pub struct FaultyStore<S> {
    inner: S,
    failure: Arc<Mutex<Option<Failure>>>,
    /// A change signal nobody fires, handed out instead of the inner store's.
    deaf: Option<davrepl_store::ChangeSignal>,
}

/// Text every injected error carries, for tests that check it stays out of responses.
pub const INJECTED: &str = "injected store failure";

impl<S: ReplStore> FaultyStore<S> {
    /// Wraps `inner`, not failing yet.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            failure: Arc::default(),
            deaf: None,
        }
    }

    /// Drops every change notification: readers get a change signal that never fires, as if
    /// every wake-up were lost. They must still see every change (later).
    #[must_use]
    pub fn dropping_notifications(mut self) -> Self {
        self.deaf = Some(davrepl_store::ChangeSignal::new());
        self
    }

    /// From now on, fails as `failure` says (`None`: works again). Shared by all clones.
    pub fn fail(&self, failure: Option<Failure>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = failure;
    }

    fn check(&self, op: &str) -> StoreResult<()> {
        match *self.failure.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(Failure::Calls(kind)) => Err(StoreError::new(kind, format!("{INJECTED} in {op}"))),
            _ => Ok(()),
        }
    }

    fn mid_stream(&self) -> bool {
        matches!(
            *self.failure.lock().unwrap_or_else(|e| e.into_inner()),
            Some(Failure::MidStream)
        )
    }
}

impl<S: ReplStore> ReplStore for FaultyStore<S> {
    fn store_id(&self) -> StoreId {
        self.inner.store_id()
    }

    fn capabilities(&self) -> Capabilities {
        // Locks and subscriptions are not forwarded by this decorator.
        let mut caps = self.inner.capabilities();
        caps.locking = false;
        caps.subscriptions = false;
        caps
    }

    fn change_signal(&self) -> Option<davrepl_store::ChangeSignal> {
        match &self.deaf {
            Some(s) => Some(s.clone()),
            None => self.inner.change_signal(),
        }
    }

    async fn secret(&self) -> StoreResult<Secret> {
        self.check("secret")?;
        self.inner.secret().await
    }

    async fn head(&self, path: &ResourcePath) -> StoreResult<Meta> {
        self.check("head")?;
        self.inner.head(path).await
    }

    async fn props(&self, path: &ResourcePath) -> StoreResult<Entry> {
        self.check("props")?;
        self.inner.props(path).await
    }

    async fn digests(&self, path: &ResourcePath) -> StoreResult<Meta> {
        self.check("digests")?;
        self.inner.digests(path).await
    }

    async fn digests_many(&self, paths: &[ResourcePath]) -> StoreResult<Vec<StoreResult<Meta>>> {
        self.check("digests")?;
        self.inner.digests_many(paths).await
    }

    async fn list(&self, path: &ResourcePath, opts: ListOptions) -> StoreResult<Listing> {
        self.check("list")?;
        self.inner.list(path, opts).await
    }

    async fn read(&self, path: &ResourcePath, opts: GetOptions) -> StoreResult<(Meta, ByteStream)> {
        self.check("read")?;
        let (meta, stream) = self.inner.read(path, opts).await?;
        if !self.mid_stream() {
            return Ok((meta, stream));
        }
        let first = futures_util::StreamExt::take(stream, 0);
        let broken = futures_util::stream::iter([Err::<Bytes, _>(StoreError::new(
            ErrorKind::Internal,
            format!("{INJECTED} while streaming"),
        ))]);
        Ok((
            meta,
            Box::pin(futures_util::StreamExt::chain(first, broken)),
        ))
    }

    async fn put(
        &self,
        path: &ResourcePath,
        body: ByteStream,
        opts: PutOptions,
    ) -> StoreResult<WriteOutcome> {
        self.check("put")?;
        self.inner.put(path, body, opts).await
    }

    async fn create_collection(
        &self,
        path: &ResourcePath,
        opts: CreateOptions,
    ) -> StoreResult<WriteOutcome> {
        self.check("create_collection")?;
        self.inner.create_collection(path, opts).await
    }

    async fn delete(&self, path: &ResourcePath, opts: DeleteOptions) -> StoreResult<Meta> {
        self.check("delete")?;
        self.inner.delete(path, opts).await
    }

    async fn copy(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        self.check("copy")?;
        self.inner.copy(from, to, opts).await
    }

    async fn rename(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        self.check("rename")?;
        self.inner.rename(from, to, opts).await
    }

    async fn patch_props(
        &self,
        path: &ResourcePath,
        patch: Vec<PropPatch>,
        opts: PatchOptions,
    ) -> StoreResult<WriteOutcome> {
        self.check("patch_props")?;
        self.inner.patch_props(path, patch, opts).await
    }

    async fn watermark(&self) -> StoreResult<u64> {
        self.check("watermark")?;
        self.inner.watermark().await
    }

    async fn horizon(&self) -> StoreResult<u64> {
        self.check("horizon")?;
        self.inner.horizon().await
    }

    async fn changes(&self, query: ChangesQuery) -> StoreResult<ChangePage> {
        self.check("changes")?;
        self.inner.changes(query).await
    }

    async fn purge(&self, before: SystemTime) -> StoreResult<PurgeReport> {
        self.check("purge")?;
        self.inner.purge(before).await
    }
}

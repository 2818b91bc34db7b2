//! `NotesStore`: a [`ReplStore`] that keeps the application's own map of notes in step with
//! what WebDAV clients write into it (its top-level items are the notes).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use davrepl_store::{
    ByteStream, Capabilities, ChangeKind, ChangePage, ChangesQuery, CreateOptions, DeleteOptions,
    Depth, Entry, GetOptions, ListOptions, Listing, MemStore, Meta, PatchOptions, PropPatch,
    PurgeReport, PutOptions, ReplStore, ResourcePath, Secret, Seq, StoreId, StoreResult,
    TransferOptions, WriteOutcome,
};
use futures_util::StreamExt;

#[derive(Default)]
struct Mirror {
    notes: BTreeMap<String, String>,
    seen: Seq,
}

/// The store. Cloning gives another handle to the same data.
#[derive(Clone, Default)]
pub struct NotesStore {
    inner: MemStore,
    mirror: Arc<Mutex<Mirror>>,
}

impl std::fmt::Debug for NotesStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotesStore").finish_non_exhaustive()
    }
}

impl NotesStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The application's view: note name → text.
    pub fn notes(&self) -> BTreeMap<String, String> {
        self.mirror
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .notes
            .clone()
    }

    /// Applies every change to the store's top-level items since the last one seen to the map.
    async fn follow(&self) -> StoreResult<()> {
        let scope = ResourcePath::root();
        loop {
            let since = self.mirror.lock().unwrap_or_else(|e| e.into_inner()).seen;
            let page = match self
                .inner
                .changes(ChangesQuery::new(scope.clone(), Depth::One, since, 256))
                .await
            {
                Ok(p) => p,
                Err(e) if e.kind() == davrepl_store::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            let mut updates = Vec::new();
            for c in &page.changes {
                match &c.kind {
                    ChangeKind::Upsert(m) if !m.is_collection() => {
                        let text = match self.inner.read(&m.path, Default::default()).await {
                            Ok((_, mut s)) => {
                                let mut buf = Vec::new();
                                while let Some(chunk) = s.next().await {
                                    buf.extend_from_slice(&chunk?);
                                }
                                Some(String::from_utf8_lossy(&buf).into_owned())
                            }
                            Err(_) => None, // gone again; a later row says so
                        };
                        updates.push((m.path.name().to_owned(), text));
                    }
                    ChangeKind::Removed { path, .. } => {
                        updates.push((path.name().to_owned(), None));
                    }
                    ChangeKind::Upsert(_) => {}
                }
            }
            let mut mirror = self.mirror.lock().unwrap_or_else(|e| e.into_inner());
            if mirror.seen != since {
                continue; // another writer advanced it meanwhile; read again from there
            }
            for (name, text) in updates {
                match text {
                    Some(t) => mirror.notes.insert(name, t),
                    None => mirror.notes.remove(&name),
                };
            }
            mirror.seen = page.watermark;
            if !page.more {
                return Ok(());
            }
        }
    }

    async fn after<T>(&self, r: StoreResult<T>) -> StoreResult<T> {
        if r.is_ok() {
            self.follow().await?;
        }
        r
    }
}

impl ReplStore for NotesStore {
    fn store_id(&self) -> StoreId {
        self.inner.store_id()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
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
        opts: PutOptions,
    ) -> StoreResult<WriteOutcome> {
        let r = self.inner.put(path, body, opts).await;
        self.after(r).await
    }
    async fn create_collection(
        &self,
        path: &ResourcePath,
        opts: CreateOptions,
    ) -> StoreResult<WriteOutcome> {
        let r = self.inner.create_collection(path, opts).await;
        self.after(r).await
    }
    async fn delete(&self, path: &ResourcePath, opts: DeleteOptions) -> StoreResult<Meta> {
        let r = self.inner.delete(path, opts).await;
        self.after(r).await
    }
    async fn copy(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        let r = self.inner.copy(from, to, opts).await;
        self.after(r).await
    }
    async fn rename(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        let r = self.inner.rename(from, to, opts).await;
        self.after(r).await
    }
    async fn patch_props(
        &self,
        path: &ResourcePath,
        patch: Vec<PropPatch>,
        opts: PatchOptions,
    ) -> StoreResult<WriteOutcome> {
        let r = self.inner.patch_props(path, patch, opts).await;
        self.after(r).await
    }
    async fn watermark(&self) -> StoreResult<Seq> {
        self.inner.watermark().await
    }
    async fn changes(&self, query: ChangesQuery) -> StoreResult<ChangePage> {
        self.inner.changes(query).await
    }
    async fn purge(&self, before: SystemTime) -> StoreResult<PurgeReport> {
        self.inner.purge(before).await
    }
}

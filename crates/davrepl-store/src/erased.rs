//! Stores behind pointers: forwarding impls for `Arc<T>` and `Box<T>`, and [`DynStore`], a
//! type-erased store, so that code generic over [`ReplStore`] (a whole HTTP request path) is
//! compiled once for every backend it may run on instead of once per backend type.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use crate::{
    ByteStream, Capabilities, ChangePage, ChangesQuery, CreateOptions, DeleteOptions, Entry,
    GetOptions, ListOptions, Listing, Meta, PatchOptions, PropPatch, PurgeReport, PutOptions,
    ReplStore, ResourcePath, Secret, Seq, StoreId, StoreResult, TransferOptions, WriteOutcome,
};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Every [`ReplStore`] method, once more, in object-safe form (boxed futures). Implemented for
/// every `ReplStore`; use it through [`DynStore`].
pub trait DynReplStore: Send + Sync + 'static {
    /// See [`ReplStore::store_id`].
    fn store_id(&self) -> StoreId;
    /// See [`ReplStore::capabilities`].
    fn capabilities(&self) -> Capabilities;
    /// See [`ReplStore::secret`].
    fn secret(&self) -> BoxFuture<'_, StoreResult<Secret>>;
    /// See [`ReplStore::head`].
    fn head<'a>(&'a self, path: &'a ResourcePath) -> BoxFuture<'a, StoreResult<Meta>>;
    /// See [`ReplStore::props`].
    fn props<'a>(&'a self, path: &'a ResourcePath) -> BoxFuture<'a, StoreResult<Entry>>;
    /// See [`ReplStore::list`].
    fn list<'a>(
        &'a self,
        path: &'a ResourcePath,
        opts: ListOptions,
    ) -> BoxFuture<'a, StoreResult<Listing>>;
    /// See [`ReplStore::read`].
    fn read<'a>(
        &'a self,
        path: &'a ResourcePath,
        opts: GetOptions,
    ) -> BoxFuture<'a, StoreResult<(Meta, ByteStream)>>;
    /// See [`ReplStore::put`].
    fn put<'a>(
        &'a self,
        path: &'a ResourcePath,
        body: ByteStream,
        opts: PutOptions,
    ) -> BoxFuture<'a, StoreResult<WriteOutcome>>;
    /// See [`ReplStore::create_collection`].
    fn create_collection<'a>(
        &'a self,
        path: &'a ResourcePath,
        opts: CreateOptions,
    ) -> BoxFuture<'a, StoreResult<WriteOutcome>>;
    /// See [`ReplStore::delete`].
    fn delete<'a>(
        &'a self,
        path: &'a ResourcePath,
        opts: DeleteOptions,
    ) -> BoxFuture<'a, StoreResult<Meta>>;
    /// See [`ReplStore::copy`].
    fn copy<'a>(
        &'a self,
        from: &'a ResourcePath,
        to: &'a ResourcePath,
        opts: TransferOptions,
    ) -> BoxFuture<'a, StoreResult<WriteOutcome>>;
    /// See [`ReplStore::rename`].
    fn rename<'a>(
        &'a self,
        from: &'a ResourcePath,
        to: &'a ResourcePath,
        opts: TransferOptions,
    ) -> BoxFuture<'a, StoreResult<WriteOutcome>>;
    /// See [`ReplStore::patch_props`].
    fn patch_props<'a>(
        &'a self,
        path: &'a ResourcePath,
        patch: Vec<PropPatch>,
        opts: PatchOptions,
    ) -> BoxFuture<'a, StoreResult<WriteOutcome>>;
    /// See [`ReplStore::watermark`].
    fn watermark(&self) -> BoxFuture<'_, StoreResult<Seq>>;
    /// See [`ReplStore::changes`].
    fn changes(&self, query: ChangesQuery) -> BoxFuture<'_, StoreResult<ChangePage>>;
    /// See [`ReplStore::purge`].
    fn purge(&self, before: SystemTime) -> BoxFuture<'_, StoreResult<PurgeReport>>;
}

impl<T: ReplStore> DynReplStore for T {
    fn store_id(&self) -> StoreId {
        ReplStore::store_id(self)
    }
    fn capabilities(&self) -> Capabilities {
        ReplStore::capabilities(self)
    }
    fn secret(&self) -> BoxFuture<'_, StoreResult<Secret>> {
        Box::pin(ReplStore::secret(self))
    }
    fn head<'a>(&'a self, path: &'a ResourcePath) -> BoxFuture<'a, StoreResult<Meta>> {
        Box::pin(ReplStore::head(self, path))
    }
    fn props<'a>(&'a self, path: &'a ResourcePath) -> BoxFuture<'a, StoreResult<Entry>> {
        Box::pin(ReplStore::props(self, path))
    }
    fn list<'a>(
        &'a self,
        path: &'a ResourcePath,
        opts: ListOptions,
    ) -> BoxFuture<'a, StoreResult<Listing>> {
        Box::pin(ReplStore::list(self, path, opts))
    }
    fn read<'a>(
        &'a self,
        path: &'a ResourcePath,
        opts: GetOptions,
    ) -> BoxFuture<'a, StoreResult<(Meta, ByteStream)>> {
        Box::pin(ReplStore::read(self, path, opts))
    }
    fn put<'a>(
        &'a self,
        path: &'a ResourcePath,
        body: ByteStream,
        opts: PutOptions,
    ) -> BoxFuture<'a, StoreResult<WriteOutcome>> {
        Box::pin(ReplStore::put(self, path, body, opts))
    }
    fn create_collection<'a>(
        &'a self,
        path: &'a ResourcePath,
        opts: CreateOptions,
    ) -> BoxFuture<'a, StoreResult<WriteOutcome>> {
        Box::pin(ReplStore::create_collection(self, path, opts))
    }
    fn delete<'a>(
        &'a self,
        path: &'a ResourcePath,
        opts: DeleteOptions,
    ) -> BoxFuture<'a, StoreResult<Meta>> {
        Box::pin(ReplStore::delete(self, path, opts))
    }
    fn copy<'a>(
        &'a self,
        from: &'a ResourcePath,
        to: &'a ResourcePath,
        opts: TransferOptions,
    ) -> BoxFuture<'a, StoreResult<WriteOutcome>> {
        Box::pin(ReplStore::copy(self, from, to, opts))
    }
    fn rename<'a>(
        &'a self,
        from: &'a ResourcePath,
        to: &'a ResourcePath,
        opts: TransferOptions,
    ) -> BoxFuture<'a, StoreResult<WriteOutcome>> {
        Box::pin(ReplStore::rename(self, from, to, opts))
    }
    fn patch_props<'a>(
        &'a self,
        path: &'a ResourcePath,
        patch: Vec<PropPatch>,
        opts: PatchOptions,
    ) -> BoxFuture<'a, StoreResult<WriteOutcome>> {
        Box::pin(ReplStore::patch_props(self, path, patch, opts))
    }
    fn watermark(&self) -> BoxFuture<'_, StoreResult<Seq>> {
        Box::pin(ReplStore::watermark(self))
    }
    fn changes(&self, query: ChangesQuery) -> BoxFuture<'_, StoreResult<ChangePage>> {
        Box::pin(ReplStore::changes(self, query))
    }
    fn purge(&self, before: SystemTime) -> BoxFuture<'_, StoreResult<PurgeReport>> {
        Box::pin(ReplStore::purge(self, before))
    }
}

/// Any store, type-erased: `DynStore::new(SqliteStore::open(…).await?)`. Cloning shares the
/// store. Each call costs one boxed future; in exchange, a service generic over `ReplStore`
/// is compiled once for all the backends a program may choose at run time.
#[derive(Clone)]
pub struct DynStore(Arc<dyn DynReplStore>);

impl std::fmt::Debug for DynStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DynStore").field(&self.0.store_id()).finish()
    }
}

impl DynStore {
    /// Erases `store`'s type.
    pub fn new(store: impl ReplStore) -> Self {
        Self(Arc::new(store))
    }
}

/// Forwards every method to the value behind a pointer (`$ptr<T>`), or to the erased store.
macro_rules! forward {
    ($(#[$m:meta])* impl[$($g:tt)*] for $ty:ty => |$s:ident| $inner:expr) => {
        $(#[$m])*
        impl<$($g)*> ReplStore for $ty {
            fn store_id(&self) -> StoreId {
                let $s = self;
                $inner.store_id()
            }
            fn capabilities(&self) -> Capabilities {
                let $s = self;
                $inner.capabilities()
            }
            async fn secret(&self) -> StoreResult<Secret> {
                let $s = self;
                $inner.secret().await
            }
            async fn head(&self, path: &ResourcePath) -> StoreResult<Meta> {
                let $s = self;
                $inner.head(path).await
            }
            async fn props(&self, path: &ResourcePath) -> StoreResult<Entry> {
                let $s = self;
                $inner.props(path).await
            }
            async fn list(&self, path: &ResourcePath, opts: ListOptions) -> StoreResult<Listing> {
                let $s = self;
                $inner.list(path, opts).await
            }
            async fn read(
                &self,
                path: &ResourcePath,
                opts: GetOptions,
            ) -> StoreResult<(Meta, ByteStream)> {
                let $s = self;
                $inner.read(path, opts).await
            }
            async fn put(
                &self,
                path: &ResourcePath,
                body: ByteStream,
                opts: PutOptions,
            ) -> StoreResult<WriteOutcome> {
                let $s = self;
                $inner.put(path, body, opts).await
            }
            async fn create_collection(
                &self,
                path: &ResourcePath,
                opts: CreateOptions,
            ) -> StoreResult<WriteOutcome> {
                let $s = self;
                $inner.create_collection(path, opts).await
            }
            async fn delete(&self, path: &ResourcePath, opts: DeleteOptions) -> StoreResult<Meta> {
                let $s = self;
                $inner.delete(path, opts).await
            }
            async fn copy(
                &self,
                from: &ResourcePath,
                to: &ResourcePath,
                opts: TransferOptions,
            ) -> StoreResult<WriteOutcome> {
                let $s = self;
                $inner.copy(from, to, opts).await
            }
            async fn rename(
                &self,
                from: &ResourcePath,
                to: &ResourcePath,
                opts: TransferOptions,
            ) -> StoreResult<WriteOutcome> {
                let $s = self;
                $inner.rename(from, to, opts).await
            }
            async fn patch_props(
                &self,
                path: &ResourcePath,
                patch: Vec<PropPatch>,
                opts: PatchOptions,
            ) -> StoreResult<WriteOutcome> {
                let $s = self;
                $inner.patch_props(path, patch, opts).await
            }
            async fn watermark(&self) -> StoreResult<Seq> {
                let $s = self;
                $inner.watermark().await
            }
            async fn changes(&self, query: ChangesQuery) -> StoreResult<ChangePage> {
                let $s = self;
                $inner.changes(query).await
            }
            async fn purge(&self, before: SystemTime) -> StoreResult<PurgeReport> {
                let $s = self;
                $inner.purge(before).await
            }
        }
    };
}

forward!(impl[T: ReplStore] for Arc<T> => |s| (**s));
forward!(impl[T: ReplStore] for Box<T> => |s| (**s));
forward!(impl[] for DynStore => |s| (*s.0));

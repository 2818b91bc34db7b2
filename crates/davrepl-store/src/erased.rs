//! Stores behind pointers: forwarding impls for `Arc<T>` and `Box<T>`, and [`DynStore`], a
//! type-erased store, so that code generic over [`ReplStore`] (a whole HTTP request path) is
//! compiled once for every backend it may run on instead of once per backend type.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{
    ByteStream, Capabilities, ChangePage, ChangesQuery, Condition, CreateOptions, DeleteOptions,
    Entry, GetOptions, ListOptions, Listing, Lock, LockGrant, LockRequest, Meta, PatchOptions,
    PropPatch, PurgeReport, PutOptions, ReplStore, ResourcePath, Secret, Seq, StoreId, StoreResult,
    TransferOptions, WriteOutcome,
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
    /// See [`ReplStore::change_signal`].
    fn change_signal(&self) -> Option<crate::ChangeSignal>;
    /// See [`ReplStore::usage`].
    fn usage(&self) -> BoxFuture<'_, StoreResult<Option<u64>>>;
    /// See [`ReplStore::watermark`].
    fn watermark(&self) -> BoxFuture<'_, StoreResult<Seq>>;
    /// See [`ReplStore::horizon`].
    fn horizon(&self) -> BoxFuture<'_, StoreResult<Seq>>;
    /// See [`ReplStore::changes`].
    fn changes(&self, query: ChangesQuery) -> BoxFuture<'_, StoreResult<ChangePage>>;
    /// See [`ReplStore::purge`].
    fn purge(&self, before: SystemTime) -> BoxFuture<'_, StoreResult<PurgeReport>>;
    /// See [`ReplStore::lock`].
    fn lock<'a>(
        &'a self,
        path: &'a ResourcePath,
        req: LockRequest,
    ) -> BoxFuture<'a, StoreResult<LockGrant>>;
    /// See [`ReplStore::refresh_lock`].
    fn refresh_lock<'a>(
        &'a self,
        path: &'a ResourcePath,
        cond: Condition,
        timeout: Duration,
    ) -> BoxFuture<'a, StoreResult<Lock>>;
    /// See [`ReplStore::unlock`].
    fn unlock<'a>(
        &'a self,
        path: &'a ResourcePath,
        token: &'a str,
        principal: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<Lock>>;
    /// See [`ReplStore::subscribe`].
    fn subscribe(
        &self,
        req: crate::NewSubscription,
    ) -> BoxFuture<'_, StoreResult<crate::Subscription>>;
    /// See [`ReplStore::subscriptions`].
    fn subscriptions(
        &self,
        ids: Vec<u64>,
        principal: Option<String>,
    ) -> BoxFuture<'_, StoreResult<Vec<crate::Subscription>>>;
    /// See [`ReplStore::update_subscription`].
    fn update_subscription(
        &self,
        id: u64,
        principal: Option<String>,
        update: crate::SubscriptionUpdate,
    ) -> BoxFuture<'_, StoreResult<crate::Subscription>>;
    /// See [`ReplStore::unsubscribe`].
    fn unsubscribe(&self, id: u64, principal: Option<String>) -> BoxFuture<'_, StoreResult<()>>;
    /// See [`ReplStore::locks`].
    fn locks<'a>(
        &'a self,
        path: &'a ResourcePath,
        below: bool,
    ) -> BoxFuture<'a, StoreResult<Vec<Lock>>>;
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
    fn change_signal(&self) -> Option<crate::ChangeSignal> {
        ReplStore::change_signal(self)
    }
    fn usage(&self) -> BoxFuture<'_, StoreResult<Option<u64>>> {
        Box::pin(ReplStore::usage(self))
    }
    fn watermark(&self) -> BoxFuture<'_, StoreResult<Seq>> {
        Box::pin(ReplStore::watermark(self))
    }
    fn horizon(&self) -> BoxFuture<'_, StoreResult<Seq>> {
        Box::pin(ReplStore::horizon(self))
    }
    fn changes(&self, query: ChangesQuery) -> BoxFuture<'_, StoreResult<ChangePage>> {
        Box::pin(ReplStore::changes(self, query))
    }
    fn purge(&self, before: SystemTime) -> BoxFuture<'_, StoreResult<PurgeReport>> {
        Box::pin(ReplStore::purge(self, before))
    }
    fn lock<'a>(
        &'a self,
        path: &'a ResourcePath,
        req: LockRequest,
    ) -> BoxFuture<'a, StoreResult<LockGrant>> {
        Box::pin(ReplStore::lock(self, path, req))
    }
    fn refresh_lock<'a>(
        &'a self,
        path: &'a ResourcePath,
        cond: Condition,
        timeout: Duration,
    ) -> BoxFuture<'a, StoreResult<Lock>> {
        Box::pin(ReplStore::refresh_lock(self, path, cond, timeout))
    }
    fn unlock<'a>(
        &'a self,
        path: &'a ResourcePath,
        token: &'a str,
        principal: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<Lock>> {
        Box::pin(ReplStore::unlock(self, path, token, principal))
    }
    fn locks<'a>(
        &'a self,
        path: &'a ResourcePath,
        below: bool,
    ) -> BoxFuture<'a, StoreResult<Vec<Lock>>> {
        Box::pin(ReplStore::locks(self, path, below))
    }
    fn subscribe(
        &self,
        req: crate::NewSubscription,
    ) -> BoxFuture<'_, StoreResult<crate::Subscription>> {
        Box::pin(ReplStore::subscribe(self, req))
    }
    fn subscriptions(
        &self,
        ids: Vec<u64>,
        principal: Option<String>,
    ) -> BoxFuture<'_, StoreResult<Vec<crate::Subscription>>> {
        Box::pin(ReplStore::subscriptions(self, ids, principal))
    }
    fn update_subscription(
        &self,
        id: u64,
        principal: Option<String>,
        update: crate::SubscriptionUpdate,
    ) -> BoxFuture<'_, StoreResult<crate::Subscription>> {
        Box::pin(ReplStore::update_subscription(self, id, principal, update))
    }
    fn unsubscribe(&self, id: u64, principal: Option<String>) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(ReplStore::unsubscribe(self, id, principal))
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

/// Implements [`$crate::ReplStore`] for a type by forwarding every method to a store it holds.
///
/// ```
/// use davrepl_store::{MemStore, forward_repl_store};
///
/// /// A store type of the application's own that adds nothing to the behaviour.
/// #[derive(Clone, Default)]
/// pub struct AppStore {
///     inner: MemStore,
/// }
///
/// forward_repl_store!(impl[] for AppStore => |s| (s.inner));
/// ```
#[macro_export]
macro_rules! forward_repl_store {
    ($(#[$m:meta])* impl[$($g:tt)*] for $ty:ty => |$s:ident| $inner:expr) => {
        $crate::forward_repl_store!($(#[$m])* impl[$($g)*] for $ty => |$s| $inner, via [$crate::ReplStore]);
    };
    ($(#[$m:meta])* impl[$($g:tt)*] for $ty:ty => |$s:ident| $inner:expr, via [$($via:tt)+]) => {
        $(#[$m])*
        impl<$($g)*> $crate::ReplStore for $ty {
            fn store_id(&self) -> $crate::StoreId {
                let $s = self;
                $($via)+::store_id(&$inner)
            }
            fn capabilities(&self) -> $crate::Capabilities {
                let $s = self;
                $($via)+::capabilities(&$inner)
            }
            async fn secret(&self) -> $crate::StoreResult<$crate::Secret> {
                let $s = self;
                $($via)+::secret(&$inner).await
            }
            async fn head(&self, path: &$crate::ResourcePath) -> $crate::StoreResult<$crate::Meta> {
                let $s = self;
                $($via)+::head(&$inner, path).await
            }
            async fn props(&self, path: &$crate::ResourcePath) -> $crate::StoreResult<$crate::Entry> {
                let $s = self;
                $($via)+::props(&$inner, path).await
            }
            async fn list(&self, path: &$crate::ResourcePath, opts: $crate::ListOptions) -> $crate::StoreResult<$crate::Listing> {
                let $s = self;
                $($via)+::list(&$inner, path, opts).await
            }
            async fn read(
                &self,
                path: &$crate::ResourcePath,
                opts: $crate::GetOptions,
            ) -> $crate::StoreResult<($crate::Meta, $crate::ByteStream)> {
                let $s = self;
                $($via)+::read(&$inner, path, opts).await
            }
            async fn put(
                &self,
                path: &$crate::ResourcePath,
                body: $crate::ByteStream,
                opts: $crate::PutOptions,
            ) -> $crate::StoreResult<$crate::WriteOutcome> {
                let $s = self;
                $($via)+::put(&$inner, path, body, opts).await
            }
            async fn create_collection(
                &self,
                path: &$crate::ResourcePath,
                opts: $crate::CreateOptions,
            ) -> $crate::StoreResult<$crate::WriteOutcome> {
                let $s = self;
                $($via)+::create_collection(&$inner, path, opts).await
            }
            async fn delete(&self, path: &$crate::ResourcePath, opts: $crate::DeleteOptions) -> $crate::StoreResult<$crate::Meta> {
                let $s = self;
                $($via)+::delete(&$inner, path, opts).await
            }
            async fn copy(
                &self,
                from: &$crate::ResourcePath,
                to: &$crate::ResourcePath,
                opts: $crate::TransferOptions,
            ) -> $crate::StoreResult<$crate::WriteOutcome> {
                let $s = self;
                $($via)+::copy(&$inner, from, to, opts).await
            }
            async fn rename(
                &self,
                from: &$crate::ResourcePath,
                to: &$crate::ResourcePath,
                opts: $crate::TransferOptions,
            ) -> $crate::StoreResult<$crate::WriteOutcome> {
                let $s = self;
                $($via)+::rename(&$inner, from, to, opts).await
            }
            async fn patch_props(
                &self,
                path: &$crate::ResourcePath,
                patch: ::std::vec::Vec<$crate::PropPatch>,
                opts: $crate::PatchOptions,
            ) -> $crate::StoreResult<$crate::WriteOutcome> {
                let $s = self;
                $($via)+::patch_props(&$inner, path, patch, opts).await
            }
            fn change_signal(&self) -> ::std::option::Option<$crate::ChangeSignal> {
                let $s = self;
                $($via)+::change_signal(&$inner)
            }
            async fn usage(&self) -> $crate::StoreResult<::std::option::Option<u64>> {
                let $s = self;
                $($via)+::usage(&$inner).await
            }
            async fn watermark(&self) -> $crate::StoreResult<$crate::Seq> {
                let $s = self;
                $($via)+::watermark(&$inner).await
            }
            async fn horizon(&self) -> $crate::StoreResult<$crate::Seq> {
                let $s = self;
                $($via)+::horizon(&$inner).await
            }
            async fn changes(&self, query: $crate::ChangesQuery) -> $crate::StoreResult<$crate::ChangePage> {
                let $s = self;
                $($via)+::changes(&$inner, query).await
            }
            async fn purge(&self, before: ::std::time::SystemTime) -> $crate::StoreResult<$crate::PurgeReport> {
                let $s = self;
                $($via)+::purge(&$inner, before).await
            }
            async fn lock(
                &self,
                path: &$crate::ResourcePath,
                req: $crate::LockRequest,
            ) -> $crate::StoreResult<$crate::LockGrant> {
                let $s = self;
                $($via)+::lock(&$inner, path, req).await
            }
            async fn refresh_lock(
                &self,
                path: &$crate::ResourcePath,
                cond: $crate::Condition,
                timeout: ::std::time::Duration,
            ) -> $crate::StoreResult<$crate::Lock> {
                let $s = self;
                $($via)+::refresh_lock(&$inner, path, cond, timeout).await
            }
            async fn unlock(
                &self,
                path: &$crate::ResourcePath,
                token: &str,
                principal: ::std::option::Option<&str>,
            ) -> $crate::StoreResult<$crate::Lock> {
                let $s = self;
                $($via)+::unlock(&$inner, path, token, principal).await
            }
            async fn locks(
                &self,
                path: &$crate::ResourcePath,
                below: bool,
            ) -> $crate::StoreResult<::std::vec::Vec<$crate::Lock>> {
                let $s = self;
                $($via)+::locks(&$inner, path, below).await
            }
            async fn subscribe(
                &self,
                req: $crate::NewSubscription,
            ) -> $crate::StoreResult<$crate::Subscription> {
                let $s = self;
                $($via)+::subscribe(&$inner, req).await
            }
            async fn subscriptions(
                &self,
                ids: ::std::vec::Vec<u64>,
                principal: ::std::option::Option<::std::string::String>,
            ) -> $crate::StoreResult<::std::vec::Vec<$crate::Subscription>> {
                let $s = self;
                $($via)+::subscriptions(&$inner, ids, principal).await
            }
            async fn update_subscription(
                &self,
                id: u64,
                principal: ::std::option::Option<::std::string::String>,
                update: $crate::SubscriptionUpdate,
            ) -> $crate::StoreResult<$crate::Subscription> {
                let $s = self;
                $($via)+::update_subscription(&$inner, id, principal, update).await
            }
            async fn unsubscribe(
                &self,
                id: u64,
                principal: ::std::option::Option<::std::string::String>,
            ) -> $crate::StoreResult<()> {
                let $s = self;
                $($via)+::unsubscribe(&$inner, id, principal).await
            }
        }
    };
}

forward_repl_store!(impl[T: ReplStore] for Arc<T> => |s| (**s));
forward_repl_store!(impl[T: ReplStore] for Box<T> => |s| (**s));
forward_repl_store!(impl[] for DynStore => |s| (*s.0), via [DynReplStore]);

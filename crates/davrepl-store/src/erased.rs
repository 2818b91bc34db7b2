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
    /// See [`ReplStore::digests`].
    fn digests<'a>(&'a self, path: &'a ResourcePath) -> BoxFuture<'a, StoreResult<Meta>>;
    /// See [`ReplStore::digests_many`].
    fn digests_many<'a>(
        &'a self,
        paths: &'a [ResourcePath],
    ) -> BoxFuture<'a, StoreResult<Vec<StoreResult<Meta>>>>;
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
    fn digests<'a>(&'a self, path: &'a ResourcePath) -> BoxFuture<'a, StoreResult<Meta>> {
        Box::pin(ReplStore::digests(self, path))
    }
    fn digests_many<'a>(
        &'a self,
        paths: &'a [ResourcePath],
    ) -> BoxFuture<'a, StoreResult<Vec<StoreResult<Meta>>>> {
        Box::pin(ReplStore::digests_many(self, paths))
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
        $crate::forward_repl_store!(@impl direct; $(#[$m])* impl[$($g)*] for $ty => |$s| $inner, via [$crate::ReplStore]);
    };
    // Through a trait whose futures are boxed with one lifetime for all their borrows (the
    // erased `DynReplStore`): each method is an `async fn` around the call.
    ($(#[$m:meta])* impl[$($g:tt)*] for $ty:ty => |$s:ident| $inner:expr, via [$($via:tt)+]) => {
        $crate::forward_repl_store!(@impl wrapped; $(#[$m])* impl[$($g)*] for $ty => |$s| $inner, via [$($via)+]);
    };
    (@impl $mode:ident; $(#[$m:meta])* impl[$($g:tt)*] for $ty:ty => |$s:ident| $inner:expr, via [$($via:tt)+]) => {
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
            fn change_signal(&self) -> ::std::option::Option<$crate::ChangeSignal> {
                let $s = self;
                $($via)+::change_signal(&$inner)
            }
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                secret() -> $crate::StoreResult<$crate::Secret>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                head(path: &$crate::ResourcePath) -> $crate::StoreResult<$crate::Meta>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                props(path: &$crate::ResourcePath) -> $crate::StoreResult<$crate::Entry>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                digests(path: &$crate::ResourcePath) -> $crate::StoreResult<$crate::Meta>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                digests_many(paths: &[$crate::ResourcePath])
                    -> $crate::StoreResult<::std::vec::Vec<$crate::StoreResult<$crate::Meta>>>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                list(path: &$crate::ResourcePath, opts: $crate::ListOptions)
                    -> $crate::StoreResult<$crate::Listing>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                read(path: &$crate::ResourcePath, opts: $crate::GetOptions)
                    -> $crate::StoreResult<($crate::Meta, $crate::ByteStream)>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                put(path: &$crate::ResourcePath, body: $crate::ByteStream, opts: $crate::PutOptions)
                    -> $crate::StoreResult<$crate::WriteOutcome>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                create_collection(path: &$crate::ResourcePath, opts: $crate::CreateOptions)
                    -> $crate::StoreResult<$crate::WriteOutcome>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                delete(path: &$crate::ResourcePath, opts: $crate::DeleteOptions)
                    -> $crate::StoreResult<$crate::Meta>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                copy(from: &$crate::ResourcePath, to: &$crate::ResourcePath, opts: $crate::TransferOptions)
                    -> $crate::StoreResult<$crate::WriteOutcome>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                rename(from: &$crate::ResourcePath, to: &$crate::ResourcePath, opts: $crate::TransferOptions)
                    -> $crate::StoreResult<$crate::WriteOutcome>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                patch_props(path: &$crate::ResourcePath, patch: ::std::vec::Vec<$crate::PropPatch>,
                    opts: $crate::PatchOptions) -> $crate::StoreResult<$crate::WriteOutcome>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                usage() -> $crate::StoreResult<::std::option::Option<u64>>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                watermark() -> $crate::StoreResult<$crate::Seq>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                horizon() -> $crate::StoreResult<$crate::Seq>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                changes(query: $crate::ChangesQuery) -> $crate::StoreResult<$crate::ChangePage>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                purge(before: ::std::time::SystemTime) -> $crate::StoreResult<$crate::PurgeReport>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                lock(path: &$crate::ResourcePath, req: $crate::LockRequest)
                    -> $crate::StoreResult<$crate::LockGrant>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                refresh_lock(path: &$crate::ResourcePath, cond: $crate::Condition,
                    timeout: ::std::time::Duration) -> $crate::StoreResult<$crate::Lock>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                unlock(path: &$crate::ResourcePath, token: &str, principal: ::std::option::Option<&str>)
                    -> $crate::StoreResult<$crate::Lock>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                locks(path: &$crate::ResourcePath, below: bool)
                    -> $crate::StoreResult<::std::vec::Vec<$crate::Lock>>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                subscribe(req: $crate::NewSubscription) -> $crate::StoreResult<$crate::Subscription>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                subscriptions(ids: ::std::vec::Vec<u64>, principal: ::std::option::Option<::std::string::String>)
                    -> $crate::StoreResult<::std::vec::Vec<$crate::Subscription>>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                update_subscription(id: u64, principal: ::std::option::Option<::std::string::String>,
                    update: $crate::SubscriptionUpdate) -> $crate::StoreResult<$crate::Subscription>);
            $crate::forward_repl_store!(@fn $mode; $s, $inner, [$($via)+];
                unsubscribe(id: u64, principal: ::std::option::Option<::std::string::String>)
                    -> $crate::StoreResult<()>);
        }
    };
    // The inner store's future itself: no state machine of its own around it, which would be
    // one more copy of that future per call.
    (@fn direct; $s:ident, $inner:expr, [$($via:tt)+]; $name:ident($($arg:ident: $t:ty),*) -> $ret:ty) => {
        fn $name(&self $(, $arg: $t)*) -> impl ::core::future::Future<Output = $ret> + ::core::marker::Send {
            let $s = self;
            $($via)+::$name(&$inner $(, $arg)*)
        }
    };
    (@fn wrapped; $s:ident, $inner:expr, [$($via:tt)+]; $name:ident($($arg:ident: $t:ty),*) -> $ret:ty) => {
        async fn $name(&self $(, $arg: $t)*) -> $ret {
            let $s = self;
            $($via)+::$name(&$inner $(, $arg)*).await
        }
    };
}

forward_repl_store!(impl[T: ReplStore] for Arc<T> => |s| (**s));
forward_repl_store!(impl[T: ReplStore] for Box<T> => |s| (**s));
forward_repl_store!(impl[] for DynStore => |s| (*s.0), via [DynReplStore]);

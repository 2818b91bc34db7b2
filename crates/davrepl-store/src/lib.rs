//! The storage contract of davrepl.
//!
//! A [`ReplStore`] holds a tree of resources (collections and items) and a **store-wide change
//! log**. Every mutation is one atomic step that:
//!
//! 1. evaluates the request's [`Condition`] against the current state (compare-and-swap:
//!    two concurrent writers conditioned on the same resourcetag give exactly one winner),
//! 2. applies the change, and
//! 3. assigns the next change sequence number(s) — one per affected resource — recording an
//!    upsert, or a tombstone for a resource that left a path.
//!
//! The change log is **gap-free**: once any reader has seen sequence number `N`, no change with a
//! smaller number may become visible later. Manifests rely on this; a gap would make every client
//! silently skip a change.
//!
//! Tokens are derived from the log: a resource's **resourcetag** names its repl-uid and the
//! sequence number of its last change; a collection's **contenttag** names the last change of
//! its direct membership. See [`tags`].
//!
//! The crate has no HTTP types. [`MemStore`] is the in-memory implementation; the
//! `davrepl-testkit` crate holds the conformance cases every store must pass.
//!
//! ```
//! use davrepl_store::{CreateOptions, MemStore, ReplStore, ResourcePath};
//! # tokio_test_block(async {
//! let store = MemStore::new();
//! let docs = ResourcePath::parse("/docs").unwrap();
//! let made = store.create_collection(&docs, CreateOptions::default()).await.unwrap();
//! assert!(made.meta.is_collection());
//! assert!(made.meta.resource_tag().starts_with("rt:"));
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

pub mod chunks;
mod condition;
mod digest;
pub mod engine;
mod erased;
mod error;
mod lock;
mod memory;
mod path;
mod signal;
mod subscription;
pub mod tags;
mod types;

use std::future::Future;
use std::time::{Duration, SystemTime};

pub use condition::{Condition, EntityMatch, IfCondition, IfList, IfResource, IfTerm, Tokens};
pub use digest::{Algorithm, Checksum, Digests, hex};
pub use erased::{BoxFuture, DynReplStore, DynStore};
pub use error::{BoxError, ErrorKind, StoreError, StoreResult};
pub use lock::{LOCK_TOKEN_SCHEME, Lock, LockGrant, LockRequest, LockScope};
pub use memory::{MemStore, Transform};
pub use path::{PathError, ResourcePath};
pub use signal::{ChangeSignal, Changed};
pub use subscription::{NewSubscription, NotificationTypes, Subscription, SubscriptionUpdate};
pub use tags::{ReplUid, Seq, StoreId};
pub use types::{
    ByteRange, ByteStream, Capabilities, Change, ChangeKind, ChangePage, ChangesQuery,
    CreateOptions, DeadProp, DeleteOptions, Depth, Entry, GetOptions, ListOptions, Listing, Meta,
    PatchOptions, PropName, PropPatch, PurgeReport, PutOptions, ResourceKind, TransferOptions,
    WriteOutcome, check_transfer_paths,
};

/// A secret shared by every node that serves one store (collblob signatures).
pub type Secret = [u8; 32];

/// The storage contract. See the crate docs for the model.
///
/// Every method returns a `Send` future so the layer works under axum, hyper and
/// `tokio::spawn`; implementations may use `async fn`. Blocking backends must move their work
/// off the async runtime (e.g. `spawn_blocking`).
///
/// Every method that changes or reads content takes an options struct in the style of
/// `object_store` (`#[non_exhaustive]`, `Default`, `From<Condition>`), so options can grow
/// without breaking implementations or callers. A [`Condition`] must be evaluated **inside the
/// same atomic step** as the write (or the read), failing with
/// [`ErrorKind::PreconditionFailed`] and no side effect when it is false. The root collection
/// `/` always exists.
pub trait ReplStore: Send + Sync + 'static {
    /// The store's identity (part of every repl-uid and resourcetag).
    fn store_id(&self) -> StoreId;

    /// What the store supports.
    fn capabilities(&self) -> Capabilities;

    /// The per-store secret used to sign collblobs; the same on every node sharing the store
    /// and across restarts.
    fn secret(&self) -> impl Future<Output = StoreResult<Secret>> + Send;

    /// Metadata of one resource ([`ErrorKind::NotFound`] if absent).
    fn head(&self, path: &ResourcePath) -> impl Future<Output = StoreResult<Meta>> + Send;

    /// Metadata and dead properties of one resource, read consistently.
    fn props(&self, path: &ResourcePath) -> impl Future<Output = StoreResult<Entry>> + Send;

    /// Members of a collection in path order, a page at a time
    /// ([`ErrorKind::NotCollection`] on an item).
    fn list(
        &self,
        path: &ResourcePath,
        opts: ListOptions,
    ) -> impl Future<Output = StoreResult<Listing>> + Send;

    /// Content of an item (optionally one byte range), with the metadata of the very state the
    /// bytes belong to. [`ErrorKind::IsCollection`] on a collection; the condition is evaluated
    /// against that same state.
    fn read(
        &self,
        path: &ResourcePath,
        opts: GetOptions,
    ) -> impl Future<Output = StoreResult<(Meta, ByteStream)>> + Send;

    /// Creates or replaces an item with the content of `body`. If reading `body` fails or it
    /// exceeds [`PutOptions::max_len`], nothing is written.
    fn put(
        &self,
        path: &ResourcePath,
        body: ByteStream,
        opts: PutOptions,
    ) -> impl Future<Output = StoreResult<WriteOutcome>> + Send;

    /// Creates a collection ([`ErrorKind::AlreadyExists`] if anything is there).
    fn create_collection(
        &self,
        path: &ResourcePath,
        opts: CreateOptions,
    ) -> impl Future<Output = StoreResult<WriteOutcome>> + Send;

    /// Deletes a resource and, for a collection, everything below it, leaving a tombstone for
    /// each. Returns the state the resource had.
    fn delete(
        &self,
        path: &ResourcePath,
        opts: DeleteOptions,
    ) -> impl Future<Output = StoreResult<Meta>> + Send;

    /// Copies `from` to `to` (new repl-uids for every copy). With `overwrite`, an existing
    /// destination is deleted in the same atomic step.
    fn copy(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> impl Future<Output = StoreResult<WriteOutcome>> + Send;

    /// Moves `from` (and everything below it) to `to`, keeping repl-uids. Leaves a tombstone at
    /// every old path and an upsert at every new one, the tombstone first.
    fn rename(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> impl Future<Output = StoreResult<WriteOutcome>> + Send;

    /// Applies dead-property changes in order, all or nothing.
    fn patch_props(
        &self,
        path: &ResourcePath,
        patch: Vec<PropPatch>,
        opts: PatchOptions,
    ) -> impl Future<Output = StoreResult<WriteOutcome>> + Send;

    /// The metadata of the item at `path` with all three content digests
    /// ([`Meta::digests`]): those it lacks (a PUT computes only the one its checksum names)
    /// are computed from its content. The engine's stores then record them with the item,
    /// without a new version (the resourcetag does not move), so each content is hashed once;
    /// this default reads and hashes the content on every call.
    fn digests(&self, path: &ResourcePath) -> impl Future<Output = StoreResult<Meta>> + Send {
        async move {
            let (meta, body) = self.read(path, GetOptions::default()).await?;
            Ok(digest::complete(meta, body).await?.0)
        }
    }

    /// [`digests`](Self::digests) of several items at once, one result per path in order
    /// (an item that is missing or a collection fails on its own; a failure of the store
    /// fails the call). The engine's stores record all that were computed in one write (a
    /// listing that asks for checksums pays one transaction per page, not one per item);
    /// this default asks for each in turn.
    fn digests_many(
        &self,
        paths: &[ResourcePath],
    ) -> impl Future<Output = StoreResult<Vec<StoreResult<Meta>>>> + Send {
        async move {
            let mut out = Vec::with_capacity(paths.len());
            for path in paths {
                out.push(self.digests(path).await);
            }
            Ok(out)
        }
    }

    /// A signal that fires after changes commit (on any node sharing the store, where the
    /// backend can tell), for readers waiting for the log to move. It only wakes: a reader
    /// re-reads the log from its own cursor. `None` (the default): the store cannot tell, and
    /// waiters fall back to polling.
    fn change_signal(&self) -> Option<ChangeSignal> {
        None
    }

    /// How many bytes of content the store holds (for quotas), if it counts them. The default:
    /// `None`.
    fn usage(&self) -> impl Future<Output = StoreResult<Option<u64>>> + Send {
        std::future::ready(Ok(None))
    }

    /// The highest change sequence number visible now. Every change at or below it is
    /// visible (gap-free), so a reader may treat it as a consistent upper bound.
    fn watermark(&self) -> impl Future<Output = StoreResult<Seq>> + Send;

    /// The highest change sequence number handed out to a change that is visible now: at
    /// least [`watermark`](Self::watermark), and above it while a store whose writers commit
    /// out of number order still has an older writer in flight (PostgreSQL). A client that has
    /// seen a number above this comes from the store's future (a restored backup). The
    /// default: the watermark.
    fn horizon(&self) -> impl Future<Output = StoreResult<Seq>> + Send {
        self.watermark()
    }

    /// Rows of the change log in scope, in ascending sequence order; cost proportional to the
    /// number of changes since `query.since`, not to the size of the scope.
    fn changes(&self, query: ChangesQuery) -> impl Future<Output = StoreResult<ChangePage>> + Send;

    /// Purges tombstones recorded before `before` and raises the low-water mark accordingly,
    /// and removes locks that have expired.
    fn purge(&self, before: SystemTime) -> impl Future<Output = StoreResult<PurgeReport>> + Send;

    /// Takes a write lock on `path` (RFC 4918 §9.10), in one atomic step with the evaluation
    /// of `req.condition` and the conflict check against every lock in force
    /// ([`ErrorKind::LockConflict`]). Nothing mapped at `path` (its parent must exist): an
    /// empty item is created there. Changes no tag and writes nothing to the change log
    /// (except the creation). [`Capabilities::locking`] says whether a store keeps locks; the
    /// default refuses with [`ErrorKind::Unsupported`].
    fn lock(
        &self,
        path: &ResourcePath,
        req: LockRequest,
    ) -> impl Future<Output = StoreResult<LockGrant>> + Send {
        let _ = (path, req);
        std::future::ready(Err(lock::not_kept()))
    }

    /// Refreshes the lock covering `path` whose token `cond` submits (and whose principal is
    /// `cond.principal`, if the lock has one), granting `timeout` from now;
    /// [`ErrorKind::PreconditionFailed`] when `cond` is false or submits no such token.
    fn refresh_lock(
        &self,
        path: &ResourcePath,
        cond: Condition,
        timeout: Duration,
    ) -> impl Future<Output = StoreResult<Lock>> + Send {
        let _ = (path, cond, timeout);
        std::future::ready(Err(lock::not_kept()))
    }

    /// Releases the lock with `token` that covers `path` and returns it
    /// ([`ErrorKind::NoSuchLock`] if there is none, [`ErrorKind::NotLockOwner`] if `principal`
    /// may not use it).
    fn unlock(
        &self,
        path: &ResourcePath,
        token: &str,
        principal: Option<&str>,
    ) -> impl Future<Output = StoreResult<Lock>> + Send {
        let _ = (path, token, principal);
        std::future::ready(Err(lock::not_kept()))
    }

    /// Creates a subscription (Exchange's SUBSCRIBE) at the current end of the change log.
    /// [`Capabilities::subscriptions`] says whether a store keeps them; the default refuses
    /// with [`ErrorKind::Unsupported`].
    fn subscribe(
        &self,
        req: NewSubscription,
    ) -> impl Future<Output = StoreResult<Subscription>> + Send {
        let _ = req;
        std::future::ready(Err(subscription::not_kept()))
    }

    /// The subscriptions among `ids` that are in force and belong to `principal` (others are
    /// left out).
    fn subscriptions(
        &self,
        ids: Vec<u64>,
        principal: Option<String>,
    ) -> impl Future<Output = StoreResult<Vec<Subscription>>> + Send {
        let _ = (ids, principal);
        std::future::ready(Ok(Vec::new()))
    }

    /// Renews and/or acknowledges a subscription of `principal`
    /// ([`ErrorKind::NotFound`] when it is unknown, expired or another principal's).
    fn update_subscription(
        &self,
        id: u64,
        principal: Option<String>,
        update: SubscriptionUpdate,
    ) -> impl Future<Output = StoreResult<Subscription>> + Send {
        let _ = (id, principal, update);
        std::future::ready(Err(subscription::not_kept()))
    }

    /// Ends a subscription of `principal` ([`ErrorKind::NotFound`] as above).
    fn unsubscribe(
        &self,
        id: u64,
        principal: Option<String>,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let _ = (id, principal);
        std::future::ready(Err(subscription::not_kept()))
    }

    /// The locks in force that cover `path` and, with `below`, also those rooted anywhere
    /// below it, ordered by root and token. The default: none.
    fn locks(
        &self,
        path: &ResourcePath,
        below: bool,
    ) -> impl Future<Output = StoreResult<Vec<Lock>>> + Send {
        let _ = (path, below);
        std::future::ready(Ok(Vec::new()))
    }
}

//! WebDAV write locks (RFC 4918 §6–7) as the store keeps them.
//!
//! A lock is state **beside** the content, never part of it: taking, refreshing or releasing
//! one changes no resourcetag, ETag or contenttag and writes nothing to the change log, so it
//! never shows up in a manifest and never causes a false conflict. Locks are checked and
//! granted inside the same atomic step as every write (see the engine), so all nodes of a
//! shared store agree on them.

use std::time::{Duration, SystemTime};

use crate::condition::Condition;
use crate::path::ResourcePath;
use crate::types::Meta;

/// The URI scheme of the lock tokens davrepl hands out (RFC 4918 appendix C).
pub const LOCK_TOKEN_SCHEME: &str = "opaquelocktoken:";

/// The error of a lock operation on a store that keeps no locks.
pub(crate) fn not_kept() -> crate::StoreError {
    crate::StoreError::new(
        crate::ErrorKind::Unsupported,
        "this store does not keep locks",
    )
}

/// Exclusive or shared (RFC 4918 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockScope {
    /// No other lock may cover the same resources.
    Exclusive,
    /// Other shared locks may cover the same resources; exclusive ones may not.
    Shared,
}

/// One write lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The lock token (`opaquelocktoken:` + a random UUID).
    pub token: String,
    /// The resource the lock was taken on (its lock root).
    pub root: ResourcePath,
    /// `Depth: infinity`: the lock covers everything below the root too.
    pub deep: bool,
    /// Exclusive or shared.
    pub scope: LockScope,
    /// The `DAV:owner` the client sent, as a self-contained XML fragment (kept as sent).
    pub owner: Option<String>,
    /// The principal that took the lock, if the request was authenticated; only it may use
    /// the token.
    pub principal: Option<String>,
    /// The timeout granted by the last LOCK or refresh.
    pub timeout: Duration,
    /// When the lock lapses unless refreshed.
    pub expires: SystemTime,
}

impl Lock {
    /// Whether the lock covers `path`: its root, or (depth infinity) anything below it.
    pub fn covers(&self, path: &ResourcePath) -> bool {
        *path == self.root || (self.deep && path.is_strictly_within(&self.root))
    }

    /// Whether the lock is still in force at `now`.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.expires > now
    }

    /// The time left at `now` (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires.duration_since(now).unwrap_or_default()
    }

    /// Whether a request by `principal` may use this lock's token (an unauthenticated lock
    /// serves anyone who has the token; an authenticated one only its principal).
    pub fn usable_by(&self, principal: Option<&str>) -> bool {
        match (&self.principal, principal) {
            (None, _) => true,
            (Some(owner), Some(p)) => owner == p,
            (Some(_), None) => false,
        }
    }

    /// Whether this lock and one of `scope` could not both hold (one of them is exclusive).
    pub fn conflicts_with(&self, scope: LockScope) -> bool {
        self.scope == LockScope::Exclusive || scope == LockScope::Exclusive
    }
}

/// What a LOCK asks for ([`ReplStore::lock`](crate::ReplStore::lock)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LockRequest {
    /// Exclusive or shared.
    pub scope: LockScope,
    /// Depth infinity (otherwise depth 0).
    pub deep: bool,
    /// `DAV:owner` as an XML fragment.
    pub owner: Option<String>,
    /// How long the lock lasts unless refreshed (the layer caps it).
    pub timeout: Duration,
    /// The request's precondition (its `principal` becomes the lock's), evaluated
    /// atomically with the grant.
    pub condition: Condition,
}

impl LockRequest {
    /// A lock of `scope`, depth infinity when `deep`, for `timeout`, no owner, no condition.
    pub fn new(scope: LockScope, deep: bool, timeout: Duration) -> Self {
        Self {
            scope,
            deep,
            owner: None,
            timeout,
            condition: Condition::none(),
        }
    }

    /// Sets the owner fragment.
    #[must_use]
    pub fn owner(mut self, owner: Option<String>) -> Self {
        self.owner = owner;
        self
    }

    /// Sets the condition.
    #[must_use]
    pub fn condition(mut self, condition: Condition) -> Self {
        self.condition = condition;
        self
    }
}

/// A granted lock.
#[derive(Debug, Clone)]
pub struct LockGrant {
    /// The new lock.
    pub lock: Lock,
    /// The resource, as it is now.
    pub meta: Meta,
    /// Nothing was mapped at the URL: an empty item was created (answer `201`).
    pub created: bool,
}

//! Store errors with kinds that callers branch on.

use std::borrow::Cow;
use std::fmt;

/// A boxed error from below the store (I/O, database driver, request body).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// What went wrong, as a caller can act on it. The layer maps each kind to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The resource does not exist.
    NotFound,
    /// The target exists and the operation needs it not to (MKCOL on an existing resource).
    AlreadyExists,
    /// A parent collection of the target does not exist, or is not a collection.
    ParentMissing,
    /// The operation needs a non-collection but found a collection (PUT onto a collection).
    IsCollection,
    /// The operation needs a collection but found a non-collection.
    NotCollection,
    /// The request's condition (`If`, `If-Match`, `If-None-Match`) is false.
    PreconditionFailed,
    /// `Overwrite: F` and the destination exists.
    DestinationExists,
    /// Source and destination are the same resource.
    SameResource,
    /// The destination lies inside the source (moving or copying a collection into itself).
    DestinationInsideSource,
    /// The root collection cannot be deleted, moved or replaced.
    RootImmutable,
    /// The content is larger than allowed.
    TooLarge,
    /// Reading the content from the client failed; nothing was written.
    BodyAborted,
    /// The content does not have the checksum the request said it has; nothing was written.
    ChecksumMismatch,
    /// The write would take the store over its quota; nothing was written.
    QuotaExceeded,
    /// The input is not acceptable to this store (bad property name, value too large).
    InvalidInput,
    /// The store does not support this operation (see `Capabilities`).
    Unsupported,
    /// A lock covers a resource the write changes and the request did not submit its token
    /// ([`StoreError::resource`] names the lock root; HTTP 423 `DAV:lock-token-submitted`).
    Locked,
    /// A LOCK conflicts with a lock already held ([`StoreError::resource`] names its root;
    /// HTTP 423 `DAV:no-conflicting-lock`).
    LockConflict,
    /// No lock with the given token covers the resource (UNLOCK: HTTP 409
    /// `DAV:lock-token-matches-request-uri`).
    NoSuchLock,
    /// The lock belongs to another principal (HTTP 403).
    NotLockOwner,
    /// A temporary condition (connection lost, serialization failure) that survived retries.
    Unavailable,
    /// Anything else: a bug or a broken backend.
    Internal,
}

/// An error from a [`ReplStore`](crate::ReplStore) operation.
pub struct StoreError {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<BoxError>,
    resource: Option<crate::path::ResourcePath>,
}

impl StoreError {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            resource: None,
        }
    }

    /// Names the resource the error is about (the lock root of [`ErrorKind::Locked`] and
    /// [`ErrorKind::LockConflict`]).
    #[must_use]
    pub fn with_resource(mut self, path: crate::path::ResourcePath) -> Self {
        self.resource = Some(path);
        self
    }

    /// The resource the error is about, if it names one.
    pub fn resource(&self) -> Option<&crate::path::ResourcePath> {
        self.resource.as_ref()
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind to branch on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message (without the source).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the same request may succeed if tried again later ([`ErrorKind::Unavailable`]:
    /// a lost connection, a full pool, a transaction that kept conflicting). Everything else
    /// fails the same way on a retry.
    pub fn is_temporary(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(what: impl fmt::Display) -> Self {
        Self::new(ErrorKind::NotFound, format!("{what} does not exist"))
    }

    /// Shorthand for [`ErrorKind::PreconditionFailed`].
    pub fn precondition_failed() -> Self {
        Self::new(
            ErrorKind::PreconditionFailed,
            "the request's precondition is false",
        )
    }

    /// Shorthand for [`ErrorKind::Internal`] wrapping a cause.
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorKind::Internal, "internal store error").with_source(source)
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("StoreError");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

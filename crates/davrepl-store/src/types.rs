//! Values passed to and returned by [`ReplStore`](crate::ReplStore) methods.

use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;
use futures_core::Stream;

use crate::condition::{Condition, Tokens};
use crate::error::StoreError;
use crate::path::ResourcePath;
use crate::tags::{self, ReplUid, Seq, StoreId};

/// A stream of content chunks. Stores read uploads from it and hand downloads out through it,
/// so no layer of the stack has to hold a whole file in memory.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send + 'static>>;

/// Whether a resource is a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// A collection (WebDAV `DAV:collection`).
    Collection,
    /// A non-collection resource with content.
    Item,
}

/// Everything the protocol needs to know about a resource, without its content or dead
/// properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Where it is.
    pub path: ResourcePath,
    /// Collection or not.
    pub kind: ResourceKind,
    /// The id of the store that holds it (part of every token).
    pub store: StoreId,
    /// Permanent identity; kept by MOVE, new on COPY and on delete + re-create.
    pub rid: ReplUid,
    /// Change sequence number of the last change to this resource itself.
    pub version: Seq,
    /// For collections: change sequence number of the last change to a direct member or to the
    /// membership. Equal to `version` for items.
    pub content_version: Seq,
    /// Content length in bytes (0 for collections).
    pub len: u64,
    /// Content type given at upload.
    pub content_type: Option<String>,
    /// When the resource was created.
    pub created: SystemTime,
    /// When the resource last changed, or the modification time a client set (`X-OC-Mtime`,
    /// a PROPPATCH of `getlastmodified`).
    pub modified: SystemTime,
    /// Digests of an item's content (`None` for collections, and for items stored before
    /// digests were kept).
    pub digests: Option<crate::Digests>,
}

impl Meta {
    /// Whether this is a collection.
    pub fn is_collection(&self) -> bool {
        self.kind == ResourceKind::Collection
    }

    /// `rt:` + 88 hex digits.
    pub fn resource_tag(&self) -> String {
        tags::resource_tag(&self.rid, &self.store, self.version)
    }

    /// Appends [`resource_tag`](Self::resource_tag) to `out` (a header or document being built
    /// needs no string of its own for it).
    pub fn push_resource_tag(&self, out: &mut String) {
        tags::push_resource_tag(out, &self.rid, &self.store, self.version);
    }

    /// [`resource_tag`](Self::resource_tag) as ASCII bytes on the stack.
    pub fn resource_tag_bytes(&self) -> [u8; tags::RESOURCE_TAG_LEN] {
        tags::resource_tag_bytes(&self.rid, &self.store, self.version)
    }

    /// `rid:` + 44 hex digits.
    pub fn repl_uid(&self) -> String {
        let mut s = String::with_capacity(48);
        tags::push_repl_uid(&mut s, &self.rid);
        s
    }

    /// [`repl_uid`](Self::repl_uid) as ASCII bytes on the stack.
    pub fn repl_uid_bytes(&self) -> [u8; tags::REPL_UID_LEN] {
        tags::repl_uid_bytes(&self.rid)
    }

    /// Appends [`repl_uid`](Self::repl_uid) to `out`.
    pub fn push_repl_uid(&self, out: &mut String) {
        tags::push_repl_uid(out, &self.rid);
    }

    /// `ct:` + 88 hex digits for collections.
    pub fn content_tag(&self) -> Option<String> {
        self.is_collection()
            .then(|| tags::content_tag(&self.rid, &self.store, self.content_version))
    }

    /// Strong ETag with quotes.
    pub fn etag(&self) -> String {
        tags::etag(&self.rid, self.version)
    }

    /// [`etag`](Self::etag) as ASCII bytes on the stack.
    pub fn etag_bytes(&self) -> [u8; tags::ETAG_LEN] {
        tags::etag_bytes(&self.rid, self.version)
    }

    /// The tokens of this state, ready for [`Condition::evaluate`].
    pub fn tokens(&self) -> Tokens {
        Tokens {
            resource_tag: self.resource_tag(),
            repl_uid: self.repl_uid(),
            content_tag: self.content_tag(),
            etag: self.etag(),
        }
    }
}

/// The name of a dead property: namespace URI (may be empty) and local name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PropName {
    /// Namespace URI; empty for "no namespace".
    pub ns: String,
    /// Local name.
    pub local: String,
}

impl PropName {
    /// Builds a name.
    pub fn new(ns: impl Into<String>, local: impl Into<String>) -> Self {
        Self {
            ns: ns.into(),
            local: local.into(),
        }
    }
}

/// A dead property: its name and its value as an XML fragment (text and elements, with every
/// namespace it uses declared inside the fragment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadProp {
    /// The name.
    pub name: PropName,
    /// The value: a self-contained XML fragment (may be empty).
    pub value: String,
}

/// One change to dead properties in a PROPPATCH; a request's list is applied in order, all or
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropPatch {
    /// Set (create or replace) a property.
    Set(DeadProp),
    /// Remove a property (removing an absent property is not an error).
    Remove(PropName),
}

/// An inclusive byte range, already resolved against the content length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

/// How deep a listing, copy or change query reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Depth {
    /// The resource itself only.
    Zero,
    /// Direct members.
    One,
    /// All descendants.
    Infinity,
}

/// Options of [`ReplStore::list`](crate::ReplStore::list).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListOptions {
    /// [`Depth::One`] lists direct members, [`Depth::Infinity`] all descendants, in path order.
    /// The collection itself is never included.
    pub depth: Depth,
    /// Continue after this path (from [`Listing::next`]).
    pub after: Option<ResourcePath>,
    /// At most this many entries.
    pub limit: usize,
    /// Also return dead properties.
    pub with_props: bool,
}

impl ListOptions {
    /// A listing of `depth`, up to `limit` entries.
    pub fn new(depth: Depth, limit: usize) -> Self {
        Self {
            depth,
            after: None,
            limit,
            with_props: false,
        }
    }

    /// Continue after `path`.
    #[must_use]
    pub fn after(mut self, path: Option<ResourcePath>) -> Self {
        self.after = path;
        self
    }

    /// Include dead properties.
    #[must_use]
    pub fn with_props(mut self, yes: bool) -> Self {
        self.with_props = yes;
        self
    }
}

/// One listed resource.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its metadata.
    pub meta: Meta,
    /// Its dead properties, if requested.
    pub props: Vec<DeadProp>,
}

/// A page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Entries in path order.
    pub entries: Vec<Entry>,
    /// Where to continue, if there may be more.
    pub next: Option<ResourcePath>,
}

/// Options of [`ReplStore::put`](crate::ReplStore::put).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PutOptions {
    /// Content type to record.
    pub content_type: Option<String>,
    /// Precondition, evaluated atomically with the write.
    pub condition: Condition,
    /// Refuse content longer than this many bytes with [`ErrorKind::TooLarge`](crate::ErrorKind).
    pub max_len: Option<u64>,
    /// The modification time to record instead of the time of the write (a client's own
    /// file time, `X-OC-Mtime`).
    pub modified: Option<SystemTime>,
    /// Refuse the content ([`ErrorKind::ChecksumMismatch`](crate::ErrorKind), nothing
    /// written) unless it has this checksum.
    pub checksum: Option<crate::Checksum>,
    /// Refuse a write that adds content ([`ErrorKind::QuotaExceeded`](crate::ErrorKind),
    /// nothing written) when the store would then hold more than this many bytes.
    pub quota: Option<u64>,
}

impl PutOptions {
    /// Options with `condition`.
    pub fn with_condition(condition: Condition) -> Self {
        Self {
            condition,
            ..Self::default()
        }
    }

    /// Sets the content type.
    #[must_use]
    pub fn content_type(mut self, ct: Option<String>) -> Self {
        self.content_type = ct;
        self
    }
}

impl From<Condition> for PutOptions {
    fn from(condition: Condition) -> Self {
        Self::with_condition(condition)
    }
}

/// Options of [`ReplStore::read`](crate::ReplStore::read).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct GetOptions {
    /// Read only this byte range.
    pub range: Option<ByteRange>,
    /// Precondition, evaluated against the very state whose bytes are returned
    /// ([`ErrorKind::PreconditionFailed`](crate::ErrorKind) when false).
    pub condition: Condition,
}

impl GetOptions {
    /// Reads `range` (or everything) with no condition.
    pub fn range(range: Option<ByteRange>) -> Self {
        Self {
            range,
            ..Self::default()
        }
    }
}

impl From<Condition> for GetOptions {
    fn from(condition: Condition) -> Self {
        Self {
            condition,
            ..Self::default()
        }
    }
}

impl From<Option<ByteRange>> for GetOptions {
    fn from(range: Option<ByteRange>) -> Self {
        Self::range(range)
    }
}

macro_rules! condition_options {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        #[non_exhaustive]
        pub struct $name {
            /// Precondition, evaluated atomically with the write.
            pub condition: Condition,
        }

        impl From<Condition> for $name {
            fn from(condition: Condition) -> Self {
                Self { condition }
            }
        }
    )*};
}

condition_options! {
    /// Options of [`ReplStore::create_collection`](crate::ReplStore::create_collection).
    CreateOptions;
    /// Options of [`ReplStore::delete`](crate::ReplStore::delete).
    DeleteOptions;
}

/// Options of [`ReplStore::patch_props`](crate::ReplStore::patch_props).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PatchOptions {
    /// Precondition, evaluated atomically with the write.
    pub condition: Condition,
    /// A modification time to record with the change (a client setting `getlastmodified`);
    /// otherwise the time of the write.
    pub modified: Option<SystemTime>,
}

impl From<Condition> for PatchOptions {
    fn from(condition: Condition) -> Self {
        Self {
            condition,
            modified: None,
        }
    }
}

/// Options of [`ReplStore::copy`](crate::ReplStore::copy) and
/// [`ReplStore::rename`](crate::ReplStore::rename).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransferOptions {
    /// [`Depth::Zero`] copies a collection without its members (COPY only); MOVE is always
    /// [`Depth::Infinity`].
    pub depth: Depth,
    /// Replace an existing destination (deleting it first, as one atomic step).
    pub overwrite: bool,
    /// Precondition on the source (and any tagged resources), evaluated atomically.
    pub condition: Condition,
    /// Refuse a COPY ([`ErrorKind::QuotaExceeded`](crate::ErrorKind), nothing written) that
    /// would take the store over this many bytes.
    pub quota: Option<u64>,
}

impl TransferOptions {
    /// Depth infinity, overwrite allowed, no condition.
    pub fn new() -> Self {
        Self {
            depth: Depth::Infinity,
            overwrite: true,
            condition: Condition::none(),
            quota: None,
        }
    }

    /// Sets the depth.
    #[must_use]
    pub fn depth(mut self, d: Depth) -> Self {
        self.depth = d;
        self
    }

    /// Sets overwrite.
    #[must_use]
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }

    /// Sets the condition.
    #[must_use]
    pub fn condition(mut self, c: Condition) -> Self {
        self.condition = c;
        self
    }
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Result of a successful write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// The resource's state after the write.
    pub meta: Meta,
    /// Nothing existed at the target before (PUT created, MOVE/COPY made a new destination).
    pub created: bool,
    /// The store changed what was written (answer `210 Content Different`).
    pub transformed: bool,
}

/// What happened to a resource at one change sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// It was created or changed; this is its current state.
    Upsert(Meta),
    /// It left this path (deleted, or moved away): a tombstone.
    Removed {
        /// Its repl-uid.
        rid: ReplUid,
        /// The path it had.
        path: ResourcePath,
        /// Whether it was a collection.
        kind: ResourceKind,
    },
}

/// One row of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The change sequence number.
    pub seq: Seq,
    /// What changed.
    pub kind: ChangeKind,
    /// Dead properties of an upserted resource, when [`ChangesQuery::with_props`] asked.
    pub props: Vec<DeadProp>,
}

impl Change {
    /// The path the row is about.
    pub fn path(&self) -> &ResourcePath {
        match &self.kind {
            ChangeKind::Upsert(m) => &m.path,
            ChangeKind::Removed { path, .. } => path,
        }
    }

    /// The repl-uid the row is about.
    pub fn rid(&self) -> ReplUid {
        match &self.kind {
            ChangeKind::Upsert(m) => m.rid,
            ChangeKind::Removed { rid, .. } => *rid,
        }
    }
}

/// Options of [`ReplStore::changes`](crate::ReplStore::changes).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChangesQuery {
    /// The scope collection.
    pub scope: ResourcePath,
    /// [`Depth::One`]: direct members (shallow traversal); [`Depth::Infinity`]: all
    /// descendants (deep traversal). [`Depth::Zero`]: the scope itself only.
    pub depth: Depth,
    /// Also report the scope collection itself.
    pub include_scope: bool,
    /// Report only changes with a sequence number above this (0 = from the beginning).
    pub since: Seq,
    /// At most this many rows.
    pub limit: usize,
    /// Report tombstones (false for a first sync).
    pub include_removed: bool,
    /// Return dead properties with every upsert.
    pub with_props: bool,
}

impl ChangesQuery {
    /// Changes below `scope` at `depth` since `since`, up to `limit` rows, tombstones included.
    pub fn new(scope: ResourcePath, depth: Depth, since: Seq, limit: usize) -> Self {
        Self {
            scope,
            depth,
            include_scope: false,
            since,
            limit,
            include_removed: true,
            with_props: false,
        }
    }
}

/// A page of the change log.
#[derive(Debug, Clone)]
pub struct ChangePage {
    /// Rows in ascending sequence order. For one resource only its latest state is reported
    /// (older upserts are superseded), plus any tombstones it left behind.
    pub changes: Vec<Change>,
    /// The sequence number up to which this page is complete: pass it as `since` to continue.
    /// When `more` is false, every change up to `watermark` has been reported.
    pub watermark: Seq,
    /// Whether the page stopped at `limit` and more rows may follow.
    pub more: bool,
    /// Tombstones at or below this sequence number may have been purged: a client whose
    /// `since` is below it cannot get a complete delta.
    pub low_water: Seq,
}

/// What a store can do; the testkit checks both sides of each flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Dead properties are stored.
    pub dead_properties: bool,
    /// Collections can be copied without their members (COPY Depth 0).
    pub shallow_copy: bool,
    /// The store keeps write locks ([`ReplStore::lock`](crate::ReplStore::lock) and the
    /// rest); the layer then answers WebDAV class 2.
    pub locking: bool,
    /// The store keeps Exchange-style subscriptions
    /// ([`ReplStore::subscribe`](crate::ReplStore::subscribe) and the rest).
    pub subscriptions: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            dead_properties: true,
            shallow_copy: true,
            locking: false,
            subscriptions: false,
        }
    }
}

/// Outcome of [`ReplStore::purge`](crate::ReplStore::purge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeReport {
    /// Tombstones removed.
    pub removed: u64,
    /// The low-water mark afterwards.
    pub low_water: Seq,
}

/// The checks of a COPY or MOVE that depend on the two paths alone; every store makes them
/// before looking at its data: source and destination differ, the root is never moved, and
/// the destination is not inside the source (nor, for a move, its ancestor).
pub fn check_transfer_paths(
    from: &ResourcePath,
    to: &ResourcePath,
    moving: bool,
) -> Result<(), StoreError> {
    use crate::error::ErrorKind;
    if from == to {
        return Err(StoreError::new(
            ErrorKind::SameResource,
            "source and destination are the same resource",
        ));
    }
    if moving && from.is_root() {
        return Err(StoreError::new(
            ErrorKind::RootImmutable,
            "the root cannot be moved",
        ));
    }
    if to.is_within(from) || (moving && from.is_within(to)) {
        return Err(StoreError::new(
            ErrorKind::DestinationInsideSource,
            "the destination lies inside the source",
        ));
    }
    Ok(())
}

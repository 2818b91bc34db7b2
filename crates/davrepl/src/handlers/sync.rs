//! REPORT, and the one report served: RFC 6578 `DAV:sync-collection`, read from the same
//! change log as the replication manifests.
//!
//! A sync token is a signed cursor into the log (a collblob of kind
//! [`BlobKind::Sync`] written as a URI): the log position every change up to which the client
//! has, bound to the store, the principal, the collection (path and repl-uid) and the level.
//! A token that fails any of those checks, lies below the log's low-water mark or above the
//! store's watermark is refused with `403 DAV:valid-sync-token`, and the client starts over.
//!
//! The report streams: a changed member is written as soon as the log yields it; members
//! removed are held (by path) until the end, because a later change in the same window can
//! map a new resource at that path, and RFC 6578 §3.5.1 reports that as changed only. Each
//! member appears once. With a limit (the client's `nresults` or
//! [`Limits::max_sync_results`](crate::Limits)) the report stops before the first change that
//! would exceed it, adds a `507` response for the collection, and hands out a token for the
//! exact position reached, so repeating the request with it pages through everything.

use std::collections::BTreeMap;
use std::sync::Arc;

use davrepl_proto::collblob::{self, BlobKind, CollBlob};
use davrepl_proto::headers::Depth;
use davrepl_proto::xml::{PropfindKind, Report, SyncCollection, SyncLevel, XmlWriter};
use davrepl_store::StoreError;
use davrepl_store::{self as store, ChangeKind, Meta, ReplStore, ResourceKind, ResourcePath, Seq};
use http::{Response, StatusCode};
use http_body::Body;

use super::log::{LogCursor, LogScope};
use super::multistatus::{self, Rows};
use super::props::{
    MULTISTATUS_OPEN, PropRequest, check_prop_count, multistatus_response, status_line,
};
use super::{Ctx, read_small_body};
use crate::BoxError;
use crate::body::DavBody;
use crate::config::Shared;
use crate::error::{DavError, DavResult};

/// What every sync token starts with.
const TOKEN_PREFIX: &str = "urn:davrepl:sync:";

/// Changes processed per streamed chunk.
const CHANGES_PER_CHUNK: usize = 128;

fn invalid_token(why: &str) -> DavError {
    DavError::new(StatusCode::FORBIDDEN, format!("invalid sync token: {why}"))
        .with_condition("valid-sync-token")
}

/// Issues and checks the sync tokens of one request.
pub(super) struct SyncTokens {
    store: [u8; 16],
    principal: [u8; 32],
    secret: [u8; 32],
}

impl SyncTokens {
    pub(super) async fn new<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Self> {
        let secret = ctx.store().secret().await?;
        Ok(Self {
            store: ctx.store().store_id().0,
            principal: ctx.principal_hash(&secret),
            secret,
        })
    }

    fn binding(collection: &ResourcePath, level: SyncLevel) -> [u8; 32] {
        collblob::digest(format!("SYNC {} {collection}", level.as_str()).as_bytes())
    }

    /// A token for `collection` at `level` standing for every change up to `watermark`.
    pub(super) fn issue(&self, collection: &Meta, level: SyncLevel, watermark: Seq) -> String {
        let issued = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let blob = CollBlob {
            store: self.store,
            kind: BlobKind::Sync,
            scope_rid: collection.rid.0,
            binding: Self::binding(&collection.path, level),
            principal: self.principal,
            watermark,
            issued,
            query: String::new(),
            seen: Vec::new(),
        };
        format!("{TOKEN_PREFIX}{}", blob.encode(&self.secret))
    }

    /// The log position a client's token stands for, if it was issued by this store to this
    /// principal for this collection and level.
    fn check(&self, text: &str, collection: &Meta, level: SyncLevel) -> DavResult<Seq> {
        let body = text
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(|| invalid_token("not a token of this server"))?;
        let blob =
            CollBlob::decode(body, &self.secret).map_err(|e| invalid_token(&e.to_string()))?;
        if blob.store != self.store || blob.kind != BlobKind::Sync {
            return Err(invalid_token(
                "issued by another store or for another request",
            ));
        }
        if blob.principal != self.principal {
            return Err(invalid_token("issued to another user"));
        }
        if blob.binding != Self::binding(&collection.path, level) {
            return Err(invalid_token("issued for another collection or sync-level"));
        }
        if blob.scope_rid != collection.rid.0 {
            return Err(invalid_token("the collection was deleted and re-created"));
        }
        Ok(blob.watermark)
    }
}

/// `REPORT`: `DAV:sync-collection`, or `403 DAV:supported-report` for any other report.
pub(crate) async fn report<S, B>(ctx: &Ctx<S>, body: B) -> DavResult<Response<DavBody>>
where
    S: ReplStore,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = ctx.shared.config.limits;
    let bytes = read_small_body(body, limits.xml.max_bytes).await?;
    match davrepl_proto::xml::parse_report(&bytes, &limits.xml)? {
        Report::SyncCollection(req) => sync_collection(ctx, req).await,
        Report::Other(name) => Err(DavError::new(
            StatusCode::FORBIDDEN,
            format!("the report {{{}}}{} is not supported", name.ns, name.local),
        )
        .with_condition("supported-report")),
    }
}

async fn sync_collection<S: ReplStore>(
    ctx: &Ctx<S>,
    req: SyncCollection,
) -> DavResult<Response<DavBody>> {
    let limits = ctx.shared.config.limits;
    // RFC 6578 §3.2 defines the report for `Depth: 0` only and asks for 400 otherwise, but
    // deployed clients (the Python `caldav` library among them) send `Depth: 1`; the
    // `sync-level` decides the scope either way, so only `infinity` is refused.
    if matches!(
        ctx.head.depth,
        Some(Depth::Infinity | Depth::InfinityNoRoot)
    ) {
        return Err(DavError::bad_request(
            "sync-collection takes Depth: 0 (its sync-level sets the scope)",
        ));
    }
    check_prop_count(req.props.len(), &limits)?;
    if req.level == SyncLevel::Infinite && !limits.allow_depth_infinity {
        return Err(DavError::new(
            StatusCode::FORBIDDEN,
            "sync-level infinite is disabled on this server",
        )
        .with_condition("sync-traversal-supported"));
    }
    let collection = ctx.store().head(&ctx.path).await?;
    if !collection.is_collection() {
        return Err(DavError::new(
            StatusCode::FORBIDDEN,
            "sync-collection reports on collections only",
        )
        .with_condition("supported-report"));
    }
    ctx.check_read(&ctx.head.condition, &collection).await?;
    let tokens = SyncTokens::new(ctx).await?;
    let since = match &req.token {
        Some(t) => Some(tokens.check(t, &collection, req.level)?),
        None => None,
    };
    let level_depth = match req.level {
        SyncLevel::One => store::Depth::One,
        SyncLevel::Infinite => store::Depth::Infinity,
    };
    let mut upper = ctx.store().watermark().await?;
    if since.is_some_and(|s| s > upper) {
        // The store lost changes the client has seen (restored from a backup): their numbers
        // will be handed out again, so the client must start over, never skip them.
        return Err(invalid_token("it is newer than the store"));
    }
    if let (Some(wait), Some(from)) = (super::wait::prefer_wait(ctx)?, since) {
        // Long poll: held while no change in scope follows the token.
        super::wait::hold(ctx, &ctx.path, wait, || async move {
            let mut q = store::ChangesQuery::new(ctx.path.clone(), level_depth, from, 1);
            q.include_removed = true;
            let page = ctx.store().changes(q).await?;
            Ok(!page.changes.is_empty() || from < page.low_water)
        })
        .await?;
        upper = ctx.store().watermark().await?;
    }
    let what = LogScope {
        scope: ctx.path.clone(),
        depth: level_depth,
        include_scope: false,
        // An initial sync reports no removed members (RFC 6578 §3.4).
        include_removed: since.is_some(),
        with_props: req
            .props
            .iter()
            .any(|n| !crate::live::is_computed(&n.ns, &n.local)),
    };
    let since = since.unwrap_or(0);
    let mut log = LogCursor::new(what, since, upper);
    log.fetch(ctx.store()).await?;
    if since > 0 && since < log.low_water() {
        return Err(invalid_token(
            "it is older than the retained change history",
        ));
    }
    let limit = req
        .limit
        .map_or(limits.max_sync_results, |n| n.min(limits.max_sync_results))
        .max(1);
    let hrefs_only = req.props.is_empty();
    let mut props = PropRequest::new(PropfindKind::Prop(req.props), false);
    props.locking = ctx.store().capabilities().locking;
    let rows = SyncRows {
        shared: ctx.shared.clone(),
        log,
        req: props,
        hrefs_only,
        limit,
        upper,
        last: since,
        changed: 0,
        removed: BTreeMap::new(),
        tokens,
        collection,
        level: req.level,
        collection_href: ctx.href(&ctx.path, true),
    };
    let mut head = XmlWriter::new();
    head.declaration().fragment(MULTISTATUS_OPEN);
    let body = multistatus::stream(head.finish(), rows, "D:multistatus");
    Ok(multistatus_response(StatusCode::MULTI_STATUS, body))
}

/// The members of a sync-collection report, streamed from the log.
struct SyncRows<S> {
    shared: Arc<Shared<S>>,
    log: LogCursor,
    req: PropRequest,
    /// No property was asked for: changed members get an empty `propstat`.
    hrefs_only: bool,
    limit: u64,
    upper: Seq,
    /// Every change up to here has been reported.
    last: Seq,
    /// Changed members written so far.
    changed: u64,
    /// Members removed (and not mapped again since), with whether each was a collection.
    removed: BTreeMap<ResourcePath, bool>,
    tokens: SyncTokens,
    collection: Meta,
    level: SyncLevel,
    collection_href: String,
}

impl<S: ReplStore> SyncRows<S> {
    fn href(&self, path: &ResourcePath, collection: bool) -> String {
        self.shared.config.mount.href(path, collection)
    }

    /// Writes the removed members, the `507` of a truncated report and the new token.
    fn finish(&mut self, w: &mut XmlWriter, truncated: bool) {
        for (path, collection) in std::mem::take(&mut self.removed) {
            w.start("D:response", &[])
                .text_element("D:href", &self.href(&path, collection))
                .text_element("D:status", &status_line(StatusCode::NOT_FOUND))
                .end("D:response");
        }
        let position = if truncated {
            self.last
        } else {
            self.upper.max(self.last)
        };
        if truncated {
            w.start("D:response", &[])
                .text_element("D:href", &self.collection_href)
                .text_element("D:status", &status_line(StatusCode::INSUFFICIENT_STORAGE))
                .start("D:error", &[])
                .empty("D:number-of-matches-within-limits", &[])
                .end("D:error")
                .end("D:response");
        }
        let token = self.tokens.issue(&self.collection, self.level, position);
        w.text_element("D:sync-token", &token);
    }
}

impl<S: ReplStore> Rows for SyncRows<S> {
    async fn next_chunk(&mut self, w: &mut XmlWriter) -> Result<bool, StoreError> {
        for _ in 0..CHANGES_PER_CHUNK {
            let Some(change) = self.log.next(&self.shared.store).await? else {
                self.finish(w, false);
                return Ok(true);
            };
            let path = match &change.kind {
                ChangeKind::Upsert(meta) => &meta.path,
                ChangeKind::Removed { path, .. } => path,
            };
            let listed = self.removed.contains_key(path);
            if !listed && self.changed + self.removed.len() as u64 >= self.limit {
                self.finish(w, true);
                return Ok(true);
            }
            match change.kind {
                ChangeKind::Upsert(mut meta) => {
                    // (Only when this item still lacks them: most were completed ahead.)
                    if !self.hrefs_only
                        && self.req.wants_checksums()
                        && crate::live::lacks_digests(&meta)
                    {
                        // With the small items already fetched: one write records them all.
                        let ahead = self
                            .log
                            .buffered_upserts()
                            .filter(|m| crate::live::ahead(m));
                        let metas = std::iter::once(&mut meta).chain(ahead);
                        crate::live::fill_all_digests(&self.shared.store, metas).await?;
                    }
                    // A member removed earlier in this window and mapped again is changed.
                    self.removed.remove(&meta.path);
                    let href = self.href(&meta.path, meta.is_collection());
                    if self.hrefs_only {
                        w.start("D:response", &[])
                            .text_element("D:href", &href)
                            .start("D:propstat", &[])
                            .empty("D:prop", &[])
                            .text_element("D:status", &status_line(StatusCode::OK))
                            .end("D:propstat")
                            .end("D:response");
                    } else {
                        self.req.write(w, &href, &meta, &change.props);
                    }
                    self.changed += 1;
                }
                ChangeKind::Removed { path, kind, .. } => {
                    self.removed.insert(path, kind == ResourceKind::Collection);
                }
            }
            self.last = change.seq;
        }
        Ok(false)
    }
}

//! PROPFIND (streamed multistatus) and PROPPATCH.

use std::collections::BTreeSet;
use std::sync::Arc;

use davrepl_proto::headers::Depth;
use davrepl_proto::xml::{
    PatchInstruction, PropfindKind, SyncLevel, XmlWriter, parse_propfind, parse_proppatch,
};
use davrepl_store::{
    self as store, DeadProp, Entry, ListOptions, Meta, PropName, PropPatch, ReplStore,
    ResourcePath, Seq, StoreError,
};
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body;

use super::lock::{self, LockProps};
use super::multistatus::{self, Rows};
use super::sync::SyncTokens;
use super::{Ctx, read_small_body, set_etag, set_repl_uid, set_resource_tag};
use crate::BoxError;
use crate::body::{self, DavBody};
use crate::config::Shared;
use crate::error::{DavError, DavResult};
use crate::live;

pub(super) const MULTISTATUS_OPEN: &str = "<D:multistatus xmlns:D=\"DAV:\">";

pub(super) fn multistatus_response(status: StatusCode, body: DavBody) -> Response<DavBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    r
}

pub(super) fn status_line(code: StatusCode) -> String {
    format!(
        "HTTP/1.1 {} {}",
        code.as_u16(),
        code.canonical_reason().unwrap_or("")
    )
}

/// What to write for each resource of a PROPFIND (or a report that returns properties).
pub(super) struct PropRequest {
    kind: PropfindKind,
    brief: bool,
    /// Where `DAV:sync-token` is asked for: how to issue one for a collection, and the state
    /// of the log it stands for.
    sync: Option<(SyncTokens, Seq)>,
    /// The store keeps locks (`DAV:supportedlock` lists them).
    pub(super) locking: bool,
    /// The locks in force on the listed resources, where `DAV:lockdiscovery` is asked for.
    locks: Option<LockProps>,
    /// Bytes the store holds and (with a quota) bytes left, where RFC 4331's quota
    /// properties are asked for and the store counts bytes.
    quota: Option<(u64, Option<u64>)>,
}

impl PropRequest {
    pub(super) fn new(kind: PropfindKind, brief: bool) -> Self {
        Self {
            kind,
            brief,
            sync: None,
            locking: false,
            locks: None,
            quota: None,
        }
    }

    /// Whether RFC 4331's quota properties are asked for (by name; not in `allprop`).
    fn wants_quota(&self) -> bool {
        matches!(&self.kind, PropfindKind::Prop(names) if names.iter().any(|n| quota_prop(n).is_some()))
    }

    /// Writes a quota property of a collection; false when `name` is not one, or the value is
    /// unknown.
    fn write_quota_prop(&self, w: &mut XmlWriter, meta: &Meta, name: &PropName) -> bool {
        let (Some(which), Some((used, left)), true) =
            (quota_prop(name), self.quota, meta.is_collection())
        else {
            return false;
        };
        let value = match which {
            QuotaProp::Used => used,
            QuotaProp::Available => match left {
                Some(l) => l,
                None => return false,
            },
        };
        w.text_element(&format!("D:{}", name.local), &value.to_string());
        true
    }

    /// Whether `DAV:lockdiscovery` is asked for (by name, or by `allprop`).
    fn wants_locks(&self) -> bool {
        match &self.kind {
            PropfindKind::AllProp(_) => true,
            PropfindKind::PropName => false,
            PropfindKind::Prop(names) => names.iter().any(|n| is_dav_named(n, "lockdiscovery")),
        }
    }

    /// Writes a lock property of `meta`; false when `name` is not one.
    fn write_lock_prop(&self, w: &mut XmlWriter, meta: &Meta, name: &PropName) -> bool {
        if is_dav_named(name, "supportedlock") {
            lock::write_supported(w, self.locking);
        } else if is_dav_named(name, "lockdiscovery") {
            match &self.locks {
                Some(l) => l.write_discovery(w, meta),
                None => {
                    w.empty("D:lockdiscovery", &[]);
                }
            }
        } else {
            return false;
        }
        true
    }

    /// Whether `oc:checksums` is among the names asked for (never part of `allprop`).
    pub(super) fn wants_checksums(&self) -> bool {
        matches!(&self.kind, PropfindKind::Prop(names) if names.iter().any(live::is_checksums))
    }

    /// Whether `DAV:sync-token` is among the names asked for.
    fn wants_sync_token(&self) -> bool {
        matches!(&self.kind, PropfindKind::Prop(names) if names.iter().any(is_sync_token))
    }

    pub(super) fn needs_dead(&self) -> bool {
        match &self.kind {
            PropfindKind::AllProp(_) | PropfindKind::PropName => true,
            PropfindKind::Prop(names) => names.iter().any(|n| !live::is_protected(n)),
        }
    }

    pub(super) fn write(&self, w: &mut XmlWriter, href: &str, meta: &Meta, dead: &[DeadProp]) {
        w.start("D:response", &[]).text_element("D:href", href);
        let mut found = XmlWriter::new();
        let mut missing: Vec<&PropName> = Vec::new();
        let dead_display = dead
            .iter()
            .any(|d| d.name.ns == "DAV:" && d.name.local == "displayname");
        match &self.kind {
            PropfindKind::AllProp(_) => {
                for n in live::names(meta) {
                    if !self.write_lock_prop(&mut found, meta, &n) {
                        live::write(&mut found, meta, &n);
                    }
                }
                if !dead_display {
                    found.text_element("D:displayname", live::display_name(meta));
                }
                for d in dead {
                    write_dead(&mut found, d);
                }
            }
            PropfindKind::PropName => {
                for n in live::names(meta) {
                    found.start_prop(&n, true);
                }
                if !dead_display {
                    found.empty("D:displayname", &[]);
                }
                for d in dead {
                    found.start_prop(&d.name, true);
                }
            }
            PropfindKind::Prop(names) => {
                for n in names {
                    if self.write_lock_prop(&mut found, meta, n)
                        || self.write_quota_prop(&mut found, meta, n)
                        || live::write(&mut found, meta, n)
                    {
                        continue;
                    }
                    if is_sync_token(n)
                        && meta.is_collection()
                        && let Some((tokens, watermark)) = &self.sync
                    {
                        let token = tokens.issue(meta, SyncLevel::One, *watermark);
                        found.text_element("D:sync-token", &token);
                        continue;
                    }
                    if let Some(d) = dead.iter().find(|d| &d.name == n) {
                        write_dead(&mut found, d);
                    } else if n.ns == "DAV:" && n.local == "displayname" {
                        found.text_element("D:displayname", live::display_name(meta));
                    } else {
                        missing.push(n);
                    }
                }
            }
        }
        if !found.is_empty() {
            w.start("D:propstat", &[]).start("D:prop", &[]);
            w.fragment(std::str::from_utf8(&found.finish()).unwrap_or(""));
            w.end("D:prop")
                .text_element("D:status", &status_line(StatusCode::OK))
                .end("D:propstat");
        }
        if !missing.is_empty() && !self.brief {
            w.start("D:propstat", &[]).start("D:prop", &[]);
            for n in missing {
                w.start_prop(n, true);
            }
            w.end("D:prop")
                .text_element("D:status", &status_line(StatusCode::NOT_FOUND))
                .end("D:propstat");
        }
        w.end("D:response");
    }
}

/// Takes the PROPPATCH instructions that set a modification time out of `ops`: `DAV:getlastmodified`
/// and Windows' `Win32LastModifiedTime` (HTTP dates), and `DAV:lastmodified` (seconds since
/// 1970, as rclone sends it). `oc:checksums` is taken out too (the server computes it). Returns
/// the rest and the last time set.
fn take_times(
    ops: Vec<PatchInstruction>,
) -> DavResult<(Vec<PatchInstruction>, Option<std::time::SystemTime>)> {
    let mut rest = Vec::with_capacity(ops.len());
    let mut modified = None;
    for op in ops {
        let PatchInstruction::Set { name, value } = &op else {
            rest.push(op);
            continue;
        };
        let text = value.trim();
        let time = match (name.ns.as_str(), name.local.as_str()) {
            ("DAV:", "getlastmodified")
            | ("urn:schemas-microsoft-com:", "Win32LastModifiedTime") => {
                davrepl_proto::dates::parse_http_date(text)
            }
            ("DAV:", "lastmodified") => super::write::parse_mtime(text).ok(),
            (ns, local) if live::is_oc_checksums(ns, local) => continue,
            _ => {
                rest.push(op);
                continue;
            }
        };
        // A time every store keeps exactly (an HTTP date may name a year up to 9999).
        let t = time.and_then(super::write::storable_time).ok_or_else(|| {
            DavError::bad_request(format!("{} is not a time this server reads", name.local))
        })?;
        modified = Some(t);
    }
    Ok((rest, modified))
}

fn is_sync_token(n: &PropName) -> bool {
    is_dav_named(n, "sync-token")
}

/// RFC 4331's two properties.
#[derive(Clone, Copy)]
enum QuotaProp {
    Used,
    Available,
}

fn quota_prop(n: &PropName) -> Option<QuotaProp> {
    if is_dav_named(n, "quota-used-bytes") {
        Some(QuotaProp::Used)
    } else if is_dav_named(n, "quota-available-bytes") {
        Some(QuotaProp::Available)
    } else {
        None
    }
}

fn is_dav_named(n: &PropName, local: &str) -> bool {
    n.ns == "DAV:" && n.local == local
}

fn write_dead(w: &mut XmlWriter, d: &DeadProp) {
    if d.value.is_empty() {
        w.start_prop(&d.name, true);
    } else {
        w.start_prop(&d.name, false)
            .fragment(&d.value)
            .end_prop(&d.name);
    }
}

/// `413` when a request names more properties than [`Limits::max_props`](crate::Limits).
pub(super) fn check_prop_count(count: usize, limits: &crate::Limits) -> DavResult<()> {
    if count > limits.max_props {
        return Err(DavError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("more than {} properties requested", limits.max_props),
        ));
    }
    Ok(())
}

pub(crate) async fn propfind<S, B>(ctx: &Ctx<S>, body: B) -> DavResult<Response<DavBody>>
where
    S: ReplStore,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = ctx.shared.config.limits;
    let bytes = read_small_body(body, limits.xml.max_bytes).await?;
    let request = parse_propfind(&bytes, &limits.xml)?;
    let count = match &request.kind {
        PropfindKind::Prop(n) | PropfindKind::AllProp(n) => n.len(),
        PropfindKind::PropName => 0,
    };
    check_prop_count(count, &limits)?;
    let depth = ctx.head.depth.unwrap_or(Depth::Infinity);
    if matches!(depth, Depth::Infinity | Depth::InfinityNoRoot) && !limits.allow_depth_infinity {
        return Err(DavError::new(
            StatusCode::FORBIDDEN,
            "Depth: infinity is disabled on this server",
        )
        .with_condition("propfind-finite-depth"));
    }
    if let Some(repl) = request.root.as_ref().and_then(davrepl_proto::xml::repl_of) {
        let root = ctx.store().head(&ctx.path).await?;
        if !root.is_collection() {
            return Err(DavError::bad_request(
                "a replication PROPFIND needs a collection",
            ));
        }
        return super::manifest::propfind_manifest(ctx, repl, request.kind, depth, root).await;
    }
    let mut req = PropRequest::new(request.kind, ctx.head.brief);
    req.locking = ctx.store().capabilities().locking;
    if req.locking && req.wants_locks() {
        req.locks = LockProps::read(ctx, depth != Depth::Zero).await?;
    }
    if req.wants_quota()
        && let Some(used) = ctx.store().usage().await?
    {
        let left = limits.quota_bytes.map(|q| q.saturating_sub(used));
        req.quota = Some((used, left));
    }
    if req.wants_sync_token() {
        // One state of the log for every collection in the response.
        let tokens = SyncTokens::new(ctx).await?;
        req.sync = Some((tokens, ctx.store().watermark().await?));
    }
    let mut root = ctx.store().props(&ctx.path).await?;
    ctx.check_read(&ctx.head.condition, &root.meta).await?;
    if req.wants_checksums() {
        live::fill_digests(ctx.store(), &mut root.meta).await?;
    }
    let mut w = XmlWriter::new();
    w.declaration().fragment(MULTISTATUS_OPEN);
    if !matches!(depth, Depth::OneNoRoot | Depth::InfinityNoRoot) {
        let href = ctx.href(&root.meta.path, root.meta.is_collection());
        req.write(&mut w, &href, &root.meta, &root.props);
    }
    let list_depth = match depth {
        Depth::Zero => None,
        Depth::One | Depth::OneNoRoot => Some(store::Depth::One),
        Depth::Infinity | Depth::InfinityNoRoot => Some(store::Depth::Infinity),
    };
    let head = w.take();
    let Some(list_depth) = list_depth.filter(|_| root.meta.is_collection()) else {
        let mut w = XmlWriter::new();
        w.end("D:multistatus");
        let all = [head, w.finish()].concat();
        return Ok(multistatus_response(
            StatusCode::MULTI_STATUS,
            body::full(all),
        ));
    };
    let members = Members {
        shared: ctx.shared.clone(),
        path: ctx.path.clone(),
        depth: list_depth,
        req,
        after: None,
    };
    let body = multistatus::stream(head, members, "D:multistatus");
    Ok(multistatus_response(StatusCode::MULTI_STATUS, body))
}

/// The members of a collection, one store page per chunk.
struct Members<S> {
    shared: Arc<Shared<S>>,
    path: ResourcePath,
    depth: store::Depth,
    req: PropRequest,
    after: Option<ResourcePath>,
}

impl<S: ReplStore> Rows for Members<S> {
    async fn next_chunk(&mut self, w: &mut XmlWriter) -> Result<bool, StoreError> {
        let opts = ListOptions::new(self.depth, self.shared.config.limits.page_size)
            .after(self.after.take())
            .with_props(self.req.needs_dead());
        let mut listing = self.shared.store.list(&self.path, opts).await?;
        if self.req.wants_checksums() {
            let metas = listing.entries.iter_mut().map(|e| &mut e.meta);
            live::fill_all_digests(&self.shared.store, metas).await?;
        }
        for Entry { meta, props } in &listing.entries {
            let href = self
                .shared
                .config
                .mount
                .href(&meta.path, meta.is_collection());
            self.req.write(w, &href, meta, props);
        }
        self.after = listing.next;
        Ok(self.after.is_none())
    }
}

pub(crate) async fn proppatch<S, B>(ctx: &Ctx<S>, body: B) -> DavResult<Response<DavBody>>
where
    S: ReplStore,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = ctx.shared.config.limits;
    let bytes = read_small_body(body, limits.xml.max_bytes).await?;
    let ops = parse_proppatch(&bytes, &limits.xml)?;
    if ops.len() > limits.max_props {
        return Err(DavError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("more than {} properties in one PROPPATCH", limits.max_props),
        ));
    }
    let cond = ctx.head.condition.clone();
    let name_of = |op: &PatchInstruction| match op {
        PatchInstruction::Set { name, .. } | PatchInstruction::Remove(name) => name.clone(),
    };
    let names: BTreeSet<PropName> = ops.iter().map(name_of).collect();
    // Modification times a client sets are taken out and applied with the same write.
    let (ops, modified) = if ctx.shared.config.client_times {
        take_times(ops)?
    } else {
        (ops, None)
    };
    let protected: BTreeSet<PropName> =
        ops.iter().map(name_of).filter(live::is_protected).collect();
    let href = ctx.href(&ctx.path, false);
    let mut w = XmlWriter::new();
    w.declaration()
        .fragment(MULTISTATUS_OPEN)
        .start("D:response", &[]);
    let group =
        |w: &mut XmlWriter, names: &mut dyn Iterator<Item = &PropName>, code: StatusCode| {
            let mut names = names.peekable();
            if names.peek().is_none() {
                return;
            }
            w.start("D:propstat", &[]).start("D:prop", &[]);
            for n in names {
                w.start_prop(n, true);
            }
            w.end("D:prop")
                .text_element("D:status", &status_line(code))
                .end("D:propstat");
        };
    if !protected.is_empty() {
        // Nothing is applied: the protected ones are forbidden, the rest failed with them.
        let meta = ctx.store().head(&ctx.path).await?;
        w.text_element("D:href", &ctx.href(&meta.path, meta.is_collection()));
        group(&mut w, &mut protected.iter(), StatusCode::FORBIDDEN);
        group(
            &mut w,
            &mut names.iter().filter(|n| !protected.contains(*n)),
            StatusCode::FAILED_DEPENDENCY,
        );
        w.start("D:error", &[])
            .empty("D:cannot-modify-protected-property", &[])
            .end("D:error");
        w.end("D:response").end("D:multistatus");
        return Ok(multistatus_response(
            StatusCode::MULTI_STATUS,
            body::full(w.finish()),
        ));
    }
    let patch = ops
        .into_iter()
        .map(|op| match op {
            PatchInstruction::Set { name, value } => PropPatch::Set(DeadProp { name, value }),
            PatchInstruction::Remove(name) => PropPatch::Remove(name),
        })
        .collect();
    let mut opts = store::PatchOptions::from(cond);
    opts.modified = modified;
    let out = ctx.store().patch_props(&ctx.path, patch, opts).await?;
    let _ = href;
    w.text_element(
        "D:href",
        &ctx.href(&out.meta.path, out.meta.is_collection()),
    );
    group(&mut w, &mut names.iter(), StatusCode::OK);
    w.end("D:response").end("D:multistatus");
    let status = if out.transformed {
        StatusCode::from_u16(210).unwrap_or(StatusCode::MULTI_STATUS)
    } else {
        StatusCode::MULTI_STATUS
    };
    let mut resp = multistatus_response(status, body::full(w.finish()));
    set_etag(&mut resp, &out.meta);
    set_resource_tag(&mut resp, &out.meta);
    set_repl_uid(&mut resp, &out.meta);
    Ok(resp)
}

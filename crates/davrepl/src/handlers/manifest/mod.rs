//! Replication manifests (SEARCH and PROPFIND variants, spec §2) and plain SEARCH.
//!
//! A manifest is the list of changes in a scope since the state a client's collblob records.
//! The rows come from the store's change log in sequence order ([`Engine`]), so the cost
//! follows the number of changes, not the size of the collection. Rules applied on top:
//!
//! - rows the collblob already covers (watermark, or listed as seen) are skipped;
//! - a changed item that no longer matches `WHERE` becomes a `delete` row;
//! - items acknowledged in `resourcetaglist` at their current version are skipped and recorded;
//! - in deep scopes an ancestor that changed later than a member is pulled forward so parents
//!   come before children; a move's tombstone precedes its upsert (I10);
//! - `Range: rows=` pages the list; the new collblob covers only the delivered rows (I6).

mod client;
mod engine;
mod output;
mod paging;
mod search;

use crate::handlers::names;
use davrepl_proto::collblob::{self, BlobKind};
use davrepl_proto::href::split_absolute;
use davrepl_proto::is_repl_ns;
use davrepl_proto::rows::{self, RowSpec};
use davrepl_proto::sql;
use davrepl_proto::xml::{PropfindKind, ReplRequest, parse_search};
use davrepl_store::{self as store, Meta, ReplStore, ResourcePath};
use http::{Response, StatusCode};
use http_body::Body;

use super::{Ctx, read_small_body};
use crate::BoxError;
use crate::body::DavBody;
use crate::error::{DavError, DavResult};

use client::*;
use engine::*;
use output::*;
use paging::*;
use search::*;

/// A manifest request after parsing, before the rows are computed.
struct Manifest {
    plan: Plan,
    base: BlobBase,
    output: Output,
    /// The collblob the client sent (returned unchanged by a count-only request).
    input_blob: Option<String>,
}

/// Resolves the scope URL of a query against the request.
/// The scope of a SEARCH (manifest or plain): it must lie inside the Request-URI, and the
/// principal must be allowed to read it, like any path the request touches.
fn checked_scope<S: ReplStore>(ctx: &Ctx<S>, url: &str) -> DavResult<ResourcePath> {
    let scope = resolve_scope(ctx, url)?;
    if !scope.is_within(&ctx.path) {
        return Err(DavError::new(
            StatusCode::FORBIDDEN,
            "the scope lies outside the Request-URI",
        ));
    }
    ctx.authorize(crate::config::Access::ReadTree, &scope)?;
    Ok(scope)
}

fn resolve_scope<S: ReplStore>(ctx: &Ctx<S>, url: &str) -> DavResult<ResourcePath> {
    if url.is_empty() {
        return Ok(ctx.path.clone());
    }
    let path_part = match split_absolute(url) {
        Some((authority, path)) => {
            if !ctx.same_authority(authority) {
                return Err(DavError::new(
                    StatusCode::FORBIDDEN,
                    "the scope is on another server",
                ));
            }
            path
        }
        None if url.starts_with('/') => url,
        None => {
            // Relative to the Request-URI.
            let base = ctx.href(&ctx.path, true);
            return resolve_scope(ctx, &format!("{base}{url}"));
        }
    };
    let mount = &ctx.shared.config.mount;
    if !mount.contains_public(path_part) {
        return Err(DavError::new(
            StatusCode::FORBIDDEN,
            "the scope is outside this WebDAV namespace",
        ));
    }
    Ok(mount.resolve_public(path_part)?)
}

/// Evaluates `If` against the request collection (SEARCH and PROPFIND manifests read state,
/// so a false condition is `412` with nothing issued).
async fn check_if<S: ReplStore>(ctx: &Ctx<S>, meta: &Meta) -> DavResult<()> {
    ctx.check_read(&ctx.head.condition, meta).await
}

fn row_specs<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Option<Vec<RowSpec>>> {
    match ctx.header(&names::RANGE)? {
        Some(v) => Ok(rows::parse(v, ctx.shared.config.limits.max_row_ranges)?),
        None => Ok(None),
    }
}

/// `SEARCH`: a manifest when the body has `repl`, a plain query otherwise.
pub(crate) async fn search<S, B>(ctx: &Ctx<S>, body: B) -> DavResult<Response<DavBody>>
where
    S: ReplStore,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = ctx.shared.config.limits;
    let bytes = read_small_body(body, limits.xml.max_bytes).await?;
    let req = parse_search(&bytes, &limits.xml)?;
    if req.basicsearch && req.sql.is_none() {
        return Err(DavError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "DAV:basicsearch is not supported; use DAV:sql",
        ));
    }
    let target = ctx.store().head(&ctx.path).await?;
    check_if(ctx, &target).await?;
    match req.repl {
        Some(repl) => search_manifest(ctx, repl, req.sql).await,
        None => {
            let text = req
                .sql
                .ok_or_else(|| DavError::bad_request("SEARCH needs a DAV:sql query"))?;
            plain_search(ctx, &text).await
        }
    }
}

async fn search_manifest<S: ReplStore>(
    ctx: &Ctx<S>,
    repl: ReplRequest,
    sql_text: Option<String>,
) -> DavResult<Response<DavBody>> {
    let limits = ctx.shared.config.limits;
    let secret = ctx.store().secret().await?;
    let blob_text = repl.collblob.clone().filter(|t| !t.trim().is_empty());
    let blob = match &blob_text {
        Some(t) => Some(check_blob(ctx, t, &secret, BlobKind::Search)?),
        None => None,
    };
    let query_text = match (&sql_text, &blob) {
        (Some(q), _) if !q.trim().is_empty() => q.clone(),
        (_, Some(b)) => b.query.clone(),
        _ => {
            return Err(DavError::bad_request(
                "a first-sync manifest needs a DAV:sql query",
            ));
        }
    };
    let query = sql::parse(&query_text, &limits.sql).map_err(|e| match (&sql_text, e) {
        (None, _) => invalid_collblob("its stored query no longer parses"),
        (Some(_), e) => e.into(),
    })?;
    let scope = checked_scope(ctx, &query.scope.url)?;
    let scope_meta = ctx.store().head(&scope).await?;
    if !scope_meta.is_collection() {
        return Err(DavError::bad_request("the scope is not a collection"));
    }
    let binding = collblob::digest(query.binding(scope.as_str()).as_bytes());
    if let Some(b) = &blob {
        if b.binding != binding {
            return Err(invalid_collblob(
                "the query differs from the one it was issued for",
            ));
        }
        if b.scope_rid != scope_meta.rid.0 {
            return Err(invalid_collblob(
                "the scope collection was deleted and re-created",
            ));
        }
    }
    let mut prefixes = Prefixes::new(&repl.ns);
    let columns = sql_columns(&query, &mut prefixes)?;
    let (depth, collections_only) = traversal_depth(query.scope.traversal);
    let needs = needs_props(&columns, query.filter.as_ref());
    let client = ClientState::new(ctx.store().store_id(), blob.as_ref(), &repl);
    let mut plan = client.plan(
        scope,
        depth,
        false,
        collections_only,
        Filter::new(query.filter.clone(), &ctx.shared.config.limits),
        needs,
    );
    plan.checksums = columns.has_checksums();
    let manifest = Manifest {
        plan,
        base: BlobBase::new(
            ctx,
            BlobKind::Search,
            scope_meta.rid,
            binding,
            query_text,
            secret,
        ),
        output: Output::new(ctx, columns, prefixes)?,
        input_blob: blob_text,
    };
    respond(ctx, manifest).await
}

/// PROPFIND with a `repl` child (spec §2.2): the Depth header chooses the scope.
pub(crate) async fn propfind_manifest<S: ReplStore>(
    ctx: &Ctx<S>,
    repl: ReplRequest,
    kind: PropfindKind,
    depth: davrepl_proto::headers::Depth,
    root: Meta,
) -> DavResult<Response<DavBody>> {
    use davrepl_proto::headers::Depth as D;
    check_if(ctx, &root).await?;
    let secret = ctx.store().secret().await?;
    let blob_text = repl.collblob.clone().filter(|t| !t.trim().is_empty());
    let blob = match &blob_text {
        Some(t) => Some(check_blob(ctx, t, &secret, BlobKind::Propfind)?),
        None => None,
    };
    let (store_depth, include_scope, label) = match depth {
        D::Zero => (store::Depth::Zero, true, "0"),
        D::One => (store::Depth::One, true, "1"),
        D::OneNoRoot => (store::Depth::One, false, "1,noroot"),
        D::Infinity => (store::Depth::Infinity, true, "infinity"),
        D::InfinityNoRoot => (store::Depth::Infinity, false, "infinity,noroot"),
    };
    let binding = collblob::digest(format!("PROPFIND {label} {}", ctx.path).as_bytes());
    if let Some(b) = &blob {
        if b.binding != binding {
            return Err(invalid_collblob(
                "the Request-URI or Depth differs from the one it was issued for",
            ));
        }
        if b.scope_rid != root.rid.0 {
            return Err(invalid_collblob(
                "the collection was deleted and re-created",
            ));
        }
    }
    let mut prefixes = Prefixes::new(&repl.ns);
    let columns = match kind {
        PropfindKind::AllProp(_) => Columns::All,
        PropfindKind::PropName => Columns::Names,
        PropfindKind::Prop(names) => Columns::Named(
            names
                .into_iter()
                .map(|n| {
                    let ns = if is_repl_ns(&n.ns) {
                        repl.ns.clone()
                    } else {
                        n.ns.clone()
                    };
                    let tag = prefixes.tag(&ns, &n.local);
                    OutCol {
                        ns: n.ns,
                        local: n.local,
                        tag,
                    }
                })
                .collect(),
        ),
    };
    let needs = needs_props(&columns, None);
    let client = ClientState::new(ctx.store().store_id(), blob.as_ref(), &repl);
    let mut plan = client.plan(
        ctx.path.clone(),
        store_depth,
        include_scope,
        false,
        Filter::new(None, &ctx.shared.config.limits),
        needs,
    );
    plan.checksums = columns.has_checksums();
    let manifest = Manifest {
        plan,
        base: BlobBase::new(
            ctx,
            BlobKind::Propfind,
            root.rid,
            binding,
            String::new(),
            secret,
        ),
        output: Output::new(ctx, columns, prefixes)?,
        input_blob: blob_text,
    };
    respond(ctx, manifest).await
}

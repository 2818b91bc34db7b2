//! PUT, DELETE, MKCOL, COPY and MOVE.

use crate::handlers::names;
use davrepl_proto::headers::Depth;
use davrepl_proto::href::split_absolute;
use davrepl_store::{
    self as store, ErrorKind, PutOptions, ReplStore, ResourcePath, TransferOptions,
};
use http::{Response, StatusCode, header};
use http_body::Body;

use super::{
    Ctx, body_stream, read_small_body, set_etag, set_repl_uid, set_resource_tag, status_only,
};
use crate::BoxError;
use crate::body::DavBody;
use crate::error::{DavError, DavResult};

/// Status of a successful write: `210 Content Different` when the store transformed it.
fn write_status(transformed: bool, created: bool) -> StatusCode {
    if transformed {
        StatusCode::from_u16(210).unwrap_or(StatusCode::OK)
    } else if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    }
}

pub(crate) async fn put<S, B>(ctx: &Ctx<S>, body: B) -> DavResult<Response<DavBody>>
where
    S: ReplStore,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    if ctx.parts.headers.contains_key(header::CONTENT_RANGE) {
        return Err(DavError::bad_request(
            "partial PUT with Content-Range is not supported",
        ));
    }
    if ctx.path.is_root() || ctx.parts.uri.path().ends_with('/') {
        return Err(DavError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "PUT needs a non-collection path",
        ));
    }
    let max = ctx.shared.config.limits.max_put_bytes;
    if let Some(len) = ctx.header(&names::CONTENT_LENGTH)?
        && len.trim().parse::<u64>().is_ok_and(|n| n > max)
    {
        return Err(DavError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("content larger than {max} bytes"),
        ));
    }
    let content_type = ctx.header(&names::CONTENT_TYPE)?.map(str::to_owned);
    let mut opts =
        PutOptions::with_condition(ctx.head.condition.clone()).content_type(content_type);
    opts.max_len = Some(max);
    opts.checksum = oc_checksum(ctx)?;
    opts.quota = ctx.shared.config.limits.quota_bytes;
    let mtime = match ctx.header(&names::X_OC_MTIME)? {
        Some(v) if ctx.shared.config.client_times => Some(parse_mtime(v)?),
        _ => None,
    };
    opts.modified = mtime;
    let out = ctx.store().put(&ctx.path, body_stream(body), opts).await?;
    let mut resp = status_only(write_status(out.transformed, out.created));
    set_etag(&mut resp, &out.meta);
    set_resource_tag(&mut resp, &out.meta);
    set_repl_uid(&mut resp, &out.meta);
    if mtime.is_some() {
        resp.headers_mut()
            .insert("x-oc-mtime", http::HeaderValue::from_static("accepted"));
    }
    Ok(resp)
}

/// The last second every store keeps exactly (2262-04-11T23:47:16Z): the SQL stores keep
/// times as `i64` nanoseconds, and a later time would be stored as another one.
const LAST_STORABLE_SECOND: u64 = i64::MAX as u64 / 1_000_000_000;

/// `t` if every store keeps it exactly (a time a client sets: `X-OC-Mtime`, PROPPATCH).
pub(crate) fn storable_time(t: std::time::SystemTime) -> Option<std::time::SystemTime> {
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    (secs <= LAST_STORABLE_SECOND).then_some(t)
}

/// `X-OC-Mtime`: seconds since the epoch (a fraction is dropped, as ownCloud does), before
/// [`LAST_STORABLE_SECOND`].
pub(crate) fn parse_mtime(v: &str) -> DavResult<std::time::SystemTime> {
    let whole = v.trim().split('.').next().unwrap_or("");
    whole
        .parse::<u64>()
        .ok()
        .and_then(|s| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)))
        .and_then(storable_time)
        .ok_or_else(|| {
            DavError::bad_request("X-OC-Mtime must be seconds since 1970, before April 2262")
        })
}

/// `OC-Checksum: SHA1:hex` (or `MD5:`, `SHA256:`): the upload is refused unless the body has
/// it. An algorithm the server does not know is ignored, as ownCloud does.
fn oc_checksum<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Option<store::Checksum>> {
    let Some(v) = ctx.header(&names::OC_CHECKSUM)? else {
        return Ok(None);
    };
    let algo = v.split(':').next().unwrap_or("").trim();
    if !["SHA1", "MD5", "SHA256"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(algo))
    {
        return Ok(None);
    }
    store::Checksum::parse(v)
        .map(Some)
        .ok_or_else(|| DavError::bad_request("OC-Checksum: expected ALGORITHM:hex digest"))
}

pub(crate) async fn delete<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Response<DavBody>> {
    if matches!(ctx.head.depth, Some(d) if d != Depth::Infinity) {
        // Only infinity is meaningful; refuse 0 and 1 rather than delete more than asked.
        let meta = ctx.store().head(&ctx.path).await?;
        if meta.is_collection() {
            return Err(DavError::bad_request(
                "DELETE of a collection needs Depth: infinity",
            ));
        }
    }
    let cond = ctx.head.condition.clone();
    let old = ctx.store().delete(&ctx.path, cond.into()).await?;
    let mut resp = status_only(StatusCode::NO_CONTENT);
    set_resource_tag(&mut resp, &old);
    Ok(resp)
}

pub(crate) async fn mkcol<S, B>(ctx: &Ctx<S>, body: B) -> DavResult<Response<DavBody>>
where
    S: ReplStore,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let bytes = read_small_body(body, ctx.shared.config.limits.xml.max_bytes).await?;
    if !bytes.is_empty() {
        return Err(DavError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "MKCOL with a body is not supported",
        ));
    }
    let cond = ctx.head.condition.clone();
    match ctx.store().create_collection(&ctx.path, cond.into()).await {
        Ok(out) => {
            let mut resp = status_only(StatusCode::CREATED);
            set_resource_tag(&mut resp, &out.meta);
            set_repl_uid(&mut resp, &out.meta);
            Ok(resp)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            // Exchange answers 409 for an existing collection (spec A19); RFC 4918's 405 stays
            // for anything else in the way.
            let existing = ctx.store().head(&ctx.path).await;
            if existing.is_ok_and(|m| m.is_collection()) {
                Err(DavError::new(
                    StatusCode::CONFLICT,
                    "the collection already exists",
                ))
            } else {
                Err(DavError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "a resource already exists there",
                ))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Resolves the `Destination` header to a path in this namespace.
fn destination<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<ResourcePath> {
    let raw = ctx
        .header(&names::DESTINATION)?
        .ok_or_else(|| DavError::bad_request("Destination header is missing"))?
        .trim();
    let path_part = match split_absolute(raw) {
        Some((authority, path)) => {
            if !ctx.same_authority(authority) {
                return Err(DavError::new(
                    StatusCode::BAD_GATEWAY,
                    "Destination is on another server",
                ));
            }
            path
        }
        None if raw.starts_with('/') => raw,
        None => {
            return Err(DavError::bad_request(
                "Destination is not an absolute URI or path",
            ));
        }
    };
    let path_part = path_part.split(['?', '#']).next().unwrap_or("/");
    super::check_path_limits(&ctx.shared.config.limits, path_part, "Destination")?;
    if !ctx.shared.config.mount.contains_public(path_part) {
        return Err(DavError::new(
            StatusCode::BAD_GATEWAY,
            "Destination is outside this WebDAV namespace",
        ));
    }
    Ok(ctx.shared.config.mount.resolve_public(path_part)?)
}

pub(crate) async fn copy_move<S: ReplStore>(
    ctx: &Ctx<S>,
    moving: bool,
) -> DavResult<Response<DavBody>> {
    let to = destination(ctx)?;
    ctx.authorize(crate::config::Access::WriteTree, &to)?;
    let overwrite = ctx.head.overwrite;
    let depth = match (ctx.head.depth, moving) {
        (None | Some(Depth::Infinity), _) => store::Depth::Infinity,
        (Some(Depth::Zero), false) => store::Depth::Zero,
        (Some(d), _) => {
            return Err(DavError::bad_request(format!(
                "Depth {d:?} is not allowed for {}",
                if moving { "MOVE" } else { "COPY" }
            )));
        }
    };
    let mut opts = TransferOptions::new()
        .depth(depth)
        .overwrite(overwrite)
        .condition(ctx.head.condition.clone());
    opts.quota = ctx.shared.config.limits.quota_bytes;
    let out = if moving {
        ctx.store().rename(&ctx.path, &to, opts).await?
    } else {
        ctx.store().copy(&ctx.path, &to, opts).await?
    };
    Ok(status_only(write_status(out.transformed, out.created)))
}

/// POST to a collection: a new item under a server-chosen name (spec §3.4). Replication state
/// tokens in `If` are ignored (A21); entity-tag conditions and lock tokens apply to the
/// collection.
pub(crate) async fn post<S, B>(ctx: &Ctx<S>, body: B) -> DavResult<Response<DavBody>>
where
    S: ReplStore,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let coll = ctx.store().head(&ctx.path).await?;
    if !coll.is_collection() {
        return Err(DavError::new(
            StatusCode::FORBIDDEN,
            "POST creates members of a collection; the target is not one",
        ));
    }
    let mut cond = ctx.head.condition.clone();
    let mut entity = cond.clone();
    entity.if_lists.clear();
    if !entity.evaluate(&ctx.path, |_| Some(coll.tokens())) {
        return Err(DavError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition failed",
        ));
    }
    cond.if_match = None;
    cond.if_none_match = Some(store::EntityMatch::Any);
    cond.if_lists = cond
        .if_lists
        .into_iter()
        .filter_map(|mut l| {
            l.conditions.retain(|c| !c.term.is_replication_token());
            if matches!(l.resource, store::IfResource::Target) {
                l.resource = store::IfResource::Path(ctx.path.clone());
            }
            (!l.conditions.is_empty()).then_some(l)
        })
        .collect();
    let ext = match ctx.header(&names::CONTENT_TYPE)? {
        Some(ct) if ct.starts_with("message/rfc822") => ".EML",
        _ => "",
    };
    let name = format!("{}{ext}", &store::StoreId::random().to_hex()[..24]);
    let path = ctx
        .path
        .join(&name)
        .map_err(|e| DavError::bad_request(e.to_string()))?;
    let max = ctx.shared.config.limits.max_put_bytes;
    let content_type = ctx.header(&names::CONTENT_TYPE)?.map(str::to_owned);
    let mut opts = PutOptions::with_condition(cond).content_type(content_type);
    opts.max_len = Some(max);
    opts.quota = ctx.shared.config.limits.quota_bytes;
    let out = ctx.store().put(&path, body_stream(body), opts).await?;
    let mut resp = status_only(write_status(out.transformed, true));
    set_etag(&mut resp, &out.meta);
    set_resource_tag(&mut resp, &out.meta);
    set_repl_uid(&mut resp, &out.meta);
    let scheme = ctx.parts.uri.scheme_str().unwrap_or("http");
    let host = ctx.header(&names::HOST)?.unwrap_or("localhost");
    let location = format!("{scheme}://{host}{}", ctx.href(&path, false));
    if let Ok(v) = http::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

//! OPTIONS, GET and HEAD.

use crate::handlers::names;
use davrepl_proto::dates;
use davrepl_proto::headers::ByteRangeSpec;
use davrepl_proto::xml::escape_into;
use davrepl_store::{ByteRange, Condition, Depth, ListOptions, Meta, ReplStore};
use futures_util::StreamExt;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use super::{ALLOW, Ctx, set_etag, set_resource_tag, status_only, text};
use crate::body::{self, DavBody};
use crate::error::{DavError, DavResult};

/// Most members shown on the HTML page of a collection.
const INDEX_LIMIT: usize = 1000;

/// `OPTIONS`: the compliance classes (`2` when the store keeps locks) and the methods.
pub(crate) fn options(locking: bool) -> Response<DavBody> {
    let mut r = status_only(StatusCode::OK);
    let h = r.headers_mut();
    let classes = if locking { "1, 2, 3" } else { "1, 3" };
    h.insert("dav", HeaderValue::from_static(classes));
    h.insert(header::ALLOW, HeaderValue::from_static(ALLOW));
    h.insert("ms-author-via", HeaderValue::from_static("DAV"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// The outcome of the read preconditions.
enum Verdict {
    Proceed,
    NotModified,
}

/// Evaluates `If`, `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`
/// against the state being served (RFC 9110 §13.2.2 order).
async fn read_preconditions<S: ReplStore>(
    ctx: &Ctx<S>,
    cond: &Condition,
    meta: &Meta,
) -> DavResult<Verdict> {
    // If-None-Match on GET/HEAD means 304, not 412: evaluate it separately. (A request
    // without it, the common case, has its condition checked as it is, not copied.)
    let inm = cond.if_none_match.as_ref();
    if inm.is_some() {
        let mut strict = cond.clone();
        strict.if_none_match = None;
        ctx.check_read(&strict, meta).await?;
    } else if !cond.is_empty() {
        ctx.check_read(cond, meta).await?;
    }
    let sent = &ctx.head.read;
    if cond.if_match.is_none()
        && let Some(v) = text(
            &names::IF_UNMODIFIED_SINCE,
            sent.if_unmodified_since.as_ref(),
        )?
        && let Some(t) = dates::parse_http_date(v)
        && secs(meta.modified) > secs(t)
    {
        return Err(DavError::new(
            StatusCode::PRECONDITION_FAILED,
            "modified since",
        ));
    }
    if let Some(inm) = inm {
        let mut c = Condition::none();
        c.if_none_match = Some(inm.clone());
        if !c.evaluate(&ctx.path, |_| Some(meta.tokens())) {
            return Ok(Verdict::NotModified);
        }
    } else if let Some(v) = text(&names::IF_MODIFIED_SINCE, sent.if_modified_since.as_ref())?
        && let Some(t) = dates::parse_http_date(v)
        && secs(meta.modified) <= secs(t)
    {
        return Ok(Verdict::NotModified);
    }
    Ok(Verdict::Proceed)
}

fn secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn common_headers(resp: &mut Response<DavBody>, meta: &Meta) {
    set_etag(resp, meta);
    set_resource_tag(resp, meta);
    if let Ok(v) = HeaderValue::from_bytes(&dates::http_date_bytes(meta.modified)) {
        resp.headers_mut().insert(header::LAST_MODIFIED, v);
    }
}

fn file_response(
    ctx_head: bool,
    meta: &Meta,
    stream: davrepl_store::ByteStream,
    range: Option<ByteRange>,
) -> Response<DavBody> {
    let len = range.map_or(meta.len, |r| r.end - r.start + 1);
    let body = if ctx_head {
        body::empty()
    } else {
        one_piece(stream)
    };
    // A whole body of a GET states its length, and the HTTP stack writes `Content-Length`
    // from it (hyper for HTTP/1 and 2, axum's routes): the header is set here only when the
    // body cannot say (streamed content), and for HEAD (whose empty body says nothing of the
    // item's length; hyper sends none for it, not even for an empty item).
    let length_known = !ctx_head && http_body::Body::size_hint(&body).exact() == Some(len);
    let mut resp = Response::new(body);
    // Room for every header below at once, instead of growing the map three times.
    *resp.headers_mut() = http::HeaderMap::with_capacity(12);
    common_headers(&mut resp, meta);
    let h = resp.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if !length_known {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let octets = || HeaderValue::from_static("application/octet-stream");
    let ct = match meta.content_type.as_deref() {
        Some(ct) => HeaderValue::from_str(ct).unwrap_or_else(|_| octets()),
        None => octets(),
    };
    h.insert(header::CONTENT_TYPE, ct);
    stored_content_is_inert(h);
    if let Some(r) = range {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start, r.end, meta.len)) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// The body of a GET. Content the store holds in memory as one piece (its stream says it has
/// at most one item, and that item is ready) is sent as a complete body, whose length hyper
/// knows and after which it polls nothing; anything else is streamed.
fn one_piece(mut stream: davrepl_store::ByteStream) -> DavBody {
    use futures_util::FutureExt;
    let streamed = |s: davrepl_store::ByteStream| {
        StreamBody::new(s.map(|r| {
            r.map(Frame::data)
                .map_err(|e| Box::new(e) as crate::BoxError)
        }))
        .boxed_unsync()
    };
    if stream.size_hint().1 != Some(1) {
        return streamed(stream);
    }
    match stream.next().now_or_never() {
        Some(Some(Ok(bytes))) => body::full(bytes),
        Some(None) => body::empty(),
        Some(Some(Err(e))) => streamed(Box::pin(futures_util::stream::iter([Err(e)]))),
        // Not ready: nothing was taken; the stream goes on as it is.
        None => streamed(stream),
    }
}

/// Stored content is whatever a client uploaded, served from the embedding application's own
/// origin: a browser must never run it (stored XSS). The type a client declared is still sent,
/// so downloads and sync clients see it, but browsers may not sniff a more active type, and
/// any HTML or SVG opened directly runs in a sandbox with no scripts and a unique origin.
fn stored_content_is_inert(h: &mut http::HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
}

fn not_modified(meta: &Meta) -> Response<DavBody> {
    let mut r = status_only(StatusCode::NOT_MODIFIED);
    common_headers(&mut r, meta);
    r
}

pub(crate) async fn get<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Response<DavBody>> {
    let is_head = ctx.parts.method == Method::HEAD;
    let range_spec = match text(&names::RANGE, ctx.head.read.range.as_ref())? {
        Some(v) => ByteRangeSpec::parse(v)?,
        None => None,
    };
    if range_spec.is_some() {
        return Box::pin(get_range(ctx, range_spec, is_head)).await;
    }
    // The common case: one store call gives the bytes and the very state they belong to;
    // the preconditions are checked against that state. (What is rare is boxed on its own,
    // so that this future, moved into place on every GET, stays small.)
    let (meta, stream) = match ctx.store().read(&ctx.path, Default::default()).await {
        Ok(found) => found,
        Err(e) if e.kind() == davrepl_store::ErrorKind::IsCollection => {
            return Box::pin(get_collection(ctx, is_head)).await;
        }
        Err(e) => return Err(e.into()),
    };
    let verdict = if unconditional(ctx) {
        Verdict::Proceed
    } else {
        Box::pin(read_preconditions(ctx, &ctx.head.condition, &meta)).await?
    };
    Ok(match verdict {
        Verdict::NotModified => not_modified(&meta),
        Verdict::Proceed => file_response(is_head, &meta, stream, None),
    })
}

/// Whether the request carries none of the preconditions [`read_preconditions`] evaluates.
fn unconditional<S>(ctx: &Ctx<S>) -> bool {
    let read = &ctx.head.read;
    ctx.head.condition.is_empty()
        && read.if_modified_since.is_none()
        && read.if_unmodified_since.is_none()
}

/// GET of a collection: its event stream when asked for, otherwise an HTML index.
async fn get_collection<S: ReplStore>(ctx: &Ctx<S>, is_head: bool) -> DavResult<Response<DavBody>> {
    let cond = &ctx.head.condition;
    let meta = ctx.store().head(&ctx.path).await?;
    if !is_head && super::events::wanted(ctx) {
        ctx.check_read(cond, &meta).await?;
        return super::events::stream(ctx, &meta).await;
    }
    Ok(match read_preconditions(ctx, cond, &meta).await? {
        Verdict::NotModified => not_modified(&meta),
        Verdict::Proceed => collection_index(ctx, &meta).await?,
    })
}

/// GET with a `Range`.
async fn get_range<S: ReplStore>(
    ctx: &Ctx<S>,
    range_spec: Option<ByteRangeSpec>,
    is_head: bool,
) -> DavResult<Response<DavBody>> {
    let cond = &ctx.head.condition;
    // A byte range needs the length first; if the resource changes between the two steps, go
    // round again.
    for _ in 0..4 {
        let meta = ctx.store().head(&ctx.path).await?;
        if let Verdict::NotModified = read_preconditions(ctx, cond, &meta).await? {
            return Ok(not_modified(&meta));
        }
        if meta.is_collection() {
            return collection_index(ctx, &meta).await;
        }
        let mut range = range_spec;
        if let Some(v) = text(&names::IF_RANGE, ctx.head.read.if_range.as_ref())?
            && v.trim() != meta.etag()
        {
            range = None;
        }
        let resolved = match range {
            None => None,
            Some(spec) => match spec.resolve(meta.len) {
                Some((start, end)) => Some(ByteRange { start, end }),
                None => return Ok(super::range_not_satisfiable("bytes", meta.len)),
            },
        };
        let (read_meta, stream) = ctx.store().read(&ctx.path, resolved.into()).await?;
        if read_meta.version != meta.version {
            continue;
        }
        return Ok(file_response(is_head, &meta, stream, resolved));
    }
    Err(DavError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "resource is changing too fast to read; retry",
    ))
}

/// A small HTML page listing a collection's members, for people with a browser.
async fn collection_index<S: ReplStore>(ctx: &Ctx<S>, meta: &Meta) -> DavResult<Response<DavBody>> {
    let listing = ctx
        .store()
        .list(&ctx.path, ListOptions::new(Depth::One, INDEX_LIMIT))
        .await?;
    let mut html = String::from("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    escape_into(&mut html, ctx.path.as_str(), false);
    html.push_str("</title></head><body><ul>\n");
    for e in &listing.entries {
        html.push_str("<li><a href=\"");
        escape_into(
            &mut html,
            &ctx.href(&e.meta.path, e.meta.is_collection()),
            true,
        );
        html.push_str("\">");
        escape_into(&mut html, e.meta.path.name(), false);
        if e.meta.is_collection() {
            html.push('/');
        }
        html.push_str("</a></li>\n");
    }
    if listing.next.is_some() {
        html.push_str("<li>…</li>\n");
    }
    html.push_str("</ul></body></html>\n");
    let len = html.len();
    let mut resp = Response::new(body::full(html));
    common_headers(&mut resp, meta);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}

//! The request handlers, one module per group of methods, and what they share.

mod events;
mod lock;
mod log;
mod manifest;
mod method;
mod multistatus;
mod props;
mod read;
mod subscribe;
mod sync;
mod wait;
mod write;

use std::sync::Arc;

use bytes::Bytes;
use davrepl_proto::headers::{self, parse_entity_match, parse_if};
use davrepl_proto::href::split_absolute;
use davrepl_store::{
    ByteStream, Condition, ErrorKind, IfList, IfResource, ReplStore, ResourcePath, StoreError,
};
use futures_util::StreamExt;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, BodyStream, Limited};
use tracing::Instrument;

use crate::BoxError;
use crate::body::DavBody;
use crate::config::{Access, Principal, Shared};
use crate::error::{DavError, DavResult};
use method::DavMethod;

/// Methods served under the mount, for `Allow`.
pub(crate) const ALLOW: &str = DavMethod::ALLOW;

pub(crate) static RESOURCE_TAG: HeaderName = HeaderName::from_static("resourcetag");
pub(crate) static REPL_UID: HeaderName = HeaderName::from_static("repl-uid");

/// What every handler gets: the configuration, the request head and the resolved target.
pub(crate) struct Ctx<S> {
    pub(crate) shared: Arc<Shared<S>>,
    pub(crate) parts: Parts,
    pub(crate) path: ResourcePath,
    /// The request headers every method may use, parsed once by the dispatcher.
    pub(crate) head: Head,
}

/// The request headers every method may use, parsed and checked once, before any handler runs
/// (a malformed one is refused for every method).
#[derive(Debug, Default)]
pub(crate) struct Head {
    /// `Depth`, if sent.
    pub(crate) depth: Option<headers::Depth>,
    /// `If`, `If-Match` and `If-None-Match` together.
    pub(crate) condition: Condition,
    /// `Overwrite` (true when absent).
    pub(crate) overwrite: bool,
    /// `Brief: t` (leave 404 property stats out of a multistatus).
    pub(crate) brief: bool,
    /// The headers only GET and HEAD read, as sent: `Range`, `If-Range`, `If-Modified-Since`
    /// and `If-Unmodified-Since` (the read handler parses them; a malformed date is ignored,
    /// as RFC 9110 says).
    pub(crate) read: ReadHeaders,
}

/// See [`Head::read`].
#[derive(Debug, Default)]
pub(crate) struct ReadHeaders {
    pub(crate) range: Option<HeaderValue>,
    pub(crate) if_range: Option<HeaderValue>,
    pub(crate) if_modified_since: Option<HeaderValue>,
    pub(crate) if_unmodified_since: Option<HeaderValue>,
}

/// The first value of each request header the dispatcher parses for every method, found in
/// one pass over the request's headers (a request carries a few; a lookup by name hashes the
/// name, and there are ten to look up).
#[derive(Default)]
struct Sent<'a> {
    depth: Option<&'a HeaderValue>,
    if_: Option<&'a HeaderValue>,
    if_match: Option<&'a HeaderValue>,
    if_none_match: Option<&'a HeaderValue>,
    overwrite: Option<&'a HeaderValue>,
    brief: Option<&'a HeaderValue>,
    range: Option<&'a HeaderValue>,
    if_range: Option<&'a HeaderValue>,
    if_modified_since: Option<&'a HeaderValue>,
    if_unmodified_since: Option<&'a HeaderValue>,
}

impl<'a> Sent<'a> {
    fn scan(headers: &'a http::HeaderMap) -> Self {
        let mut s = Self::default();
        for (name, value) in headers {
            let slot = if *name == names::DEPTH {
                &mut s.depth
            } else if *name == names::IF {
                &mut s.if_
            } else if *name == names::IF_MATCH {
                &mut s.if_match
            } else if *name == names::IF_NONE_MATCH {
                &mut s.if_none_match
            } else if *name == names::OVERWRITE {
                &mut s.overwrite
            } else if *name == names::BRIEF {
                &mut s.brief
            } else if *name == names::RANGE {
                &mut s.range
            } else if *name == names::IF_RANGE {
                &mut s.if_range
            } else if *name == names::IF_MODIFIED_SINCE {
                &mut s.if_modified_since
            } else if *name == names::IF_UNMODIFIED_SINCE {
                &mut s.if_unmodified_since
            } else {
                continue;
            };
            // The first value, as `HeaderMap::get` gives.
            slot.get_or_insert(value);
        }
        s
    }

    /// The `Depth` header, if any.
    fn depth(&self) -> DavResult<Option<headers::Depth>> {
        Ok(match text(&names::DEPTH, self.depth)? {
            Some(v) => Some(headers::Depth::parse(v)?),
            None => None,
        })
    }

    fn read_headers(&self) -> ReadHeaders {
        ReadHeaders {
            range: self.range.cloned(),
            if_range: self.if_range.cloned(),
            if_modified_since: self.if_modified_since.cloned(),
            if_unmodified_since: self.if_unmodified_since.cloned(),
        }
    }
}

/// A request header's value as text: refused unless it is visible ASCII.
pub(crate) fn text<'a>(
    name: &HeaderName,
    value: Option<&'a HeaderValue>,
) -> DavResult<Option<&'a str>> {
    match value {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| DavError::bad_request(format!("{name} header is not visible ASCII"))),
    }
}

impl<S: ReplStore> Ctx<S> {
    pub(crate) fn store(&self) -> &S {
        &self.shared.store
    }

    /// A header as text; a non-visible-ASCII value is a client mistake.
    pub(crate) fn header(&self, name: &http::HeaderName) -> DavResult<Option<&str>> {
        text(name, self.parts.headers.get(name))
    }

    /// The combined precondition of `If`, `If-Match` and `If-None-Match`.
    fn condition(&self, sent: &Sent<'_>) -> DavResult<Condition> {
        let mut c = Condition::none();
        c.principal = self
            .parts
            .extensions
            .get::<Principal>()
            .map(|p| p.0.clone());
        if let Some(v) = text(&names::IF_MATCH, sent.if_match)? {
            c.if_match = Some(parse_entity_match("If-Match", v)?);
        }
        if let Some(v) = text(&names::IF_NONE_MATCH, sent.if_none_match)? {
            c.if_none_match = Some(parse_entity_match("If-None-Match", v)?);
        }
        if let Some(v) = text(&names::IF, sent.if_)? {
            if v.len() > self.shared.config.limits.max_if_bytes {
                return Err(DavError::bad_request(format!(
                    "If header longer than {} bytes",
                    self.shared.config.limits.max_if_bytes
                )));
            }
            let lists = parse_if(v, self.shared.config.limits.max_if_conditions)?;
            c.if_lists = lists
                .into_iter()
                .map(|l| IfList {
                    resource: match l.resource {
                        None => IfResource::Target,
                        Some(uri) => match self.resolve_tagged(&uri) {
                            // A resource the principal may not read is never looked up: its
                            // list behaves like one naming another server (never matches).
                            IfResource::Path(p)
                                if p != self.path && !self.allowed(Access::Read, &p) =>
                            {
                                IfResource::Foreign
                            }
                            r => r,
                        },
                    },
                    conditions: l.conditions,
                })
                .collect();
        }
        Ok(c)
    }

    fn resolve_tagged(&self, uri: &str) -> IfResource {
        if let Some((authority, _)) = split_absolute(uri)
            && !self.same_authority(authority)
        {
            return IfResource::Foreign;
        }
        match self.shared.config.mount.resolve_href(uri) {
            Ok(p) => IfResource::Path(p),
            Err(_) => IfResource::Foreign,
        }
    }

    /// Whether `authority` names this server (as the request's `Host` does).
    pub(crate) fn same_authority(&self, authority: &str) -> bool {
        let host = self
            .parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| self.parts.uri.authority().map(|a| a.as_str()));
        host.is_none_or(|h| h.eq_ignore_ascii_case(authority))
    }

    /// Evaluates a read's condition against `meta`, the state being served (tagged lists that
    /// name other resources look those up); `412` when it is false.
    pub(crate) async fn check_read(
        &self,
        cond: &Condition,
        meta: &davrepl_store::Meta,
    ) -> DavResult<()> {
        if cond.is_empty() {
            return Ok(());
        }
        let mut others = Vec::new();
        for list in &cond.if_lists {
            if let IfResource::Path(p) = &list.resource
                && p != &self.path
                && let Ok(m) = self.store().head(p).await
            {
                others.push((p.clone(), m.tokens()));
            }
        }
        // Lock tokens hold where a lock in force covers the path.
        let mut locks = Vec::new();
        if cond.needs_locks() {
            for p in cond.paths(&self.path) {
                locks.extend(self.store().locks(&p, false).await?);
            }
        }
        let tokens = meta.tokens();
        let ok = cond.evaluate_locked(
            &self.path,
            |p| {
                if p == &self.path {
                    Some(tokens.clone())
                } else {
                    others.iter().find(|(q, _)| q == p).map(|(_, t)| t.clone())
                }
            },
            |p, t| locks.iter().any(|l| l.token == t && l.covers(p)),
        );
        if ok {
            Ok(())
        } else {
            Err(DavError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition failed",
            ))
        }
    }

    /// Whether the authorizer (if any) allows `access` to `path`.
    pub(crate) fn allowed(&self, access: Access, path: &ResourcePath) -> bool {
        self.shared
            .config
            .authorizer
            .as_ref()
            .is_none_or(|auth| auth(self.parts.extensions.get::<Principal>(), access, path))
    }

    /// Refuses the request with 403 unless the authorizer allows `access` to `path`.
    pub(crate) fn authorize(&self, access: Access, path: &ResourcePath) -> DavResult<()> {
        if self.allowed(access, path) {
            Ok(())
        } else {
            Err(DavError::new(StatusCode::FORBIDDEN, "access denied"))
        }
    }

    /// The encoded href of `path`.
    pub(crate) fn href(&self, path: &ResourcePath, collection: bool) -> String {
        self.shared.config.mount.href(path, collection)
    }

    /// The hash of the request's principal that collblobs and sync tokens are bound to.
    pub(crate) fn principal_hash(&self, secret: &[u8]) -> [u8; 32] {
        let principal = self.parts.extensions.get::<Principal>();
        davrepl_proto::collblob::principal_hash(secret, principal.map(|p| p.0.as_str()))
    }
}

/// Reads a whole (small) body, refusing more than `max` bytes.
pub(crate) async fn read_small_body<B>(body: B, max: usize) -> DavResult<Bytes>
where
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(DavError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {max} bytes"),
        )),
        Err(e) => Err(DavError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// The body as a content stream for the store; read errors end it with `BodyAborted`.
pub(crate) fn body_stream<B>(body: B) -> ByteStream
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let frames = BodyStream::new(body)
        .map(|frame| match frame {
            Ok(f) => f.into_data().ok().map(|mut d| {
                let n = bytes::Buf::remaining(&d);
                Ok(bytes::Buf::copy_to_bytes(&mut d, n))
            }),
            Err(e) => {
                let e: BoxError = e.into();
                Some(Err(StoreError::new(
                    ErrorKind::BodyAborted,
                    "reading the request body failed",
                )
                .with_source(e)))
            }
        })
        .filter_map(std::future::ready);
    Box::pin(frames)
}

/// Entry point from the service: never fails, every error is a response.
///
/// Not an `async fn`: the future it returns is the instrumented request future itself, with
/// no outer state machine holding a second copy of it (the service boxes it once).
pub(crate) fn handle<S, B>(
    shared: Arc<Shared<S>>,
    req: Request<B>,
) -> impl Future<Output = Response<DavBody>> + Send + 'static
where
    S: ReplStore,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let span = tracing::info_span!("dav", method = %req.method(), path = %req.uri().path(), status = tracing::field::Empty);
    let is_head = req.method() == Method::HEAD;
    // Finding the current span costs a lookup; skip it when the span records nothing.
    let recording = !span.is_disabled();
    async move {
        let mut resp = match dispatch(shared.clone(), req).await {
            Ok(resp) => resp,
            Err(e) => e.into_response_at(&shared.config.mount),
        };
        if recording {
            tracing::Span::current().record("status", resp.status().as_u16());
        }
        if is_head {
            // Keep Content-Length of the GET it stands for; send no bytes.
            *resp.body_mut() = crate::body::empty();
        }
        resp
    }
    .instrument(span)
}

/// The number of non-empty `/`-separated segments of `raw` (a byte loop: this runs on every
/// request path).
fn segments(raw: &str) -> usize {
    let mut count = 0;
    let mut prev = b'/';
    for &b in raw.as_bytes() {
        if prev == b'/' && b != b'/' {
            count += 1;
        }
        prev = b;
    }
    count
}

/// Refuses (414) a path over the length or segment limits; `what` names it in the answer.
pub(crate) fn check_path_limits(limits: &crate::Limits, raw: &str, what: &str) -> DavResult<()> {
    if raw.len() > limits.max_path_bytes || segments(raw) > limits.max_path_segments {
        return Err(DavError::new(
            StatusCode::URI_TOO_LONG,
            format!("{what} is too long"),
        ));
    }
    Ok(())
}

async fn dispatch<S, B>(shared: Arc<Shared<S>>, req: Request<B>) -> DavResult<Response<DavBody>>
where
    S: ReplStore,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let raw = parts.uri.path();
    check_path_limits(&shared.config.limits, raw, "request path")?;
    let path = shared.config.mount.resolve(raw)?;
    let mut ctx = Ctx {
        shared,
        parts,
        path,
        head: Head::default(),
    };
    let method = DavMethod::parse(&ctx.parts.method);
    ctx.head = {
        let sent = Sent::scan(&ctx.parts.headers);
        let depth = sent.depth()?;
        ctx.authorize(DavMethod::access(method, depth), &ctx.path)?;
        // Malformed request headers are refused for every method, before anything is
        // touched, even where a method would not use them. (Tagged `If` lists are resolved
        // after the authorizer has seen the request: they ask it about the resources they
        // name.)
        Head {
            depth,
            condition: ctx.condition(&sent)?,
            overwrite: headers::parse_overwrite(text(&names::OVERWRITE, sent.overwrite)?)?,
            brief: text(&names::BRIEF, sent.brief)?
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("t")),
            read: sent.read_headers(),
        }
    };
    let Some(method) = method else {
        let mut resp = DavError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not supported here", ctx.parts.method),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
        return Ok(resp);
    };
    // Each method's future is boxed on its own: the request's future stays small (one
    // pointer instead of the largest method's state, ~7.5 KB, moved into place per request),
    // and a GET allocates only what a GET needs.
    match method {
        DavMethod::Options => Ok(read::options(ctx.store().capabilities().locking)),
        DavMethod::Get | DavMethod::Head => Box::pin(read::get(&ctx)).await,
        DavMethod::Put => Box::pin(write::put(&ctx, body)).await,
        DavMethod::Post => Box::pin(write::post(&ctx, body)).await,
        DavMethod::Search => Box::pin(manifest::search(&ctx, body)).await,
        DavMethod::Delete => Box::pin(write::delete(&ctx)).await,
        DavMethod::Mkcol => Box::pin(write::mkcol(&ctx, body)).await,
        DavMethod::Copy => Box::pin(write::copy_move(&ctx, false)).await,
        DavMethod::Move => Box::pin(write::copy_move(&ctx, true)).await,
        DavMethod::Propfind => Box::pin(props::propfind(&ctx, body)).await,
        DavMethod::Proppatch => Box::pin(props::proppatch(&ctx, body)).await,
        DavMethod::Report => Box::pin(sync::report(&ctx, body)).await,
        DavMethod::Lock => Box::pin(lock::lock(&ctx, body)).await,
        DavMethod::Unlock => Box::pin(lock::unlock(&ctx)).await,
        DavMethod::Subscribe => Box::pin(subscribe::subscribe(&ctx)).await,
        DavMethod::Poll => Box::pin(subscribe::poll(&ctx)).await,
        DavMethod::Unsubscribe => Box::pin(subscribe::unsubscribe(&ctx)).await,
    }
}

/// A header value `<token>`, put together on the stack (the header value copies it once).
fn bracketed(token: &[u8]) -> Option<HeaderValue> {
    let mut buf = [0u8; 128];
    let v = buf.get_mut(..token.len() + 2)?;
    v[0] = b'<';
    v[1..=token.len()].copy_from_slice(token);
    v[token.len() + 1] = b'>';
    HeaderValue::from_bytes(v).ok()
}

/// Adds `ResourceTag: <rt:…>`.
pub(crate) fn set_resource_tag(resp: &mut Response<DavBody>, meta: &davrepl_store::Meta) {
    if let Some(v) = bracketed(&meta.resource_tag_bytes()) {
        resp.headers_mut().insert(RESOURCE_TAG.clone(), v);
    }
}

/// Adds `Repl-UID: <rid:…>`.
pub(crate) fn set_repl_uid(resp: &mut Response<DavBody>, meta: &davrepl_store::Meta) {
    if let Some(v) = bracketed(&meta.repl_uid_bytes()) {
        resp.headers_mut().insert(REPL_UID.clone(), v);
    }
}

/// Adds `ETag`.
pub(crate) fn set_etag(resp: &mut Response<DavBody>, meta: &davrepl_store::Meta) {
    if let Ok(v) = HeaderValue::from_bytes(&meta.etag_bytes()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
}

/// `416` with `Content-Range: UNIT */TOTAL`.
pub(crate) fn range_not_satisfiable(unit: &str, total: u64) -> Response<DavBody> {
    let mut r =
        DavError::new(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{unit} */{total}")) {
        r.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    r
}

/// A response with `status` and no body.
pub(crate) fn status_only(status: StatusCode) -> Response<DavBody> {
    let mut r = Response::new(crate::body::empty());
    *r.status_mut() = status;
    r
}

/// Request header names, each made once at compile time: a lookup by `&str` parses and
/// classifies the name on every call.
pub(crate) mod names {
    use http::HeaderName;

    pub(crate) const BRIEF: HeaderName = HeaderName::from_static("brief");
    pub(crate) const CALL_BACK: HeaderName = HeaderName::from_static("call-back");
    pub(crate) const CONTENT_LENGTH: HeaderName = HeaderName::from_static("content-length");
    pub(crate) const CONTENT_TYPE: HeaderName = HeaderName::from_static("content-type");
    pub(crate) const DEPTH: HeaderName = HeaderName::from_static("depth");
    pub(crate) const DESTINATION: HeaderName = HeaderName::from_static("destination");
    pub(crate) const HOST: HeaderName = HeaderName::from_static("host");
    pub(crate) const IF: HeaderName = HeaderName::from_static("if");
    pub(crate) const IF_MATCH: HeaderName = HeaderName::from_static("if-match");
    pub(crate) const IF_MODIFIED_SINCE: HeaderName = HeaderName::from_static("if-modified-since");
    pub(crate) const IF_NONE_MATCH: HeaderName = HeaderName::from_static("if-none-match");
    pub(crate) const IF_RANGE: HeaderName = HeaderName::from_static("if-range");
    pub(crate) const IF_UNMODIFIED_SINCE: HeaderName =
        HeaderName::from_static("if-unmodified-since");
    pub(crate) const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
    pub(crate) const LOCK_TOKEN: HeaderName = HeaderName::from_static("lock-token");
    pub(crate) const NOTIFICATION_TYPE: HeaderName = HeaderName::from_static("notification-type");
    pub(crate) const OC_CHECKSUM: HeaderName = HeaderName::from_static("oc-checksum");
    pub(crate) const OVERWRITE: HeaderName = HeaderName::from_static("overwrite");
    pub(crate) const RANGE: HeaderName = HeaderName::from_static("range");
    pub(crate) const SUBSCRIPTION_ID: HeaderName = HeaderName::from_static("subscription-id");
    pub(crate) const SUBSCRIPTION_LIFETIME: HeaderName =
        HeaderName::from_static("subscription-lifetime");
    pub(crate) const TIMEOUT: HeaderName = HeaderName::from_static("timeout");
    pub(crate) const X_OC_MTIME: HeaderName = HeaderName::from_static("x-oc-mtime");
}

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn segments_count_non_empty_parts() {
        for (raw, n) in [
            ("", 0),
            ("/", 0),
            ("//", 0),
            ("/a", 1),
            ("a", 1),
            ("/a/", 1),
            ("/a//b", 2),
            ("//a///b/c/", 3),
            ("/é/ü", 2),
        ] {
            assert_eq!(segments(raw), n, "{raw}");
            let by_split = raw.split('/').filter(|s| !s.is_empty()).count();
            assert_eq!(segments(raw), by_split, "{raw}");
        }
    }
}

//! LOCK and UNLOCK (RFC 4918 §9.10–9.11), and the lock properties PROPFIND reports.
//!
//! The rules live in the store (checked and granted in the same atomic step as any write); this
//! module reads the request, picks the timeout and writes the answers.

use crate::handlers::names;
use std::time::{Duration, SystemTime};

use davrepl_proto::headers::{self, Depth};
use davrepl_proto::href::Mount;
use davrepl_proto::xml::{XmlWriter, parse_lockinfo};
use davrepl_store::{Lock, LockRequest, LockScope, Meta, ReplStore};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body::Body;

use super::props::multistatus_response;
use super::{Ctx, read_small_body, set_etag, set_repl_uid, set_resource_tag, status_only};
use crate::BoxError;
use crate::body::{self, DavBody};
use crate::error::{DavError, DavResult};

static LOCK_TOKEN: HeaderName = HeaderName::from_static("lock-token");

/// `DAV:supportedlock` of a store that keeps locks: exclusive and shared write locks.
const SUPPORTED: &str = "<D:lockentry><D:lockscope><D:exclusive/></D:lockscope>\
<D:locktype><D:write/></D:locktype></D:lockentry><D:lockentry><D:lockscope><D:shared/>\
</D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>";

/// The timeout to grant for a `Timeout` header value (or none): what the client asked for,
/// within the server's maximum; at least one second.
fn timeout(value: Option<&str>, limits: &crate::Limits) -> Duration {
    let max = limits.max_lock_timeout.max(Duration::from_secs(1));
    match value.and_then(headers::parse_timeout) {
        Some(Some(secs)) => Duration::from_secs(secs.max(1)).min(max),
        Some(None) => max,
        None => limits.default_lock_timeout.min(max),
    }
}

pub(crate) async fn lock<S, B>(ctx: &Ctx<S>, body: B) -> DavResult<Response<DavBody>>
where
    S: ReplStore,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = &ctx.shared.config.limits;
    let bytes = read_small_body(body, limits.xml.max_bytes).await?;
    let timeout = timeout(ctx.header(&names::TIMEOUT)?, limits);
    let cond = ctx.head.condition.clone();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // A refresh: no body, the lock's token in `If`.
        if cond.submitted().next().is_none() {
            return Err(DavError::bad_request(
                "a LOCK without a body refreshes a lock: send its token in an If header",
            ));
        }
        let lock = ctx.store().refresh_lock(&ctx.path, cond, timeout).await?;
        return Ok(answer(ctx, StatusCode::OK, &lock, None));
    }
    let info = parse_lockinfo(&bytes, &limits.xml)?;
    let deep = match ctx.head.depth {
        None | Some(Depth::Infinity) => true,
        Some(Depth::Zero) => false,
        Some(_) => {
            return Err(DavError::bad_request(
                "LOCK takes Depth 0 or infinity".to_owned(),
            ));
        }
    };
    let scope = if info.exclusive {
        LockScope::Exclusive
    } else {
        LockScope::Shared
    };
    let req = LockRequest::new(scope, deep, timeout)
        .owner(info.owner)
        .condition(cond);
    let grant = ctx.store().lock(&ctx.path, req).await?;
    let status = if grant.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = answer(ctx, status, &grant.lock, Some(&grant.meta));
    if let Ok(v) = HeaderValue::from_str(&format!("<{}>", grant.lock.token)) {
        resp.headers_mut().insert(LOCK_TOKEN.clone(), v);
    }
    Ok(resp)
}

/// `<D:prop><D:lockdiscovery>` with `lock`, the answer to a LOCK or a refresh.
fn answer<S: ReplStore>(
    ctx: &Ctx<S>,
    status: StatusCode,
    lock: &Lock,
    created: Option<&Meta>,
) -> Response<DavBody> {
    let mut w = XmlWriter::new();
    w.declaration()
        .start("D:prop", &[("xmlns:D", "DAV:")])
        .start("D:lockdiscovery", &[]);
    write_active(&mut w, lock, &ctx.shared.config.mount, SystemTime::now());
    w.end("D:lockdiscovery").end("D:prop");
    let mut resp = multistatus_response(status, body::full(w.finish()));
    if let Some(meta) = created.filter(|_| status == StatusCode::CREATED) {
        set_etag(&mut resp, meta);
        set_resource_tag(&mut resp, meta);
        set_repl_uid(&mut resp, meta);
    }
    resp
}

pub(crate) async fn unlock<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Response<DavBody>> {
    let value = ctx
        .header(&names::LOCK_TOKEN)?
        .ok_or_else(|| DavError::bad_request("UNLOCK needs a Lock-Token header"))?;
    let token = headers::parse_lock_token(value)?;
    let principal = ctx.head.condition.principal.as_deref();
    ctx.store().unlock(&ctx.path, token, principal).await?;
    Ok(status_only(StatusCode::NO_CONTENT))
}

/// Writes one `DAV:activelock`.
pub(super) fn write_active(w: &mut XmlWriter, lock: &Lock, mount: &Mount, now: SystemTime) {
    let scope = match lock.scope {
        LockScope::Exclusive => "D:exclusive",
        LockScope::Shared => "D:shared",
    };
    // Whole seconds left, rounded up (a lock granted for an hour reports an hour).
    let left = lock.remaining(now) + Duration::from_nanos(999_999_999);
    w.start("D:activelock", &[])
        .start("D:locktype", &[])
        .empty("D:write", &[])
        .end("D:locktype")
        .start("D:lockscope", &[])
        .empty(scope, &[])
        .end("D:lockscope")
        .text_element("D:depth", if lock.deep { "infinity" } else { "0" });
    if let Some(owner) = &lock.owner {
        w.start("D:owner", &[]).fragment(owner).end("D:owner");
    }
    w.text_element("D:timeout", &format!("Second-{}", left.as_secs()))
        .start("D:locktoken", &[])
        .text_element("D:href", &lock.token)
        .end("D:locktoken")
        .start("D:lockroot", &[])
        .text_element("D:href", &mount.href(&lock.root, false))
        .end("D:lockroot")
        .end("D:activelock");
}

/// The lock properties of a PROPFIND: the locks in force on the resources it lists.
pub(super) struct LockProps {
    locks: Vec<Lock>,
    mount: Mount,
    now: SystemTime,
}

impl LockProps {
    /// The locks covering `ctx.path` and, with `below`, those inside it; `None` when the store
    /// keeps no locks.
    pub(super) async fn read<S: ReplStore>(ctx: &Ctx<S>, below: bool) -> DavResult<Option<Self>> {
        if !ctx.store().capabilities().locking {
            return Ok(None);
        }
        Ok(Some(Self {
            locks: ctx.store().locks(&ctx.path, below).await?,
            mount: ctx.shared.config.mount.clone(),
            now: SystemTime::now(),
        }))
    }

    /// Writes `DAV:lockdiscovery` of `meta`.
    pub(super) fn write_discovery(&self, w: &mut XmlWriter, meta: &Meta) {
        let mut covering = self
            .locks
            .iter()
            .filter(|l| l.covers(&meta.path))
            .peekable();
        if covering.peek().is_none() {
            w.empty("D:lockdiscovery", &[]);
            return;
        }
        w.start("D:lockdiscovery", &[]);
        for l in covering {
            write_active(w, l, &self.mount, self.now);
        }
        w.end("D:lockdiscovery");
    }
}

/// Writes `DAV:supportedlock` (empty when the store keeps no locks).
pub(super) fn write_supported(w: &mut XmlWriter, locking: bool) {
    if locking {
        w.start("D:supportedlock", &[])
            .fragment(SUPPORTED)
            .end("D:supportedlock");
    } else {
        w.empty("D:supportedlock", &[]);
    }
}

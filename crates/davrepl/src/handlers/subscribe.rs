//! Exchange 2003 notifications: SUBSCRIBE, POLL and UNSUBSCRIBE.
//!
//! A subscription is a named cursor into the change log, kept in the store (a client may poll
//! any node). POLL reads the log from the cursor to find whether anything of the subscribed
//! kinds happened in scope, answers which subscriptions fired, and acknowledges them (moves
//! their cursors to where it looked) and renews them. UDP `NOTIFY` call-backs are not
//! offered: a SUBSCRIBE with `Call-Back` gets `501`, and clients poll (docs/design-notes.md
//! records how the Exchange SDK's descriptions were read).

use crate::handlers::names;
use std::time::Duration;

use davrepl_proto::headers::Depth;
use davrepl_proto::xml::XmlWriter;
use davrepl_store::{
    self as store, ChangeKind, ChangesQuery, ErrorKind, NewSubscription, NotificationTypes,
    ReplStore, Seq, Subscription, SubscriptionUpdate,
};
use http::{HeaderValue, Response, StatusCode, header};
use std::collections::HashSet;

use super::log::PAGE;
use super::props::{MULTISTATUS_OPEN, multistatus_response, status_line};
use super::{Ctx, status_only};
use crate::body::{self, DavBody};
use crate::config::{Access, Principal};
use crate::error::{DavError, DavResult};

/// Most subscription ids one request may name.
const MAX_IDS: usize = 64;

fn principal<S: ReplStore>(ctx: &Ctx<S>) -> Option<String> {
    ctx.parts.extensions.get::<Principal>().map(|p| p.0.clone())
}

/// `Subscription-ID: 1, 18, 243`; `None` when absent.
fn ids<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Option<Vec<u64>>> {
    let Some(v) = ctx.header(&names::SUBSCRIPTION_ID)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let id = part
            .parse::<u64>()
            .map_err(|_| DavError::bad_request("Subscription-ID: expected numbers"))?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    if out.is_empty() || out.len() > MAX_IDS {
        return Err(DavError::bad_request(format!(
            "Subscription-ID: name 1 to {MAX_IDS} subscriptions"
        )));
    }
    Ok(Some(out))
}

fn no_subscription() -> DavError {
    DavError::new(
        StatusCode::PRECONDITION_FAILED,
        "no such subscription on this resource (unknown, expired, or not yours)",
    )
}

fn lifetime<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Duration> {
    let max = ctx.shared.config.limits.max_subscription_lifetime;
    Ok(match ctx.header(&names::SUBSCRIPTION_LIFETIME)? {
        Some(v) => Duration::from_secs(
            v.trim()
                .parse::<u64>()
                .map_err(|_| DavError::bad_request("Subscription-Lifetime: expected seconds"))?
                .max(1),
        )
        .min(max),
        None => Duration::from_secs(3600).min(max),
    })
}

/// The answer naming subscriptions: `Subscription-ID`, `Subscription-Lifetime` and the
/// `Content-Location` to POLL.
fn with_subscription_headers<S: ReplStore>(
    ctx: &Ctx<S>,
    mut resp: Response<DavBody>,
    ids: &[u64],
    lifetime: Option<Duration>,
) -> Response<DavBody> {
    let h = resp.headers_mut();
    let list = ids
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(v) = HeaderValue::from_str(&list) {
        h.insert("subscription-id", v);
    }
    if let Some(l) = lifetime
        && let Ok(v) = HeaderValue::from_str(&l.as_secs().to_string())
    {
        h.insert("subscription-lifetime", v);
    }
    let collection = ctx.parts.uri.path().ends_with('/');
    if let Ok(v) = HeaderValue::from_str(&ctx.href(&ctx.path, collection)) {
        h.insert(header::CONTENT_LOCATION, v);
    }
    resp
}

/// The subscriptions among `ids` of the request's principal on the request's resource.
async fn mine<S: ReplStore>(ctx: &Ctx<S>, ids: &[u64]) -> DavResult<Vec<Subscription>> {
    let found = ctx
        .store()
        .subscriptions(ids.to_vec(), principal(ctx))
        .await?;
    Ok(found.into_iter().filter(|s| s.path == ctx.path).collect())
}

pub(crate) async fn subscribe<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Response<DavBody>> {
    if ctx.header(&names::CALL_BACK)?.is_some() {
        return Err(DavError::new(
            StatusCode::NOT_IMPLEMENTED,
            "UDP call-backs are not offered; subscribe without Call-Back and POLL",
        ));
    }
    let lifetime = lifetime(ctx)?;
    if let Some(ids) = ids(ctx)? {
        // A renewal.
        if ctx.header(&names::NOTIFICATION_TYPE)?.is_some() || ctx.head.depth.is_some() {
            return Err(DavError::bad_request(
                "a renewal (Subscription-ID) takes no Notification-Type or Depth",
            ));
        }
        let valid: Vec<u64> = mine(ctx, &ids).await?.iter().map(|s| s.id).collect();
        let mut renewed = Vec::new();
        for id in valid {
            let mut upd = SubscriptionUpdate::default();
            upd.renew = Some(lifetime);
            match ctx
                .store()
                .update_subscription(id, principal(ctx), upd)
                .await
            {
                Ok(s) => renewed.push(s.id),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        if renewed.is_empty() {
            return Err(no_subscription());
        }
        let failed: Vec<u64> = ids.into_iter().filter(|i| !renewed.contains(i)).collect();
        let resp = if failed.is_empty() {
            status_only(StatusCode::OK)
        } else {
            id_multistatus(
                ctx,
                &[
                    (StatusCode::OK, &renewed),
                    (StatusCode::PRECONDITION_FAILED, &failed),
                ],
            )
        };
        return Ok(with_subscription_headers(
            ctx,
            resp,
            &renewed,
            Some(lifetime),
        ));
    }
    let types = ctx
        .header(&names::NOTIFICATION_TYPE)?
        .ok_or_else(|| DavError::bad_request("SUBSCRIBE needs a Notification-Type"))?;
    let types = NotificationTypes::parse(types).ok_or_else(|| {
        DavError::bad_request("Notification-Type: update, update/newmember, delete or move")
    })?;
    let target = ctx.store().head(&ctx.path).await?;
    let members = match ctx.head.depth {
        None => target.is_collection(),
        Some(Depth::Zero) => false,
        Some(Depth::One) if target.is_collection() => true,
        Some(_) => {
            return Err(DavError::bad_request(
                "SUBSCRIBE takes Depth 0, or 1 on a collection",
            ));
        }
    };
    let req =
        NewSubscription::new(ctx.path.clone(), members, types, lifetime).principal(principal(ctx));
    let sub = ctx.store().subscribe(req).await?;
    let resp = status_only(StatusCode::OK);
    Ok(with_subscription_headers(
        ctx,
        resp,
        &[sub.id],
        Some(sub.lifetime),
    ))
}

pub(crate) async fn poll<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Response<DavBody>> {
    let ids = ids(ctx)?.ok_or_else(|| DavError::bad_request("POLL needs a Subscription-ID"))?;
    let subs = mine(ctx, &ids).await?;
    if subs.is_empty() {
        return Err(no_subscription());
    }
    // Everything up to here is looked at and acknowledged.
    let upper = ctx.store().watermark().await?;
    let mut fired = Vec::new();
    let mut quiet = Vec::new();
    for s in &subs {
        if has_fired(ctx, s, upper).await? {
            fired.push(s.id);
        } else {
            quiet.push(s.id);
        }
        let mut upd = SubscriptionUpdate::default();
        upd.ack = Some(upper);
        upd.renew = Some(s.lifetime);
        match ctx
            .store()
            .update_subscription(s.id, principal(ctx), upd)
            .await
        {
            Ok(_) => {}
            // Ended meanwhile (UNSUBSCRIBE, expiry): what it saw is still reported.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let unknown: Vec<u64> = ids
        .into_iter()
        .filter(|i| !subs.iter().any(|s| s.id == *i))
        .collect();
    let resp = id_multistatus(
        ctx,
        &[
            (StatusCode::OK, &fired),
            (StatusCode::NO_CONTENT, &quiet),
            (StatusCode::PRECONDITION_FAILED, &unknown),
        ],
    );
    Ok(with_subscription_headers(ctx, resp, &fired, None))
}

pub(crate) async fn unsubscribe<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Response<DavBody>> {
    let ids =
        ids(ctx)?.ok_or_else(|| DavError::bad_request("UNSUBSCRIBE needs a Subscription-ID"))?;
    let mut removed = Vec::new();
    for s in mine(ctx, &ids).await? {
        match ctx.store().unsubscribe(s.id, principal(ctx)).await {
            Ok(()) => removed.push(s.id),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if removed.is_empty() {
        return Err(no_subscription());
    }
    Ok(with_subscription_headers(
        ctx,
        status_only(StatusCode::OK),
        &removed,
        None,
    ))
}

/// A multistatus with one response per status that has ids: the request's href, the status,
/// and the ids as `DAV:subscriptionID/DAV:li` (as Exchange answers POLL).
fn id_multistatus<S: ReplStore>(
    ctx: &Ctx<S>,
    groups: &[(StatusCode, &Vec<u64>)],
) -> Response<DavBody> {
    let collection = ctx.parts.uri.path().ends_with('/');
    let href = ctx.href(&ctx.path, collection);
    let mut w = XmlWriter::new();
    w.declaration().fragment(MULTISTATUS_OPEN);
    for (status, ids) in groups {
        if ids.is_empty() {
            continue;
        }
        w.start("D:response", &[])
            .text_element("D:href", &href)
            .text_element("D:status", &status_line(*status))
            .start("D:subscriptionID", &[]);
        for id in ids.iter() {
            w.text_element("D:li", &id.to_string());
        }
        w.end("D:subscriptionID").end("D:response");
    }
    w.end("D:multistatus");
    multistatus_response(StatusCode::MULTI_STATUS, body::full(w.finish()))
}

/// Whether anything `s` reports happened in its scope after its cursor, up to `upper`, on a
/// path the principal may read.
async fn has_fired<S: ReplStore>(ctx: &Ctx<S>, s: &Subscription, upper: Seq) -> DavResult<bool> {
    let depth = if s.members {
        store::Depth::One
    } else {
        store::Depth::Zero
    };
    let mut since = s.cursor;
    // Repl-uids removed and upserted in the window: a repl-uid with both moved.
    let mut removed_rids = HashSet::new();
    let mut upserted_rids = HashSet::new();
    while since < upper {
        let mut q = ChangesQuery::new(s.path.clone(), depth, since, PAGE);
        q.include_scope = true;
        q.include_removed = true;
        let page = ctx.store().changes(q).await?;
        for c in &page.changes {
            if c.seq > upper || !ctx.allowed(Access::Read, c.path()) {
                continue;
            }
            let is_member = c.path() != &s.path;
            let hit = match &c.kind {
                ChangeKind::Upsert(m) => {
                    upserted_rids.insert(m.rid);
                    (s.types.contains(NotificationTypes::UPDATE))
                        || (s.types.contains(NotificationTypes::NEW_MEMBER)
                            && is_member
                            && m.created > s.acked)
                        || (s.types.contains(NotificationTypes::MOVE)
                            && removed_rids.contains(&m.rid))
                }
                ChangeKind::Removed { rid, .. } => {
                    removed_rids.insert(*rid);
                    s.types.contains(NotificationTypes::UPDATE)
                        || s.types.contains(NotificationTypes::DELETE)
                        || (s.types.contains(NotificationTypes::MOVE)
                            && upserted_rids.contains(rid))
                }
            };
            if hit {
                return Ok(true);
            }
        }
        if !page.more {
            break;
        }
        since = page.watermark;
    }
    Ok(false)
}

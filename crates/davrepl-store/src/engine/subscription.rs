//! The subscription rules: created at the current end of the log, used only by the principal
//! that made them, ignored once expired (and swept by `purge`). They change nothing in the
//! change log.

use std::time::SystemTime;

use super::Rows;
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::subscription::{NewSubscription, Subscription, SubscriptionUpdate};

fn unknown(id: u64) -> StoreError {
    StoreError::new(
        ErrorKind::NotFound,
        format!("no subscription {id} (unknown, expired, or not yours)"),
    )
}

/// The subscription `id` if it is in force and belongs to `principal`.
fn owned<R: Rows + ?Sized>(
    rows: &mut R,
    id: u64,
    principal: Option<&str>,
    now: SystemTime,
) -> StoreResult<Subscription> {
    match rows.subscription(id)? {
        Some(s) if s.is_active(now) && s.principal.as_deref() == principal => Ok(s),
        _ => Err(unknown(id)),
    }
}

/// SUBSCRIBE: a new subscription with id `id` (`AlreadyExists` if taken: pick another).
pub(crate) fn subscribe<R: Rows + ?Sized>(
    rows: &mut R,
    id: u64,
    req: &NewSubscription,
    now: SystemTime,
) -> StoreResult<Subscription> {
    if rows.subscription(id)?.is_some() {
        return Err(StoreError::new(
            ErrorKind::AlreadyExists,
            "subscription id taken",
        ));
    }
    let sub = Subscription {
        id,
        path: req.path.clone(),
        members: req.members,
        types: req.types,
        principal: req.principal.clone(),
        lifetime: req.lifetime,
        expires: now + req.lifetime,
        cursor: rows.current_seq()?,
        acked: now,
    };
    rows.put_subscription(&sub)?;
    Ok(sub)
}

/// Renews and/or acknowledges subscription `id`.
pub(crate) fn update<R: Rows + ?Sized>(
    rows: &mut R,
    id: u64,
    principal: Option<&str>,
    upd: SubscriptionUpdate,
    now: SystemTime,
) -> StoreResult<Subscription> {
    let mut sub = owned(rows, id, principal, now)?;
    if let Some(at) = upd.ack {
        sub.cursor = sub.cursor.max(at);
        sub.acked = now;
    }
    if let Some(lifetime) = upd.renew {
        sub.lifetime = lifetime;
        sub.expires = now + lifetime;
    }
    rows.put_subscription(&sub)?;
    Ok(sub)
}

/// UNSUBSCRIBE.
pub(crate) fn unsubscribe<R: Rows + ?Sized>(
    rows: &mut R,
    id: u64,
    principal: Option<&str>,
    now: SystemTime,
) -> StoreResult<()> {
    owned(rows, id, principal, now)?;
    rows.remove_subscription(id)
}

/// The subscriptions among `ids` that are in force and belong to `principal`.
pub(crate) fn read<R: Rows + ?Sized>(
    rows: &mut R,
    ids: &[u64],
    principal: Option<&str>,
    now: SystemTime,
) -> StoreResult<Vec<Subscription>> {
    let mut out = Vec::new();
    for &id in ids {
        // Read errors (a backend that must fetch the row first) propagate; unknown, expired
        // and foreign ones are left out.
        if let Some(s) = rows.subscription(id)?
            && s.is_active(now)
            && s.principal.as_deref() == principal
        {
            out.push(s);
        }
    }
    Ok(out)
}

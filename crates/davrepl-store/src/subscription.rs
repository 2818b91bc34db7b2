//! Exchange-style subscriptions (SUBSCRIBE / POLL / UNSUBSCRIBE) as the store keeps them: a
//! subscription is a named cursor into the change log with a scope, the kinds of change it
//! reports and an expiry. Kept in the store so a client may poll any node.

use std::time::{Duration, SystemTime};

use crate::path::ResourcePath;
use crate::tags::Seq;

/// The error of a subscription operation on a store that keeps none.
pub(crate) fn not_kept() -> crate::StoreError {
    crate::StoreError::new(
        crate::ErrorKind::Unsupported,
        "this store does not keep subscriptions",
    )
}

/// The kinds of change a subscription reports (Exchange's `Notification-Type`), as a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NotificationTypes(u8);

impl NotificationTypes {
    /// `update`: the resource (depth 0) or anything in the collection (depth 1) changed.
    pub const UPDATE: Self = Self(1);
    /// `update/newmember`: a resource was added to the collection.
    pub const NEW_MEMBER: Self = Self(2);
    /// `delete`: the resource, or a member, was deleted.
    pub const DELETE: Self = Self(4);
    /// `move`: the resource, or a member, was moved.
    pub const MOVE: Self = Self(8);

    /// Parses a `Notification-Type` value (one type, or several separated by commas).
    pub fn parse(v: &str) -> Option<Self> {
        let mut out = Self(0);
        for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            out.0 |= match t.to_ascii_lowercase().as_str() {
                "update" => Self::UPDATE.0,
                "update/newmember" => Self::NEW_MEMBER.0,
                "delete" => Self::DELETE.0,
                "move" => Self::MOVE.0,
                _ => return None,
            };
        }
        (out.0 != 0).then_some(out)
    }

    /// Whether every type of `other` is in this set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The stored form.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// From the stored form.
    pub fn from_bits(bits: u8) -> Self {
        Self(bits & 0x0f)
    }
}

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Its id (`Subscription-ID`, decimal digits on the wire).
    pub id: u64,
    /// The resource subscribed to.
    pub path: ResourcePath,
    /// Depth 1 (the collection's members) or 0 (the resource itself).
    pub members: bool,
    /// What it reports.
    pub types: NotificationTypes,
    /// The principal that subscribed; only it may poll, renew or end the subscription.
    pub principal: Option<String>,
    /// The lifetime granted; every renewal and poll extends it from then.
    pub lifetime: Duration,
    /// When it lapses unless renewed or polled.
    pub expires: SystemTime,
    /// The log position up to which its changes were acknowledged (by the last poll, or its
    /// creation).
    pub cursor: Seq,
    /// When that acknowledgement happened.
    pub acked: SystemTime,
}

impl Subscription {
    /// Whether it is still in force at `now`.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.expires > now
    }
}

/// What SUBSCRIBE asks for ([`ReplStore::subscribe`](crate::ReplStore::subscribe)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewSubscription {
    /// The resource.
    pub path: ResourcePath,
    /// Depth 1 (members) or 0.
    pub members: bool,
    /// What to report.
    pub types: NotificationTypes,
    /// Who subscribes.
    pub principal: Option<String>,
    /// How long it lasts unless renewed or polled.
    pub lifetime: Duration,
}

impl NewSubscription {
    /// A subscription to `types` of changes at `path` (its members when `members`).
    pub fn new(
        path: ResourcePath,
        members: bool,
        types: NotificationTypes,
        lifetime: Duration,
    ) -> Self {
        Self {
            path,
            members,
            types,
            principal: None,
            lifetime,
        }
    }

    /// Sets the principal.
    #[must_use]
    pub fn principal(mut self, p: Option<String>) -> Self {
        self.principal = p;
        self
    }
}

/// A change to a subscription ([`ReplStore::update_subscription`](crate::ReplStore::update_subscription)).
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct SubscriptionUpdate {
    /// Acknowledge every change up to this log position (a POLL).
    pub ack: Option<Seq>,
    /// Extend it by this lifetime from now (a renewal, or a POLL).
    pub renew: Option<Duration>,
}

//! The lock rules: which locks protect what a write touches, and LOCK, refresh and UNLOCK as
//! row operations. None of them changes a resource's version or writes to the change log.

use std::time::{Duration, SystemTime};

use super::{LockScan, Rows, check};
use crate::condition::Condition;
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::lock::{Lock, LockGrant, LockRequest, LockScope};
use crate::path::ResourcePath;

/// The locks a step read, split into those in force and those that lapsed.
#[derive(Debug, Default)]
pub(crate) struct Held {
    active: Vec<Lock>,
    expired: Vec<Lock>,
}

impl Held {
    /// Reads the locks of the scan `scan` builds (nothing when the store holds no locks, or
    /// the scan is empty).
    pub(crate) fn read<R: Rows + ?Sized>(
        rows: &mut R,
        scan: impl FnOnce() -> LockScan,
        now: SystemTime,
    ) -> StoreResult<Self> {
        if !rows.may_hold_locks()? {
            return Ok(Self::default());
        }
        let scan = scan();
        if scan.at.is_empty() && scan.below.is_empty() {
            return Ok(Self::default());
        }
        let (active, expired) = rows
            .locks(&scan)?
            .into_iter()
            .filter(|l| scan.contains(&l.root))
            .partition(|l| l.is_active(now));
        Ok(Self { active, expired })
    }

    /// The locks in force that cover `path`.
    pub(crate) fn covering<'a>(&'a self, path: &'a ResourcePath) -> impl Iterator<Item = &'a Lock> {
        self.active.iter().filter(move |l| l.covers(path))
    }

    /// Whether a lock in force with `token` covers `path` (for `If` evaluation).
    pub(crate) fn holds(&self, path: &ResourcePath, token: &str) -> bool {
        self.covering(path).any(|l| l.token == token)
    }

    /// Removes the locks rooted at or below `root` (the resources there are gone).
    fn drop_within<R: Rows + ?Sized>(&self, rows: &mut R, root: &ResourcePath) -> StoreResult<()> {
        for l in self.active.iter().chain(&self.expired) {
            if l.root.is_within(root) {
                rows.remove_lock(l)?;
            }
        }
        Ok(())
    }

    /// Removes the lapsed locks this step came across.
    fn sweep<R: Rows + ?Sized>(&self, rows: &mut R) -> StoreResult<()> {
        self.expired.iter().try_for_each(|l| rows.remove_lock(l))
    }
}

/// What a write does at one path, for deciding which locks protect it (RFC 4918 §7).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Touch<'a> {
    /// Changes the resource itself (its content or properties).
    Resource(&'a ResourcePath),
    /// Adds the resource to its parent's membership (or replaces it there).
    Member(&'a ResourcePath),
    /// Removes the resource and everything below it from its parent.
    Tree(&'a ResourcePath),
}

impl Touch<'_> {
    fn protected_by(&self, l: &Lock) -> bool {
        let member = |p: &ResourcePath| l.covers(p) || p.parent().as_ref() == Some(&l.root);
        match *self {
            Touch::Resource(p) => l.covers(p),
            Touch::Member(p) => member(p),
            Touch::Tree(p) => member(p) || l.root.is_strictly_within(p),
        }
    }
}

/// The lock rows a write must read: every lock that could cover the paths it changes or its
/// condition names, and every lock below the subtrees it removes.
pub(crate) fn scan(
    changed: &[&ResourcePath],
    trees: &[&ResourcePath],
    target: &ResourcePath,
    cond: &Condition,
) -> LockScan {
    let mut scan = LockScan::default();
    for p in changed {
        scan.add_covering(p);
    }
    for p in trees {
        scan.add_tree(p);
    }
    if cond.needs_locks() {
        for p in cond.paths(target) {
            scan.add_covering(&p);
        }
    }
    scan
}

/// Refuses (`Locked`, naming the lock root) a write that touches what a lock in force protects
/// unless the request submitted that lock's token. Shared locks on the same resources stand
/// for one another: the token of any of them lets the write through (RFC 4918 §6.2).
pub(crate) fn guard(held: &Held, cond: &Condition, touches: &[Touch<'_>]) -> StoreResult<()> {
    let principal = cond.principal.as_deref();
    let submitted = |l: &Lock| cond.submitted().any(|t| t == l.token) && l.usable_by(principal);
    let protecting: Vec<&Lock> = held
        .active
        .iter()
        .filter(|l| touches.iter().any(|t| t.protected_by(l)))
        .collect();
    for l in &protecting {
        if submitted(l) {
            continue;
        }
        let stood_for = l.scope == LockScope::Shared
            && protecting.iter().any(|o| {
                o.scope == LockScope::Shared
                    && (o.covers(&l.root) || l.covers(&o.root))
                    && submitted(o)
            });
        if !stood_for {
            return Err(StoreError::new(
                ErrorKind::Locked,
                format!(
                    "{} is locked and the request did not submit its lock token",
                    l.root
                ),
            )
            .with_resource(l.root.clone()));
        }
    }
    Ok(())
}

/// After a write removed the subtree at `root`: its lock rows go with it.
pub(crate) fn removed<R: Rows + ?Sized>(
    rows: &mut R,
    held: &Held,
    root: &ResourcePath,
) -> StoreResult<()> {
    held.drop_within(rows, root)
}

/// The lock rows a LOCK reads.
pub(crate) fn lock_scan(path: &ResourcePath, req: &LockRequest) -> LockScan {
    let trees = if req.deep { vec![path] } else { Vec::new() };
    scan(&[path], &trees, path, &req.condition)
}

/// LOCK: grants `req` on `path` as a new lock with `token`, creating an empty item when nothing
/// is mapped there (`payload` is its content handle, released when not needed).
pub(crate) fn lock<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    req: &LockRequest,
    token: &str,
    payload: R::Payload,
    now: SystemTime,
) -> StoreResult<LockGrant> {
    let held = Held::read(rows, || lock_scan(path, req), now)?;
    let checked = (|| {
        check(rows, path, &req.condition, &held)?;
        for l in &held.active {
            let overlaps = l.covers(path) || (req.deep && l.root.is_strictly_within(path));
            if overlaps && l.conflicts_with(req.scope) {
                return Err(StoreError::new(
                    ErrorKind::LockConflict,
                    format!("{} is already locked", l.root),
                )
                .with_resource(l.root.clone()));
            }
        }
        rows.get(path)
    })();
    let existing = match checked {
        Ok(e) => e,
        Err(e) => {
            rows.release(payload)?;
            return Err(e);
        }
    };
    let store = rows.store_id();
    let (meta, created) = match existing {
        Some(r) => {
            rows.release(payload)?;
            (r.meta(store, path), false)
        }
        None => {
            // A locked empty resource: an ordinary empty item (RFC 4918 §7.3).
            let parent = super::write::check_parent(rows, path).and_then(|parent| {
                guard(&held, &req.condition, &[Touch::Member(path)]).map(|()| parent)
            });
            let parent = match parent {
                Ok(p) => p,
                Err(e) => {
                    rows.release(payload)?;
                    return Err(e);
                }
            };
            let mut empty = super::write::NewContent::new(payload, 0);
            empty.digests = Some(crate::digest::Digests::of(b""));
            let out = super::write::store_item(rows, path, &parent, None, empty)?;
            (out.meta, true)
        }
    };
    held.sweep(rows)?;
    let lock = Lock {
        token: token.to_owned(),
        root: path.clone(),
        deep: req.deep,
        scope: req.scope,
        owner: req.owner.clone(),
        principal: req.condition.principal.clone(),
        timeout: req.timeout,
        expires: now + req.timeout,
    };
    rows.put_lock(&lock)?;
    Ok(LockGrant {
        lock,
        meta,
        created,
    })
}

/// The lock rows a refresh or UNLOCK reads.
pub(crate) fn covering_scan(path: &ResourcePath, cond: &Condition) -> LockScan {
    scan(&[path], &[], path, cond)
}

/// Refreshes the lock covering `path` whose token `cond` submits; `PreconditionFailed` when
/// there is none.
pub(crate) fn refresh<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    cond: &Condition,
    timeout: Duration,
    now: SystemTime,
) -> StoreResult<Lock> {
    let held = Held::read(rows, || covering_scan(path, cond), now)?;
    check(rows, path, cond, &held)?;
    let principal = cond.principal.as_deref();
    let mut lock = held
        .covering(path)
        .find(|l| cond.submitted().any(|t| t == l.token) && l.usable_by(principal))
        .cloned()
        .ok_or_else(|| {
            StoreError::new(
                ErrorKind::PreconditionFailed,
                "the If header submits no lock token that covers this resource",
            )
        })?;
    held.sweep(rows)?;
    lock.timeout = timeout;
    lock.expires = now + timeout;
    rows.put_lock(&lock)?;
    Ok(lock)
}

/// UNLOCK: removes the lock with `token` covering `path`.
pub(crate) fn unlock<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    token: &str,
    principal: Option<&str>,
    now: SystemTime,
) -> StoreResult<Lock> {
    let held = Held::read(rows, || covering_scan(path, &Condition::none()), now)?;
    let lock = held
        .covering(path)
        .find(|l| l.token == token)
        .cloned()
        .ok_or_else(|| {
            StoreError::new(
                ErrorKind::NoSuchLock,
                format!("no lock with that token covers {path}"),
            )
        })?;
    if !lock.usable_by(principal) {
        return Err(StoreError::new(
            ErrorKind::NotLockOwner,
            "the lock belongs to another principal",
        ));
    }
    held.sweep(rows)?;
    rows.remove_lock(&lock)?;
    Ok(lock)
}

/// The lock rows a lock discovery reads.
pub(crate) fn discovery_scan(path: &ResourcePath, below: bool) -> LockScan {
    let mut scan = LockScan::default();
    if below {
        scan.add_tree(path);
    } else {
        scan.add_covering(path);
    }
    scan
}

/// The locks in force that cover `path` and, with `below`, those rooted below it.
pub(crate) fn discover<R: Rows + ?Sized>(
    rows: &mut R,
    path: &ResourcePath,
    below: bool,
    now: SystemTime,
) -> StoreResult<Vec<Lock>> {
    let held = Held::read(rows, || discovery_scan(path, below), now)?;
    let mut out: Vec<Lock> = held
        .active
        .into_iter()
        .filter(|l| l.covers(path) || (below && l.root.is_strictly_within(path)))
        .collect();
    out.sort_by(|a, b| (&a.root, &a.token).cmp(&(&b.root, &b.token)));
    Ok(out)
}

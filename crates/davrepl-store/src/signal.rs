//! [`ChangeSignal`]: wakes whoever waits for the change log to move. It carries no changes —
//! a waiter always re-reads the log from its own cursor — so a lost or spurious wake-up costs
//! latency, never a change. A notification may say which paths changed; a waiter watching one
//! collection then sleeps through changes elsewhere. When in doubt (a notification without
//! paths, or history the signal no longer keeps) every waiter wakes.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::path::ResourcePath;

/// Notifications remembered for waiters that look at their paths.
const HISTORY: usize = 1024;

#[derive(Debug, Default)]
struct State {
    /// Bumped by every notification.
    generation: u64,
    /// The last notifications: their generation and the paths they named (`None`: any).
    history: VecDeque<(u64, Option<Vec<ResourcePath>>)>,
    /// Waiters, and the subtree each watches (`None`: everything).
    wakers: Vec<(Waker, Option<ResourcePath>)>,
}

/// Whether a change at one of `paths` may concern a reader of the subtree at `scope`.
fn touches(paths: &[ResourcePath], scope: &ResourcePath) -> bool {
    paths
        .iter()
        .any(|p| p.is_within(scope) || scope.is_within(p))
}

impl State {
    /// Whether a notification after `seen` may concern `scope` (`None`: any notification).
    fn fired_since(&self, seen: u64, scope: Option<&ResourcePath>) -> bool {
        if self.generation == seen {
            return false;
        }
        let Some(scope) = scope else { return true };
        // History older than what is kept: assume it did.
        if self.history.front().is_none_or(|(g, _)| *g > seen + 1) {
            return true;
        }
        self.history
            .iter()
            .filter(|(g, _)| *g > seen)
            .any(|(_, paths)| paths.as_deref().is_none_or(|p| touches(p, scope)))
    }
}

/// A wake-up for change-log readers, shared by clones. Runtime-agnostic (no timer, no
/// thread): [`notify`](Self::notify) wakes every pending [`changed`](Self::changed) future.
#[derive(Debug, Clone, Default)]
pub struct ChangeSignal {
    state: Arc<Mutex<State>>,
}

impl ChangeSignal {
    /// A new signal nobody waits on.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current generation. Read it **before** reading the log, then wait with
    /// [`changed`](Self::changed): a change committed in between is not missed.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Something may have changed anywhere: wakes every waiter.
    pub fn notify(&self) {
        self.record(None);
    }

    /// Something changed at (or below) these paths: wakes the waiters it may concern.
    pub fn notify_paths(&self, paths: Vec<ResourcePath>) {
        self.record(Some(paths));
    }

    fn record(&self, paths: Option<Vec<ResourcePath>>) {
        let woken: Vec<Waker> = {
            let mut s = self.lock();
            s.generation = s.generation.wrapping_add(1);
            let wakers = std::mem::take(&mut s.wakers);
            let (wake, keep): (Vec<_>, Vec<_>) =
                wakers
                    .into_iter()
                    .partition(|(_, scope)| match (&paths, scope) {
                        (Some(p), Some(scope)) => touches(p, scope),
                        _ => true,
                    });
            s.wakers = keep;
            let g = s.generation;
            s.history.push_back((g, paths));
            if s.history.len() > HISTORY {
                s.history.pop_front();
            }
            wake.into_iter().map(|(w, _)| w).collect()
        };
        for w in woken {
            w.wake();
        }
    }

    /// Resolves once anything was notified after generation `seen`.
    pub fn changed(&self, seen: u64) -> Changed {
        Changed {
            signal: self.clone(),
            seen,
            scope: None,
        }
    }

    /// Resolves once something was notified after generation `seen` that may concern the
    /// subtree at `scope`.
    pub fn changed_within(&self, seen: u64, scope: ResourcePath) -> Changed {
        Changed {
            signal: self.clone(),
            seen,
            scope: Some(scope),
        }
    }

    /// How many waiters are registered (for tests and metrics).
    pub fn waiters(&self) -> usize {
        self.lock().wakers.len()
    }
}

/// The future of [`ChangeSignal::changed`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Changed {
    signal: ChangeSignal,
    seen: u64,
    scope: Option<ResourcePath>,
}

impl Future for Changed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.signal.lock();
        if s.fired_since(self.seen, self.scope.as_ref()) {
            return Poll::Ready(());
        }
        if !s.wakers.iter().any(|(w, _)| w.will_wake(cx.waker())) {
            s.wakers.push((cx.waker().clone(), self.scope.clone()));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_between_reading_and_waiting_is_not_lost() {
        let s = ChangeSignal::new();
        let seen = s.generation();
        s.notify(); // a commit after the reader looked at the log
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut f = s.changed(seen);
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
        let mut g = s.changed(s.generation());
        assert!(Pin::new(&mut g).poll(&mut cx).is_pending());
        assert_eq!(s.waiters(), 1);
        s.notify();
        assert_eq!(s.waiters(), 0);
        assert!(Pin::new(&mut g).poll(&mut cx).is_ready());
    }

    #[test]
    fn a_waiter_on_one_subtree_sleeps_through_changes_elsewhere() {
        let p = |s: &str| ResourcePath::parse(s).unwrap();
        let s = ChangeSignal::new();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let seen = s.generation();
        let mut mine = s.changed_within(seen, p("/a"));
        assert!(Pin::new(&mut mine).poll(&mut cx).is_pending());
        s.notify_paths(vec![p("/b/x")]);
        assert!(Pin::new(&mut mine).poll(&mut cx).is_pending(), "not mine");
        assert_eq!(s.waiters(), 1);
        s.notify_paths(vec![p("/a/x")]);
        assert!(Pin::new(&mut mine).poll(&mut cx).is_ready());
        // A change above the subtree (a MOVE of an ancestor) concerns it; so does a
        // notification without paths.
        let seen = s.generation();
        s.notify_paths(vec![p("/")]);
        assert!(
            Pin::new(&mut s.changed_within(seen, p("/a/b")))
                .poll(&mut cx)
                .is_ready()
        );
        let seen = s.generation();
        s.notify();
        assert!(
            Pin::new(&mut s.changed_within(seen, p("/a")))
                .poll(&mut cx)
                .is_ready()
        );
        // History that is no longer kept counts as a change.
        let seen = s.generation();
        for _ in 0..HISTORY + 1 {
            s.notify_paths(vec![p("/b")]);
        }
        assert!(
            Pin::new(&mut s.changed_within(seen, p("/a")))
                .poll(&mut cx)
                .is_ready()
        );
    }
}

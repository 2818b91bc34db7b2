//! [`ChangeSignal`]: wakes whoever waits for the change log to move. It carries no data — a
//! waiter always re-reads the log from its own cursor — so a lost or spurious wake-up costs
//! latency, never a change.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
struct State {
    /// Bumped by every notification.
    generation: u64,
    wakers: Vec<Waker>,
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

    /// Something may have changed: wakes every waiter.
    pub fn notify(&self) {
        let wakers = {
            let mut s = self.lock();
            s.generation = s.generation.wrapping_add(1);
            std::mem::take(&mut s.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once the generation differs from `seen`.
    pub fn changed(&self, seen: u64) -> Changed {
        Changed {
            signal: self.clone(),
            seen,
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
}

impl Future for Changed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.signal.lock();
        if s.generation != self.seen {
            return Poll::Ready(());
        }
        if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            s.wakers.push(cx.waker().clone());
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
}

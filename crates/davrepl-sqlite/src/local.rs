//! Point reads on the calling thread: each thread that asks keeps a reader connection of its
//! own (up to [`SqliteOptions::local_readers`](crate::SqliteOptions::local_readers) threads per
//! store), so the HEAD, PROPFIND or GET of one resource needs no lock and no hop to the
//! blocking pool. Such a read is a few indexed lookups in pages that are normally cached; the
//! scans (listings, manifests, reports) still go to the pool.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use davrepl_store::StoreResult;
use rusqlite::Connection;

use crate::rows::{Tx, read_tx};
use crate::{Inner, open_conn};

/// A thread's connection to one store. Dropping it (the store gone, or the thread ending)
/// gives its place back.
struct Local {
    store: Weak<Inner>,
    conn: Connection,
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(inner) = self.store.upgrade() {
            inner.local_count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` in a read transaction on this thread's connection to the store, opening it if
/// needed. `None` when this thread may not have one (the limit is reached, or opening
/// failed), and the caller uses the pool.
pub(crate) fn read<T>(
    inner: &Arc<Inner>,
    f: impl FnOnce(&mut Tx<'_>) -> StoreResult<T>,
) -> Option<StoreResult<T>> {
    if inner.local_max == 0 {
        return None;
    }
    LOCAL
        .try_with(|cell| {
            let mut locals = cell.try_borrow_mut().ok()?;
            // Connections to stores that are gone.
            locals.retain(|l| l.store.strong_count() > 0);
            let at = match locals
                .iter()
                .position(|l| std::ptr::eq(l.store.as_ptr(), Arc::as_ptr(inner)))
            {
                Some(at) => at,
                None => {
                    let taken = inner.local_count.fetch_add(1, Ordering::Relaxed);
                    let conn = (taken < inner.local_max)
                        .then(|| open_conn(&inner.path, inner.synchronous, false).ok())
                        .flatten();
                    let Some(conn) = conn else {
                        inner.local_count.fetch_sub(1, Ordering::Relaxed);
                        return None;
                    };
                    locals.push(Local {
                        store: Arc::downgrade(inner),
                        conn,
                    });
                    locals.len() - 1
                }
            };
            Some(read_tx(&locals[at].conn, inner.id, &inner.files, f))
        })
        .ok()
        .flatten()
}

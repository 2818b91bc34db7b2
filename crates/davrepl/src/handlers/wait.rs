//! Long polling: a request whose answer would be empty, sent with `Prefer: wait=N` (RFC 7240
//! §4.3), is held up to `N` seconds (capped by [`Limits::max_prefer_wait`](crate::Limits)) and
//! answered as soon as a change it would report commits. The store's change signal only wakes
//! the request; the request then looks at the log again.

use std::future::Future;
use std::time::{Duration, Instant};

use davrepl_store::ReplStore;
use futures_util::future::{Either, select};

use super::Ctx;
use crate::error::DavResult;

/// How often a held request looks at the log when the store gives no change signal.
const POLL: Duration = Duration::from_millis(500);

/// The `wait` preference of `Prefer`, capped; `None` without one.
pub(crate) fn prefer_wait<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Option<Duration>> {
    let cap = ctx.shared.config.limits.max_prefer_wait;
    for v in ctx.parts.headers.get_all("prefer") {
        let Ok(v) = v.to_str() else { continue };
        for pref in v.split(',') {
            let mut kv = pref.split(';').next().unwrap_or("").splitn(2, '=');
            let key = kv.next().unwrap_or("").trim();
            if !key.eq_ignore_ascii_case("wait") {
                continue;
            }
            // An unreadable value is ignored, as RFC 7240 asks of unknown preferences.
            if let Some(secs) = kv
                .next()
                .and_then(|s| s.trim().trim_matches('"').parse::<u64>().ok())
            {
                return Ok(Some(Duration::from_secs(secs).min(cap)));
            }
        }
    }
    Ok(None)
}

/// Returns once `probe` says there is something to answer with, or `wait` has passed; only
/// changes at or below `scope` (or above it) wake it to look again.
pub(crate) async fn hold<S, F, Fut>(
    ctx: &Ctx<S>,
    scope: &davrepl_store::ResourcePath,
    wait: Duration,
    mut probe: F,
) -> DavResult<()>
where
    S: ReplStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = DavResult<bool>>,
{
    let deadline = Instant::now() + wait;
    let signal = ctx.store().change_signal();
    loop {
        // Read the generation first: a commit after the probe is not missed.
        let generation = signal.as_ref().map(|s| s.generation());
        if probe().await? {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let woken = async {
            match (&signal, generation) {
                (Some(s), Some(g)) => s.changed_within(g, scope.clone()).await,
                _ => tokio::time::sleep(POLL).await,
            }
        };
        if let Either::Right(_) = select(Box::pin(woken), Box::pin(tokio::time::sleep(left))).await
        {
            return Ok(());
        }
    }
}

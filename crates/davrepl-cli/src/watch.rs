//! `--watch`: sync again whenever the folder or the server changes.
//!
//! Local changes arrive as file-system notifications (inotify through the `notify` crate),
//! gathered for half a second so that a burst of writes is one sync. Server changes arrive as
//! an answer to a long-polled manifest (`Prefer: wait=30` with the saved collblob): the server
//! holds it until something in the collection commits. Either wakes the next sync.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::scan::STATE_DIR;
use crate::sync::{Fatal, Syncer};

/// Syncs, then waits for a change on either side, forever (until Ctrl-C). Returns whether the
/// last sync had failures.
pub async fn watch(syncer: Arc<Syncer>) -> Result<bool, Fatal> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let state = syncer.root().join(STATE_DIR);
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && ev.paths.iter().any(|p| !p.starts_with(&state))
        {
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| Fatal::Failed(format!("watching the folder: {e}")))?;
    watcher
        .watch(syncer.root(), RecursiveMode::Recursive)
        .map_err(|e| Fatal::Failed(format!("watching {}: {e}", syncer.root().display())))?;
    let mut failed;
    loop {
        let summary = syncer.sync_once().await?;
        failed = !summary.failures.is_empty();
        if !summary.converged {
            // Not settled: try again soon, not at once.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        // Notifications caused by the sync itself.
        while rx.try_recv().is_ok() {}
        tokio::select! {
            _ = rx.recv() => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                while rx.try_recv().is_ok() {}
            }
            () = server_changed(&syncer) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(failed)
}

/// Returns once the server has something new for the saved collblob.
async fn server_changed(syncer: &Syncer) {
    loop {
        let blob = syncer.collblob();
        let r = syncer
            .client()
            .manifest(blob.as_deref(), Some(1), Some(Duration::from_secs(30)))
            .await;
        match r {
            Ok(page) if !page.rows.is_empty() => return,
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_secs(5)).await,
        }
    }
}

//! Wake-ups across nodes: after a write commits, its node sends `NOTIFY davrepl_changes`
//! naming the paths it changed, and every node keeps one connection `LISTEN`ing on it that
//! fires the engine's [`ChangeSignal`]. Readers re-read the log; the notification only wakes.
//!
//! The notification is not sent inside the writing transaction: PostgreSQL serializes the
//! commits of transactions that notified (each holds a database-wide lock from its commit
//! until it ends, through its WAL flush), which would make every write in the cluster wait
//! for the previous one's fsync. Instead each node's listener connection sends them, after
//! the commits, merging what accumulated while it was sending the last one. A notification
//! is sent after its commit, so a woken reader finds the change (once older writers in
//! flight end, and each of those notifies after its own commit).
//!
//! Lost wake-ups: a lost listener connection is re-opened, and then the signal fires once
//! and the node notifies "anything changed", since notifications may have been missed or
//! unsent meanwhile. A node that dies between a commit and its notification leaves waiters
//! on other nodes to the next change or their timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use davrepl_store::ChangeSignal;
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use tokio_postgres::{AsyncMessage, NoTls};

/// The notification channel.
pub(crate) const CHANNEL: &str = "davrepl_changes";

/// The statement that notifies; `$1` names the paths changed, one per line (empty: anything
/// may have changed).
const NOTIFY: &str = "SELECT pg_notify('davrepl_changes', $1)";

/// The longest payload sent; above it the notification names no paths (PostgreSQL allows
/// 8,000 bytes).
const MAX_PAYLOAD: usize = 7000;

/// The payload naming `paths`, or an empty one when they do not fit.
pub(crate) fn payload<'a>(paths: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for p in paths {
        if out.len() + p.len() + 1 > MAX_PAYLOAD {
            return String::new();
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(p);
    }
    out
}

/// Fires `signal` for a payload: for the paths it names, or for anything.
fn fire(signal: &ChangeSignal, payload: &str) {
    let paths: Option<Vec<_>> = (!payload.is_empty())
        .then(|| {
            payload
                .lines()
                .map(|l| davrepl_store::ResourcePath::parse(l).ok())
                .collect()
        })
        .flatten();
    match paths {
        Some(p) => signal.notify_paths(p),
        None => signal.notify(),
    }
}

/// Notifications waiting to be sent: at most one payload, merged.
#[derive(Debug, Default)]
struct Pending {
    /// Something is waiting.
    due: bool,
    /// The paths, one per line; empty with `due`: anything.
    paths: String,
}

impl Pending {
    fn add(&mut self, payload: &str) {
        let anything = (self.due && self.paths.is_empty()) || payload.is_empty();
        if anything || self.paths.len() + payload.len() + 1 > MAX_PAYLOAD {
            self.paths.clear();
        } else {
            if !self.paths.is_empty() {
                self.paths.push('\n');
            }
            self.paths.push_str(payload);
        }
        self.due = true;
    }
}

/// Hands this node's notifications to its listener connection, which sends them.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    pending: Arc<Mutex<Pending>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Notifier {
    fn new() -> Self {
        Self {
            pending: Arc::default(),
            wake: Arc::default(),
        }
    }

    /// Queues a notification (a [`payload`]); returns at once.
    pub(crate) fn send(&self, payload: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(payload);
        self.wake.notify_one();
    }

    /// The merged payload waiting, if any, taken.
    fn take(&self) -> Option<String> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.due.then(|| {
            p.due = false;
            std::mem::take(&mut p.paths)
        })
    }
}

/// The listener task of one store handle; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts listening with `config`, firing `signal` on every notification; the notifier sends
/// this node's notifications on the same connection.
pub(crate) fn spawn(config: tokio_postgres::Config, signal: ChangeSignal) -> (Listener, Notifier) {
    let notifier = Notifier::new();
    let sender = notifier.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = listen_once(&config, &signal, &sender).await {
                tracing::warn!(error = %e, "the change listener lost its connection; reconnecting");
            }
            signal.notify();
            // What was being sent may be lost: tell every node that anything may have changed.
            sender.send("");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    (Listener(task), notifier)
}

async fn listen_once(
    config: &tokio_postgres::Config,
    signal: &ChangeSignal,
    notifier: &Notifier,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let drive = Box::pin(async {
        let mut messages = messages;
        while let Some(m) = messages.next().await {
            if let AsyncMessage::Notification(n) = m? {
                fire(signal, n.payload());
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    let listen_and_send = Box::pin(async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        // Anything committed before the LISTEN took effect was not notified here.
        signal.notify();
        let notify = client.prepare(NOTIFY).await?;
        loop {
            notifier.wake.notified().await;
            while let Some(payload) = notifier.take() {
                client.execute(&notify, &[&payload]).await?;
            }
        }
    });
    match select(drive, listen_and_send).await {
        Either::Left((r, _)) | Either::Right((r, _)) => r,
    }
}
